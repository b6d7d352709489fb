//! Lengths of time as policies write them: `"2d"`, `"1y6m"`, `"36h"`.
//!
//! The units are restic's: y(ears), m(onths), w(eeks), d(ays), h(ours).
//! Years, months and days are counted on the calendar of the policy's time
//! zone, so "1m" back from 31 March is the end of February, and a day
//! across a DST change is 23 or 25 hours.

use std::fmt;

use chrono::{DateTime, Duration, Months, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Period {
    /// Parses `text`; the error says why.
    ///
    /// # Errors
    /// An empty text, a unit other than y, m, w, d or h, a number without a
    /// unit, or a unit given twice.
    pub fn parse(text: &str) -> Result<Period, String> {
        let mut p = Period::default();
        let mut digits = String::new();
        let mut seen = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if digits.is_empty() {
                return Err(format!("{c:?} has no number before it"));
            }
            let n: u32 = digits
                .parse()
                .map_err(|_| format!("{digits} is too large"))?;
            digits.clear();
            if seen.contains(c) {
                return Err(format!("the unit {c:?} is given twice"));
            }
            seen.push(c);
            match c {
                'y' => p.years = n,
                'm' => p.months = n,
                'w' => p.days = p.days.saturating_add(n.saturating_mul(7)),
                'd' => p.days = p.days.saturating_add(n),
                'h' => p.hours = n,
                other => return Err(format!("unknown unit {other:?} (use y, m, w, d or h)")),
            }
        }
        if !digits.is_empty() {
            return Err(format!("{digits} has no unit (use y, m, w, d or h)"));
        }
        if p == Period::default() {
            return Err("is empty or zero".into());
        }
        Ok(p)
    }

    /// `t` moved back by this period, on the calendar of `tz`.
    pub fn before(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        let back = local
            .checked_sub_months(Months::new(
                self.years.saturating_mul(12).saturating_add(self.months),
            ))
            .and_then(|l| l.checked_sub_days(chrono::Days::new(u64::from(self.days))))
            .and_then(|l| crate::cron::resolve(tz, l));
        // Past the calendar's range: as far back as time goes.
        back.unwrap_or(DateTime::<Utc>::MIN_UTC) - Duration::hours(i64::from(self.hours))
    }

    /// `t` moved forward by this period, on the calendar of `tz`.
    pub fn after(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        let on = local
            .checked_add_months(Months::new(
                self.years.saturating_mul(12).saturating_add(self.months),
            ))
            .and_then(|l| l.checked_add_days(chrono::Days::new(u64::from(self.days))))
            .and_then(|l| crate::cron::resolve(tz, l));
        on.unwrap_or(DateTime::<Utc>::MAX_UTC) + Duration::hours(i64::from(self.hours))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_restic_style_periods_and_refuses_the_rest() {
        let p = Period::parse("1y6m2w1d12h").unwrap_or_default();
        assert_eq!(
            p,
            Period {
                years: 1,
                months: 6,
                days: 15,
                hours: 12
            }
        );
        assert_eq!(p.to_string(), "1y6m15d12h");
        for (bad, why) in [
            ("", "empty"),
            ("0d", "zero"),
            ("7", "no unit"),
            ("d", "no number"),
            ("3x", "unknown unit"),
            ("1d2d", "twice"),
        ] {
            let err = Period::parse(bad).err().unwrap_or_default();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn months_and_days_follow_the_calendar_of_the_zone() {
        let utc = |y, m, d, h| {
            Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
                .single()
                .unwrap_or_default()
        };
        let month = Period {
            months: 1,
            ..Default::default()
        };
        // 31 March less a month is the last day of February (a leap year here).
        assert_eq!(
            month.before(utc(2028, 3, 31, 12), Tz::UTC),
            utc(2028, 2, 29, 12)
        );
        // A day back across Berlin's spring change is 23 hours.
        let berlin: Tz = "Europe/Berlin".parse().unwrap_or(Tz::UTC);
        let day = Period {
            days: 1,
            ..Default::default()
        };
        assert_eq!(
            day.before(utc(2026, 3, 29, 12), berlin),
            utc(2026, 3, 28, 13)
        );
        assert_eq!(
            day.after(utc(2026, 3, 28, 11), berlin),
            utc(2026, 3, 29, 10)
        );
    }
}
