//! `ferry-hub retention run --dry-run`: what the policy in force keeps of
//! each bucket's commits and why, and what it would forget.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::output;
use crate::admin::Admin;
use crate::config::HubConfig;
use crate::retention::BucketRetention;

#[derive(Subcommand)]
pub(super) enum RetentionCommand {
    /// Weigh every bucket's commits against the policy in force: list what
    /// no rule keeps, and which rules keep each survivor.
    Run {
        /// Only this tenant's buckets (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this bucket ("tenant/bucket").
        #[arg(long, conflicts_with = "tenant")]
        bucket: Option<String>,
        /// Show what a run would do, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

pub(super) fn run(command: RetentionCommand, config: &HubConfig, json: bool) -> Result<()> {
    let RetentionCommand::Run {
        tenant,
        bucket,
        dry_run,
    } = command;
    if !dry_run {
        bail!(
            "retention run: only --dry-run is built so far; marking commits (and GC, which \
             frees what they alone reach) is still to come"
        );
    }
    let admin = Admin::open(config)?;
    let (tenants, only_bucket) = match (&tenant, &bucket) {
        (_, Some(b)) => match b.split_once('/') {
            Some((t, name)) => (vec![t.to_owned()], Some(name.to_owned())),
            None => bail!("--bucket {b:?}: expected \"tenant/bucket\""),
        },
        (Some(t), None) => (vec![t.clone()], None),
        (None, None) => (admin.tenants()?.into_iter().map(|t| t.name).collect(), None),
    };
    let now = chrono::Utc::now();
    let mut text = Vec::new();
    let mut rows = Vec::new();
    for tenant in &tenants {
        for (b, weighed) in admin.retention(tenant, only_bucket.as_deref(), now)? {
            let name = format!("{tenant}/{}", b.name);
            match weighed {
                BucketRetention::NoRules => {
                    text.push(format!("{name}: no retention rules; every commit stays"));
                    rows.push(json!({"bucket": name, "rules": null}));
                }
                BucketRetention::Evaluated {
                    rules,
                    kept,
                    forget,
                } => {
                    text.push(format!(
                        "{name}: {rules}: {} commits stay, {} would go",
                        kept.len(),
                        forget.len()
                    ));
                    let mut lines: Vec<(u64, String)> = forget
                        .iter()
                        .map(|(seq, ms)| (*seq, format!("  go    {seq:>6}  {}", when(*ms))))
                        .collect();
                    lines.extend(kept.iter().map(|k| {
                        let why: Vec<String> = k.why.iter().map(ToString::to_string).collect();
                        let lock = k
                            .lock_until
                            .map(|l| format!("  (lock until {})", l.format("%Y-%m-%dT%H:%M:%SZ")))
                            .unwrap_or_default();
                        (
                            k.seq,
                            format!(
                                "  stay  {:>6}  {}  {}{lock}",
                                k.seq,
                                when(k.time_unix_ms),
                                why.join(", ")
                            ),
                        )
                    }));
                    lines.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
                    text.extend(lines.into_iter().map(|(_, l)| l));
                    rows.push(json!({
                        "bucket": name,
                        "rules": rules,
                        "forget": forget.iter().map(|(seq, ms)| json!({"seq": seq, "time_unix_ms": ms})).collect::<Vec<_>>(),
                        "keep": kept.iter().map(|k| json!({
                            "seq": k.seq,
                            "time_unix_ms": k.time_unix_ms,
                            "why": k.why.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "lock_until_unix_ms": k.lock_until.map(|l| l.timestamp_millis()),
                        })).collect::<Vec<_>>(),
                    }));
                }
            }
        }
    }
    text.push("(dry run: nothing was changed)".into());
    output(
        json,
        json!({"dry_run": true, "buckets": rows}),
        &text.join("\n"),
    );
    Ok(())
}
