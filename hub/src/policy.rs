//! The policy in force as the hub reads it: the newest version of a
//! tenant's policy files, parsed again from the text the catalog keeps.
//! Every version was checked whole when applied, so a version that no
//! longer parses means a catalog changed under the hub (or a newer parser
//! that refuses what an older one took): it is reported, never guessed at.

use ferry_policies::set::{self, TenantPolicy};

use crate::catalog::PolicyVersion;

#[derive(Debug, thiserror::Error)]
#[error("tenant {tenant}: policy version {version} no longer parses: {first}")]
pub struct StoredPolicyError {
    pub tenant: String,
    pub version: u64,
    /// The first error the parser gives (file:line:column: reason).
    pub first: String,
}

/// What `version` sets for `tenant` (nothing for `None`: no policy applied).
///
/// # Errors
/// The stored files do not parse.
pub fn tenant_policy(
    version: Option<&PolicyVersion>,
    tenant: &str,
) -> Result<TenantPolicy, StoredPolicyError> {
    let Some(v) = version else {
        return Ok(TenantPolicy::default());
    };
    let files: Vec<(String, String)> = v
        .files
        .iter()
        .map(|f| (f.name.clone(), f.text.clone()))
        .collect();
    let parsed = set::parse(&files).map_err(|errors| StoredPolicyError {
        tenant: tenant.to_owned(),
        version: v.version,
        first: errors.first().map(ToString::to_string).unwrap_or_default(),
    })?;
    Ok(parsed.tenants.get(tenant).cloned().unwrap_or_default())
}
