//! Retention as the hub applies it: each bucket's commits weighed against
//! the policy in force (`ferry_policies::retention` decides; this module
//! gathers what it decides on: the commits, their legal holds, the
//! journal window). Every commit of a bucket is a snapshot (a full
//! manifest), so the keep-* rules thin them all; the journal window keeps
//! every commit younger than it besides, for point-in-time restores.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ferry_policies::retention::{Keep, SnapshotRef};
use ferry_policies::set::TenantPolicy;

use crate::catalog::{Bucket, CatalogError, Commit, JournalRead};

/// Commits read from the catalog at a time.
const PAGE: usize = 1000;

/// Why a commit stays besides the keep-* rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stays {
    Rule(Keep),
    /// Younger than the journal window.
    Journal,
}

impl std::fmt::Display for Stays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stays::Rule(k) => k.fmt(f),
            Stays::Journal => f.write_str("journal window"),
        }
    }
}

/// One commit the evaluation kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub seq: u64,
    pub time_unix_ms: i64,
    pub why: Vec<Stays>,
    /// The compliance lock the policy gives it (`None`: no retain period
    /// for any class that keeps it, or no compliance table).
    pub lock_until: Option<DateTime<Utc>>,
}

/// What retention does to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRetention {
    /// No retention rules for the bucket: everything stays.
    NoRules,
    Evaluated {
        /// The rules, as `policy show` writes them.
        rules: String,
        /// Oldest first.
        kept: Vec<Kept>,
        /// (seq, time), oldest first.
        forget: Vec<(u64, i64)>,
    },
}

