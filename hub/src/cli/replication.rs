//! `ferry-hub replication ...` and `bucket pause-replication` /
//! `resume-replication`: what replicas report, and what an operator tells
//! them.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::{output, tenant_and_bucket};
use crate::admin::Admin;
use crate::config::HubConfig;
use crate::lag::ReplicaLag;

#[derive(Subcommand)]
pub(super) enum ReplicationCommand {
    /// Per bucket and replica site: the last commit applied and when,
    /// commits behind, seconds behind (the age of the oldest commit not
    /// yet applied), held commits, dead letters, the last error, a pause.
    Status {
        /// One tenant's buckets (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Let a replica apply the commit it holds back (one that deletes more
    /// of its copy than its `max-delete-share`), deletes and all.
    Confirm {
        /// "tenant/bucket".
        name: String,
        #[arg(long)]
        site: String,
    },
    /// List the entries a replica gave up writing after its retries (the
    /// commit was applied without them), each with its reason.
    DeadLetters {
        /// "tenant/bucket".
        name: String,
        #[arg(long)]
        site: String,
    },
    /// Ask a replica to try its dead letters again (once their cause is
    /// fixed): it applies its newest commit anew, writing what is missing.
    Replay {
        /// "tenant/bucket".
        name: String,
        #[arg(long)]
        site: String,
    },
}

pub(super) fn run(command: ReplicationCommand, config: &HubConfig, json: bool) -> Result<()> {
    match command {
        ReplicationCommand::Confirm { name, site } => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let seq = Admin::open(config)?.confirm_hold(tenant, bucket, &site)?;
            output(
                json,
                json!({"bucket": name, "site": site, "confirmed_seq": seq}),
                &format!("bucket {name}: site {site} may apply commit {seq}"),
            );
        }
        ReplicationCommand::Status { tenant } => {
            let lags = Admin::open(config)?.replica_lags(tenant.as_deref())?;
            let lines: Vec<String> = lags.iter().map(status_line).collect();
            output(
                json,
                json!({ "replicas": lags }),
                &match lines.is_empty() {
                    true => "no bucket has replicas".to_string(),
                    false => lines.join("\n"),
                },
            );
        }
        ReplicationCommand::DeadLetters { name, site } => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let dead = Admin::open(config)?.dead_letters(tenant, bucket, &site)?;
            let (seq, total, letters) = match &dead {
                Some(d) => (d.seq, d.total, d.letters.as_slice()),
                None => (0, 0, &[][..]),
            };
            let mut text = match total {
                0 => format!("bucket {name}: site {site} has no dead letters"),
                n => {
                    format!("bucket {name}: site {site} applied commit {seq} without {n} entries:")
                }
            };
            for l in letters {
                text.push_str(&format!("\n{}  {}", l.path, l.reason));
            }
            if total > letters.len() as u64 {
                text.push_str(&format!("\n... and {} more", total - letters.len() as u64));
            }
            let rows: Vec<_> = letters
                .iter()
                .map(|l| json!({"path": l.path, "reason": l.reason}))
                .collect();
            output(
                json,
                json!({"bucket": name, "site": site, "seq": seq, "total": total, "dead_letters": rows}),
                &text,
            );
        }
        ReplicationCommand::Replay { name, site } => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let total = Admin::open(config)?.request_replay(tenant, bucket, &site)?;
            output(
                json,
                json!({"bucket": name, "site": site, "dead_letters": total}),
                &format!("bucket {name}: site {site} tries its {total} dead letters again"),
            );
        }
    }
    Ok(())
}

/// `bucket pause-replication` (`paused`) and `resume-replication`.
pub(super) fn pause(name: &str, paused: bool, config: &HubConfig, json: bool) -> Result<()> {
    let (tenant, bucket) = tenant_and_bucket(name)?;
    let since = Admin::open(config)?.pause_replication(tenant, bucket, paused)?;
    let text = match since {
        Some(_) => format!(
            "bucket {name}: replication paused; its replicas apply nothing and keep their tombstones until `resume-replication`"
        ),
        None => format!("bucket {name}: replication resumed; its replicas catch up"),
    };
    output(
        json,
        json!({"bucket": name, "paused_since_unix_ms": since}),
        &text,
    );
    Ok(())
}

fn status_line(l: &ReplicaLag) -> String {
    let mut line = format!(
        "{}  {} -> {}  applied {} of {}  behind {} commits, {:.1} s",
        l.bucket,
        l.source,
        l.replica,
        l.applied_seq,
        l.head_seq,
        l.commits_behind,
        l.seconds_behind
    );
    if l.paused_since_unix_ms.is_some() {
        line.push_str("  PAUSED: `ferry-hub bucket resume-replication` to go on");
    }
    if let Some(h) = &l.held {
        line.push_str(&format!(
            "  HOLDS commit {} back ({} of {} entries deleted){}",
            h.seq,
            h.deletes,
            h.entries,
            match h.confirmed {
                true => ", confirmed",
                false => ": `ferry-hub replication confirm` to apply it",
            }
        ));
    }
    if l.dead_letters > 0 {
        line.push_str(&format!(
            "  {} DEAD LETTERS{}",
            l.dead_letters,
            match l.replay_requested {
                true => " (replay asked for)",
                false => ": `ferry-hub replication dead-letters`, then `replay`",
            }
        ));
    }
    if let Some(e) = &l.last_error
        && e.seq > l.applied_seq
    {
        line.push_str(&format!("  FAILING at commit {}: {}", e.seq, e.message));
    }
    line
}
