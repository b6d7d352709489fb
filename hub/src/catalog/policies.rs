//! The policy area: every version of each tenant's policy files, as
//! applied (`ferry-hub policy apply`). The newest version is in force;
//! older ones are kept, so what was in force at any time can be shown.
//! The catalog stores the files' text; `ferry-policies` reads it.

use super::{CatalogError, TenantId};

/// One file of a policy version, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFileText {
    pub name: String,
    pub text: String,
}

/// A tenant's policy as one apply left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersion {
    /// 1 for the first apply, then one more each.
    pub version: u64,
    pub applied_unix_ms: i64,
    /// In the order they were given.
    pub files: Vec<PolicyFileText>,
}

/// Reads of policy versions.
pub trait PolicyRead {
    /// Version `version` of `tenant`'s policy, or the one in force (the
    /// newest) for `None`; `None` when there is no such version.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn policy(
        &mut self,
        tenant: TenantId,
        version: Option<u64>,
    ) -> Result<Option<PolicyVersion>, CatalogError>;

    /// Every version of `tenant`'s policy, oldest first, without the
    /// files' text (their names only).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn policy_history(&mut self, tenant: TenantId) -> Result<Vec<PolicyVersion>, CatalogError>;
}

/// Writes of policy versions.
pub trait PolicyWrite {
    /// Records `files` as `tenant`'s next policy version, applied at
    /// `at_unix_ms`, and gives its number. Concurrent applies get
    /// distinct numbers.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; `Invalid` for an empty set.
    fn add_policy_version(
        &mut self,
        tenant: TenantId,
        at_unix_ms: i64,
        files: &[PolicyFileText],
    ) -> Result<u64, CatalogError>;
}

/// Checks a version's files before an engine stores them.
///
/// # Errors
///
/// `Invalid` when there are none.
pub(crate) fn check_files(files: &[PolicyFileText]) -> Result<(), CatalogError> {
    match files.is_empty() {
        true => Err(CatalogError::Invalid {
            field: "policy files",
            reason: "a policy version holds at least one file".to_owned(),
        }),
        false => Ok(()),
    }
}

/// Groups (version, applied_ms, position, name, text) rows, in version and
/// position order, into versions.
pub(crate) fn versions_of(
    rows: impl IntoIterator<Item = (i64, i64, String, String)>,
) -> Result<Vec<PolicyVersion>, CatalogError> {
    let mut out: Vec<PolicyVersion> = Vec::new();
    for (version, applied, name, text) in rows {
        let version = super::from_i64("policy_versions.version", version)?;
        if out.last().is_none_or(|v| v.version != version) {
            out.push(PolicyVersion {
                version,
                applied_unix_ms: applied,
                files: Vec::new(),
            });
        }
        if let Some(v) = out.last_mut() {
            v.files.push(PolicyFileText { name, text });
        }
    }
    Ok(out)
}
