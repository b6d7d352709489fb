//! When a job (a backup, a drill) runs: cron expressions in a time zone,
//! and what a daemon does about runs it missed while it was down.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::cron::Cron;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron: Cron,
    pub zone: Tz,
}

/// What to do next about a scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A slot passed since the last run (or several did: they make one run).
    Now,
    At(DateTime<Utc>),
}

impl Schedule {
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(t, self.zone)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cron.as_str(), self.zone.name())
    }
}

/// The next run of a job with `schedules` (any of them firing runs it),
/// last started at `last` (`None`: never, so the first slot after `now`).
/// `None` when there is no schedule.
pub fn next_run(
    schedules: &[Schedule],
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Next> {
    let from = last.unwrap_or(now);
    let soonest = schedules.iter().filter_map(|s| s.next_after(from)).min()?;
    Some(if soonest <= now {
        Next::Now
    } else {
        Next::At(soonest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    fn every(expr: &str) -> Schedule {
        let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{e:?}"));
        Schedule {
            cron,
            zone: Tz::UTC,
        }
    }

    #[test]
    fn missed_slots_make_one_run_now_then_the_schedule_resumes() {
        let hourly = [every("0 * * * *")];
        // Down from 03:10 to 09:30: six slots missed, one run.
        assert_eq!(
            next_run(&hourly, Some(utc(7, 3, 0)), utc(7, 9, 30)),
            Some(Next::Now)
        );
        // That run started at 09:30; the next is the next slot, not a catch-up.
        assert_eq!(
            next_run(&hourly, Some(utc(7, 9, 30)), utc(7, 9, 31)),
            Some(Next::At(utc(7, 10, 0)))
        );
        // Never run: the first slot.
        assert_eq!(
            next_run(&hourly, None, utc(7, 9, 31)),
            Some(Next::At(utc(7, 10, 0)))
        );
        assert_eq!(next_run(&[], None, utc(7, 9, 31)), None);
    }

    #[test]
    fn the_soonest_of_several_schedules_wins() {
        let both = [every("0 2 * * *"), every("30 */6 * * *")];
        assert_eq!(
            next_run(&both, Some(utc(7, 0, 30)), utc(7, 1, 0)),
            Some(Next::At(utc(7, 2, 0)))
        );
        assert_eq!(both[1].to_string(), "30 */6 * * * (UTC)");
    }
}
