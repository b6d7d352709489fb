//! Compliance: how long each snapshot is locked, who may delete a locked
//! one, and legal holds.
//!
//! A lock runs from the snapshot's time for the longest of the retain
//! periods of the classes that keep it (`all` applies to every snapshot).
//! Locks only grow: [`extend`] never returns an earlier time than the lock
//! in force, whatever the policy now says. In compliance mode nobody can
//! delete a locked snapshot; in governance mode an explicit bypass can.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::retention::Keep;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Governance,
    Compliance,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Governance => "governance",
            Mode::Compliance => "compliance",
        }
    }
}

/// The classes `retain-days` may name.
pub const CLASSES: [&str; 8] = [
    "all", "last", "hourly", "daily", "weekly", "monthly", "yearly", "within",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compliance {
    pub mode: Mode,
    /// Days to lock a snapshot for, by the class that keeps it.
    pub retain_days: BTreeMap<String, u32>,
}

impl Compliance {
    /// The lock a snapshot taken at `taken`, kept for `reasons`, should have
    /// (`None`: no class of it has a retain period).
    pub fn lock_for(&self, taken: DateTime<Utc>, reasons: &[Keep]) -> Option<DateTime<Utc>> {
        let classes = reasons.iter().filter_map(Keep::class).chain(["all"]);
        let days = classes.filter_map(|c| self.retain_days.get(c)).max()?;
        taken.checked_add_signed(Duration::days(i64::from(*days)))
    }
}

impl fmt::Display for Compliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<String> = self
            .retain_days
            .iter()
            .map(|(c, d)| format!("{c} {d}d"))
            .collect();
        write!(
            f,
            "{} mode, retain {}",
            self.mode.as_str(),
            if days.is_empty() {
                "nothing".into()
            } else {
                days.join(", ")
            }
        )
    }
}

/// The lock to keep: never earlier than the one in force.
pub fn extend(
    in_force: Option<DateTime<Utc>>,
    wanted: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    in_force.max(wanted)
}

/// Why a deletion (or a shorter lock) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("locked in compliance mode until {0}: nobody can delete it or shorten its lock")]
    Compliance(DateTime<Utc>),
    #[error("locked in governance mode until {0}: only an explicit bypass can delete it")]
    Governance(DateTime<Utc>),
    #[error("under legal hold {0}: release the hold first")]
    Held(String),
}

/// Whether a snapshot locked until `lock` (in `mode`) and under `holds`
/// may be deleted at `now`. A governance `bypass` lifts a governance lock,
/// never a compliance lock or a hold.
///
/// # Errors
/// The refusal, naming the lock or hold that stands in the way.
pub fn may_delete(
    lock: Option<DateTime<Utc>>,
    mode: Mode,
    holds: &[String],
    now: DateTime<Utc>,
    bypass: bool,
) -> Result<(), Refusal> {
    if let Some(hold) = holds.first() {
        return Err(Refusal::Held(hold.clone()));
    }
    match lock.filter(|until| *until > now) {
        None => Ok(()),
        Some(until) if mode == Mode::Compliance => Err(Refusal::Compliance(until)),
        Some(_) if bypass => Ok(()),
        Some(until) => Err(Refusal::Governance(until)),
    }
}

/// A legal hold: keeps the snapshots of a bucket it covers until it is
/// released (removed from the policy), whatever retention says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub name: String,
    pub bucket: String,
    pub reason: String,
    /// Covers snapshots taken at or after this time (`None`: since the first).
    pub taken_after: Option<DateTime<Utc>>,
    /// Covers snapshots taken before this time (`None`: also those to come).
    pub taken_before: Option<DateTime<Utc>>,
}

impl Hold {
    pub fn covers(&self, bucket: &str, taken: DateTime<Utc>) -> bool {
        self.bucket == bucket
            && self.taken_after.is_none_or(|a| taken >= a)
            && self.taken_before.is_none_or(|b| taken < b)
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        write!(
            f,
            "hold {} on bucket {}: taken from {} to {}: {}",
            self.name,
            self.bucket,
            when(self.taken_after).unwrap_or_else(|| "the first".into()),
            when(self.taken_before).unwrap_or_else(|| "any later".into()),
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn policy(mode: Mode) -> Compliance {
        let retain_days = [("all".to_string(), 3), ("monthly".to_string(), 20)]
            .into_iter()
            .collect();
        Compliance { mode, retain_days }
    }

    #[test]
    fn a_lock_runs_for_the_longest_class_that_keeps_the_snapshot() {
        let p = policy(Mode::Compliance);
        assert_eq!(
            p.lock_for(day(1), &[Keep::Daily]),
            Some(day(4)),
            "only `all`"
        );
        assert_eq!(
            p.lock_for(day(1), &[Keep::Daily, Keep::Monthly]),
            Some(day(21))
        );
        let none = Compliance {
            mode: Mode::Governance,
            retain_days: BTreeMap::new(),
        };
        assert_eq!(none.lock_for(day(1), &[Keep::Last]), None);
    }

    #[test]
    fn locks_only_grow() {
        assert_eq!(extend(Some(day(21)), Some(day(4))), Some(day(21)));
        assert_eq!(extend(Some(day(4)), Some(day(21))), Some(day(21)));
        assert_eq!(extend(Some(day(4)), None), Some(day(4)));
        assert_eq!(extend(None, None), None);
    }

    #[test]
    fn who_may_delete_a_locked_or_held_snapshot() {
        let lock = Some(day(10));
        assert_eq!(
            may_delete(lock, Mode::Compliance, &[], day(5), true),
            Err(Refusal::Compliance(day(10)))
        );
        assert_eq!(
            may_delete(lock, Mode::Governance, &[], day(5), false),
            Err(Refusal::Governance(day(10)))
        );
        assert_eq!(
            may_delete(lock, Mode::Governance, &[], day(5), true),
            Ok(())
        );
        assert_eq!(
            may_delete(lock, Mode::Compliance, &[], day(10), false),
            Ok(()),
            "expired"
        );
        let held = ["case-9".to_string()];
        assert_eq!(
            may_delete(None, Mode::Governance, &held, day(5), true),
            Err(Refusal::Held("case-9".into()))
        );
    }

    #[test]
    fn a_hold_covers_its_bucket_and_time_range() {
        let h = Hold {
            name: "case-9".into(),
            bucket: "mail".into(),
            reason: "litigation".into(),
            taken_after: Some(day(2)),
            taken_before: Some(day(9)),
        };
        assert!(h.covers("mail", day(2)) && h.covers("mail", day(8)));
        assert!(
            !h.covers("mail", day(9)) && !h.covers("mail", day(1)) && !h.covers("docs", day(5))
        );
    }
}