/// Every commit of `bucket`, oldest first, page by page.
///
/// # Errors
/// The catalog's.
pub fn commits_of(
    r: &mut (impl JournalRead + ?Sized),
    bucket: &Bucket,
) -> Result<Vec<Commit>, CatalogError> {
    let mut all = Vec::new();
    loop {
        let page = r.commits(bucket.id, all.last().map_or(0, |c: &Commit| c.seq), PAGE)?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What `policy` keeps and forgets of `bucket`'s `commits` as of `now`.
pub fn evaluate(
    policy: &TenantPolicy,
    bucket: &str,
    commits: &[Commit],
    now: DateTime<Utc>,
) -> BucketRetention {
    let in_force = policy.bucket(bucket);
    let Some(retention) = in_force.retention else {
        return BucketRetention::NoRules;
    };
    let snapshots: Vec<SnapshotRef> = commits
        .iter()
        .map(|c| SnapshotRef {
            id: c.seq,
            time: at(c.time_unix_ms),
            locked_until: None,
            holds: in_force
                .holds
                .iter()
                .filter(|h| h.covers(bucket, at(c.time_unix_ms)))
                .map(|h| h.name.clone())
                .collect(),
        })
        .collect();
    let decision = retention.evaluate(&snapshots, now);
    let mut why: BTreeMap<u64, Vec<Stays>> = decision
        .keep
        .into_iter()
        .map(|(seq, keeps)| (seq, keeps.into_iter().map(Stays::Rule).collect()))
        .collect();
    let cutoff = retention.journal_cutoff(now);
    let mut forget = Vec::new();
    for c in commits {
        if why.contains_key(&c.seq) {
            continue;
        }
        if cutoff.is_some_and(|cut| at(c.time_unix_ms) >= cut) {
            why.insert(c.seq, vec![Stays::Journal]);
        } else {
            forget.push((c.seq, c.time_unix_ms));
        }
    }
    let kept = commits
        .iter()
        .filter_map(|c| {
            let reasons = why.remove(&c.seq)?;
            let rules: Vec<Keep> = reasons
                .iter()
                .filter_map(|s| match s {
                    Stays::Rule(k) => Some(k.clone()),
                    Stays::Journal => None,
                })
                .collect();
            Some(Kept {
                seq: c.seq,
                time_unix_ms: c.time_unix_ms,
                lock_until: in_force
                    .compliance
                    .and_then(|comp| comp.lock_for(at(c.time_unix_ms), &rules)),
                why: reasons,
            })
        })
        .collect();
    BucketRetention::Evaluated {
        rules: retention.to_string(),
        kept,
        forget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CommitKind, SiteId};

    fn commit(seq: u64, time: DateTime<Utc>) -> Commit {
        Commit {
            seq,
            site: SiteId(1),
            time_unix_ms: time.timestamp_millis(),
            kind: CommitKind::Snapshot,
            manifest: vec![],
            body: vec![],
            files: 0,
            bytes: 0,
            mac: None,
        }
    }

    fn policy(text: &str) -> TenantPolicy {
        let set = ferry_policies::set::parse(&[("p.toml".into(), text.into())])
            .unwrap_or_else(|e| panic!("{e:?}"));
        set.tenants.get("acme").cloned().unwrap_or_default()
    }

    fn day(d: u32, h: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn rules_holds_the_journal_window_and_locks_decide_together() {
        // Two commits a day, 1st to 10th of December.
        let commits: Vec<Commit> = (0..20)
            .map(|i| {
                commit(
                    i + 1,
                    day(1 + (i / 2) as u32, if i % 2 == 0 { 6 } else { 18 }),
                )
            })
            .collect();
        let p = policy(
            "tenant = \"acme\"\n[retention]\nkeep-daily = 3\njournal-window = \"1d\"\n\
             [compliance]\nmode = \"compliance\"\nretain-days = { daily = 30 }\n\
             [hold.audit]\nbucket = \"docs\"\nreason = \"audit\"\n\
             taken-after = 2026-12-02T00:00:00Z\ntaken-before = 2026-12-03T00:00:00Z\n",
        );
        let now = day(10, 20);
        let BucketRetention::Evaluated { kept, forget, .. } = evaluate(&p, "docs", &commits, now)
        else {
            panic!("rules in force");
        };
        let kept_seqs: Vec<u64> = kept.iter().map(|k| k.seq).collect();
        // Held: both of the 2nd (3, 4); daily: the newest of the 8th, 9th,
        // 10th (16, 18, 20); the journal window (from the 9th 20:00): 19.
        assert_eq!(kept_seqs, [3, 4, 16, 18, 19, 20]);
        let of = |seq| kept.iter().find(|k| k.seq == seq).map(|k| k.why.clone());
        assert_eq!(of(3), Some(vec![Stays::Rule(Keep::Held("audit".into()))]));
        assert_eq!(of(19), Some(vec![Stays::Journal]));
        assert_eq!(of(20), Some(vec![Stays::Rule(Keep::Daily)]));
        // A daily keeper is locked for 30 days from when it was taken; a
        // commit kept only by a hold or the window gets no lock.
        let lock = |seq| {
            kept.iter()
                .find(|k| k.seq == seq)
                .and_then(|k| k.lock_until)
        };
        assert_eq!(lock(20), Some(day(10, 18) + chrono::Duration::days(30)));
        assert_eq!(lock(3), None);
        assert_eq!(lock(19), None);
        assert_eq!(forget.len(), 14);
        assert_eq!(forget.first().map(|f| f.0), Some(1));
    }

    #[test]
    fn a_bucket_without_rules_keeps_everything() {
        let p = policy("tenant = \"acme\"\n[bucket.other.retention]\nkeep-last = 1\n");
        let commits = [commit(1, day(1, 0)), commit(2, day(2, 0))];
        assert_eq!(
            evaluate(&p, "docs", &commits, day(3, 0)),
            BucketRetention::NoRules
        );
        assert!(matches!(
            evaluate(&p, "other", &commits, day(3, 0)),
            BucketRetention::Evaluated { ref forget, .. } if forget == &[(1, day(1, 0).timestamp_millis())]
        ));
    }
}
