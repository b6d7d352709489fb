//! Retention: which snapshots a bucket keeps, and the rule that keeps each.
//!
//! The keep-* rules mean what restic's `forget` means, so an operator
//! coming from it meets no surprises:
//! - keep-last N keeps the N newest snapshots;
//! - keep-hourly … keep-yearly N keep the newest snapshot of each of the N
//!   newest calendar periods (hours, days, ISO weeks, months, years of the
//!   policy's time zone) that hold a snapshot;
//! - keep-within P keeps every snapshot less than P older than the newest;
//! - rules are OR-ed: a snapshot any rule keeps is kept.
//!
//! Beyond restic: a snapshot dated after `now` (a source whose clock runs
//! ahead) is kept and counts for no rule, so it cannot push real snapshots
//! out; a locked or held snapshot is kept whatever the rules say.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::period::Period;

/// A bucket's retention rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Period>,
    /// How far back a bucket's journal (its point-in-time history between
    /// snapshots) reaches: every commit younger than this stays, and an
    /// older one only if a rule keeps it. `None`: no window; the rules
    /// alone decide.
    pub journal_window: Option<Period>,
    /// The zone whose calendar the periods follow.
    pub zone: Tz,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            journal_window: None,
            zone: Tz::UTC,
        }
    }
}

/// A snapshot as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    pub id: u64,
    pub time: DateTime<Utc>,
    /// Its compliance lock, if any (kept while `now` is before it).
    pub locked_until: Option<DateTime<Utc>>,
    /// The legal holds on it, by name.
    pub holds: Vec<String>,
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    /// Dated after the evaluation's `now`.
    Future,
    Locked(DateTime<Utc>),
    Held(String),
}

impl Keep {
    /// The retention class a compliance lock may be set for (`None` for
    /// reasons that are not rules).
    pub fn class(&self) -> Option<&'static str> {
        Some(match self {
            Keep::Last => "last",
            Keep::Hourly => "hourly",
            Keep::Daily => "daily",
            Keep::Weekly => "weekly",
            Keep::Monthly => "monthly",
            Keep::Yearly => "yearly",
            Keep::Within => "within",
            Keep::Future | Keep::Locked(_) | Keep::Held(_) => return None,
        })
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Future => f.write_str("future-dated"),
            Keep::Locked(until) => write!(f, "locked until {}", until.format("%Y-%m-%dT%H:%M:%SZ")),
            Keep::Held(name) => write!(f, "held by {name}"),
            rule => f.write_str(rule.class().unwrap_or("?")),
        }
    }
}

/// Every snapshot is either kept, with all the reasons that keep it, or forgotten.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decision {
    pub keep: BTreeMap<u64, Vec<Keep>>,
    /// Newest first.
    pub forget: Vec<u64>,
}

/// A calendar period's key: comparing two says whether they are one period.
type PeriodOf = fn(&chrono::NaiveDateTime) -> (i32, u32, u32);

impl Retention {
    /// Whether the rules keep anything at all (a policy that would forget
    /// every snapshot is a mistake, not a wish, and is refused).
    pub fn keeps_something(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().any(|n| n.unwrap_or(0) > 0) || self.keep_within.is_some()
    }

    /// Applies the rules to `snapshots` (in any order) as of `now`.
    pub fn evaluate(&self, snapshots: &[SnapshotRef], now: DateTime<Utc>) -> Decision {
        let mut sorted: Vec<&SnapshotRef> = snapshots.iter().collect();
        // Newest first; ties broken by id so the result does not depend on input order.
        sorted.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        let mut keep: BTreeMap<u64, Vec<Keep>> = BTreeMap::new();
        let mut add = |id: u64, why: Keep| keep.entry(id).or_default().push(why);

        let (future, past): (Vec<&SnapshotRef>, Vec<&SnapshotRef>) =
            sorted.iter().partition(|s| s.time > now);
        for s in &future {
            add(s.id, Keep::Future);
        }
        if let Some(n) = self.keep_last {
            for s in past.iter().take(n as usize) {
                add(s.id, Keep::Last);
            }
        }
        let periods: [(Option<u32>, Keep, PeriodOf); 5] = [
            (self.keep_hourly, Keep::Hourly, |t| {
                (t.year(), t.ordinal(), t.hour())
            }),
            (self.keep_daily, Keep::Daily, |t| (t.year(), t.ordinal(), 0)),
            (self.keep_weekly, Keep::Weekly, |t| {
                (t.iso_week().year(), t.iso_week().week(), 0)
            }),
            (self.keep_monthly, Keep::Monthly, |t| {
                (t.year(), t.month(), 0)
            }),
            (self.keep_yearly, Keep::Yearly, |t| (t.year(), 0, 0)),
        ];
        for (count, why, period_of) in periods {
            let Some(count) = count else { continue };
            let mut seen = HashSet::new();
            for s in &past {
                if seen.len() == count as usize {
                    break;
                }
                if seen.insert(period_of(&s.time.with_timezone(&self.zone).naive_local())) {
                    add(s.id, why.clone());
                }
            }
        }
        if let (Some(within), Some(newest)) = (self.keep_within, past.first()) {
            let cutoff = within.before(newest.time, self.zone);
            for s in past.iter().filter(|s| s.time > cutoff) {
                add(s.id, Keep::Within);
            }
        }
        for s in &sorted {
            if let Some(until) = s.locked_until.filter(|until| *until > now) {
                add(s.id, Keep::Locked(until));
            }
            for hold in &s.holds {
                add(s.id, Keep::Held(hold.clone()));
            }
        }
        let forget = sorted
            .iter()
            .filter(|s| !keep.contains_key(&s.id))
            .map(|s| s.id)
            .collect();
        Decision { keep, forget }
    }

    /// The oldest journal commit time the window keeps, as of `now`.
    pub fn journal_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.journal_window.map(|w| w.before(now, self.zone))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
            ("keep-yearly", self.keep_yearly),
        ];
        let mut parts: Vec<String> = counts
            .iter()
            .filter_map(|(k, n)| n.map(|n| format!("{k} {n}")))
            .collect();
        if let Some(p) = self.keep_within {
            parts.push(format!("keep-within {p}"));
        }
        if let Some(p) = self.journal_window {
            parts.push(format!("journal-window {p}"));
        }
        write!(f, "{} ({})", parts.join(", "), self.zone.name())
    }
}

#[cfg(test)]
mod tests;
