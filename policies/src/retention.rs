//! Retention rules: which snapshots to keep, and why.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;

/// A retention policy as written in a policy file's `[retention]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep everything younger than this many days.
    pub keep_within_days: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy {file}: {message}")]
    Parse { file: String, message: String },
    #[error("policy {file}: [retention] keeps nothing: set at least one keep-* rule")]
    KeepsNothing { file: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    retention: Retention,
}

/// Parses a policy file's text; `file` names it in errors.
pub fn parse_retention(file: &str, text: &str) -> Result<Retention, PolicyError> {
    let parsed: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let r = parsed.retention;
    let rules = [
        r.keep_last,
        r.keep_hourly,
        r.keep_daily,
        r.keep_weekly,
        r.keep_monthly,
        r.keep_yearly,
        r.keep_within_days,
    ];
    if rules.iter().all(|x| x.unwrap_or(0) == 0) {
        // A policy that would forget every snapshot is a mistake, not a wish.
        return Err(PolicyError::KeepsNothing {
            file: file.to_string(),
        });
    }
    Ok(r)
}

/// Maps a time to the calendar period (hour, day, week, …) it falls in.
type PeriodOf = fn(&DateTime<Utc>) -> (i32, u32, u32, u32);

/// A snapshot as the evaluator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRef {
    pub id: u64,
    pub time: DateTime<Utc>,
}

/// The outcome: every snapshot is either kept (with the rules that keep it) or forgotten.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub keep: BTreeMap<u64, Vec<&'static str>>,
    pub forget: Vec<u64>,
}

impl Retention {
    /// Applies the rules to `snapshots` (any order) as of `now`.
    pub fn evaluate(&self, snapshots: &[SnapshotRef], now: DateTime<Utc>) -> Decision {
        let mut sorted = snapshots.to_vec();
        // Newest first; ties broken by id so the result does not depend on input order.
        sorted.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        let mut decision = Decision::default();
        let mut keep = |id: u64, why: &'static str| decision.keep.entry(id).or_default().push(why);

        if let Some(n) = self.keep_last {
            for s in sorted.iter().take(n as usize) {
                keep(s.id, "last");
            }
        }
        let periods: [(Option<u32>, &'static str, PeriodOf); 5] = [
            (self.keep_hourly, "hourly", |t| {
                (t.year(), t.ordinal(), t.hour(), 0)
            }),
            (self.keep_daily, "daily", |t| (t.year(), t.ordinal(), 0, 0)),
            (self.keep_weekly, "weekly", |t| {
                (t.iso_week().year(), t.iso_week().week(), 0, 0)
            }),
            (self.keep_monthly, "monthly", |t| {
                (t.year(), t.month(), 0, 0)
            }),
            (self.keep_yearly, "yearly", |t| (t.year(), 0, 0, 0)),
        ];
        for (count, why, period_of) in periods {
            let Some(count) = count else { continue };
            // The newest snapshot of each of the `count` newest periods.
            let mut seen = HashSet::new();
            for s in &sorted {
                if seen.len() == count as usize {
                    break;
                }
                if seen.insert(period_of(&s.time)) {
                    keep(s.id, why);
                }
            }
        }
        if let Some(days) = self.keep_within_days {
            let cutoff = now - chrono::Duration::days(i64::from(days));
            for s in sorted.iter().filter(|s| s.time >= cutoff) {
                keep(s.id, "within");
            }
        }
        decision.forget = sorted
            .iter()
            .filter(|s| !decision.keep.contains_key(&s.id))
            .map(|s| s.id)
            .collect();
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap()
    }

    fn snaps() -> Vec<SnapshotRef> {
        // Four a day at 00, 06, 12, 18 for ten days of 2026-03.
        (0..40)
            .map(|i| SnapshotRef {
                id: i,
                time: at(2026, 3, 1 + (i / 4) as u32, 6 * (i % 4) as u32),
            })
            .collect()
    }

    #[test]
    fn last_and_daily() {
        let r = Retention {
            keep_last: Some(2),
            keep_daily: Some(3),
            ..Default::default()
        };
        let d = r.evaluate(&snaps(), at(2026, 3, 11, 0));
        let kept: Vec<u64> = d.keep.keys().copied().collect();
        // Last two (39, 38) and the newest of each of the last three days (39, 35, 31).
        assert_eq!(kept, vec![31, 35, 38, 39]);
        assert_eq!(d.keep[&39], vec!["last", "daily"]);
        assert_eq!(d.forget.len(), 36);
    }

    #[test]
    fn within_counts_from_now() {
        let r = Retention {
            keep_within_days: Some(2),
            ..Default::default()
        };
        let d = r.evaluate(&snaps(), at(2026, 3, 11, 0));
        assert_eq!(d.keep.len(), 8, "days 9 and 10, four each");
    }

    #[test]
    fn parse_errors_name_file_and_field() {
        let err = parse_retention("prod.toml", "[retention]\nkeep-dayly = 3\n").unwrap_err();
        assert!(
            err.to_string().contains("prod.toml") && err.to_string().contains("keep-dayly"),
            "{err}"
        );
        let err = parse_retention("prod.toml", "[retention]\nkeep-last = 0\n").unwrap_err();
        assert_eq!(
            err,
            PolicyError::KeepsNothing {
                file: "prod.toml".into()
            }
        );
        let ok = parse_retention("p", "[retention]\nkeep-last = 7\nkeep-monthly = 12\n").unwrap();
        assert_eq!((ok.keep_last, ok.keep_monthly), (Some(7), Some(12)));
    }
}
