//! `ferry-hub policy apply|diff|show|history`: policy files kept in
//! version control, checked whole and applied per tenant.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use ferry_policies::set::{self, PolicySet};
use serde_json::json;

use super::output;
use crate::admin::Admin;
use crate::catalog::{PolicyFileText, PolicyVersion};
use crate::config::HubConfig;
use crate::policy::tenant_policy;

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// Check FILEs as one set and make them the policy of each tenant they
    /// name (a tenant's whole policy: what its files leave out is no
    /// longer in force). One bad file rejects the set, and the policy in
    /// force stays.
    Apply {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what `apply` of FILEs would change, applying nothing.
    Diff {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The policy in force for a tenant (or an older version of it).
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        version: Option<u64>,
        /// Print the files as applied, not what they set.
        #[arg(long)]
        files: bool,
    },
    /// Every version of a tenant's policy: when it was applied, and its files.
    History {
        #[arg(long)]
        tenant: String,
    },
}

pub(super) fn run(command: PolicyCommand, config: &HubConfig, json: bool) -> Result<()> {
    match command {
        PolicyCommand::Apply { files } => apply(&files, config, json, true),
        PolicyCommand::Diff { files } => apply(&files, config, json, false),
        PolicyCommand::Show {
            tenant,
            version,
            files,
        } => show(&tenant, version, files, config, json),
        PolicyCommand::History { tenant } => {
            let versions = Admin::open(config)?.policy_history(&tenant)?;
            let rows: Vec<_> = versions
                .iter()
                .map(|v| {
                    json!({"version": v.version, "applied_unix_ms": v.applied_unix_ms,
                           "files": v.files.iter().map(|f| &f.name).collect::<Vec<_>>()})
                })
                .collect();
            let lines: Vec<String> = versions
                .iter()
                .map(|v| {
                    let names: Vec<&str> = v.files.iter().map(|f| f.name.as_str()).collect();
                    format!(
                        "version {}  applied {}  {}",
                        v.version,
                        when(v),
                        names.join(" ")
                    )
                })
                .collect();
            let text = match lines.is_empty() {
                true => format!("tenant {tenant}: no policy applied yet"),
                false => lines.join("\n"),
            };
            output(json, json!({"tenant": tenant, "versions": rows}), &text);
            Ok(())
        }
    }
}

/// Reads `paths` and checks them as one set; every error of every file
/// comes back at once, each as `file:line:column: reason`.
fn read_set(paths: &[PathBuf]) -> Result<(PolicySet, Vec<(String, String)>)> {
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("policy file {}", path.display()))?;
        files.push((path.display().to_string(), text));
    }
    match set::parse(&files) {
        Ok(parsed) => Ok((parsed, files)),
        Err(errors) => {
            let told: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bail!(
                "{}\nthe policy set is rejected: nothing was applied",
                told.join("\n")
            )
        }
    }
}

fn apply(paths: &[PathBuf], config: &HubConfig, json: bool, write: bool) -> Result<()> {
    let (parsed, files) = read_set(paths)?;
    let admin = Admin::open(config)?;
    let mut out = Vec::new();
    let mut text = Vec::new();
    for (tenant, policy) in &parsed.tenants {
        let current = admin
            .policy(tenant, None)
            .with_context(|| format!("tenant {tenant}"))?;
        let changes = set::diff(
            &tenant_policy(current.as_ref(), tenant)?.describe(),
            &policy.describe(),
        );
        let now = current.as_ref().map_or(0, |v| v.version);
        let version = match (write, changes.is_empty()) {
            (true, false) => {
                // The tenant's files, as written, in the order given.
                let own: Vec<PolicyFileText> = files
                    .iter()
                    .filter(|(name, _)| policy.files.contains(name))
                    .map(|(name, text)| PolicyFileText {
                        name: name.clone(),
                        text: text.clone(),
                    })
                    .collect();
                admin.apply_policy(tenant, &own)?
            }
            _ => now,
        };
        text.push(match (write, changes.is_empty()) {
            (_, true) => format!("tenant {tenant}: unchanged (version {now} in force)"),
            (true, false) => format!("tenant {tenant}: version {version} in force"),
            (false, false) => format!("tenant {tenant}: an apply would make version {}", now + 1),
        });
        text.extend(changes.iter().map(|c| format!("  {c}")));
        out.push(json!({"tenant": tenant, "version": version, "changed": !changes.is_empty(), "changes": changes}));
    }
    output(
        json,
        json!({"applied": write, "tenants": out}),
        &text.join("\n"),
    );
    Ok(())
}

fn show(
    tenant: &str,
    version: Option<u64>,
    files: bool,
    config: &HubConfig,
    json: bool,
) -> Result<()> {
    let admin = Admin::open(config)?;
    let Some(v) = admin.policy(tenant, version)? else {
        match version {
            Some(n) => bail!("tenant {tenant}: no policy version {n}"),
            None => {
                bail!("tenant {tenant}: no policy applied yet (`ferry-hub policy apply FILE...`)")
            }
        }
    };
    let policy = tenant_policy(Some(&v), tenant)?;
    let lines = policy.describe();
    let mut text = vec![format!(
        "tenant {tenant}: policy version {} applied {}",
        v.version,
        when(&v)
    )];
    if files {
        for f in &v.files {
            text.push(format!("# {}\n{}", f.name, f.text.trim_end()));
        }
    } else {
        text.extend(lines.iter().map(|l| format!("  {l}")));
    }
    let file_rows: Vec<_> = v
        .files
        .iter()
        .map(|f| json!({"name": f.name, "text": f.text}))
        .collect();
    output(
        json,
        json!({"tenant": tenant, "version": v.version, "applied_unix_ms": v.applied_unix_ms,
               "policy": lines, "files": file_rows}),
        &text.join("\n"),
    );
    Ok(())
}

fn when(v: &PolicyVersion) -> String {
    chrono::DateTime::from_timestamp_millis(v.applied_unix_ms).map_or_else(
        || v.applied_unix_ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}
