//! Cron expressions (five fields: minute hour day-of-month month
//! day-of-week), evaluated in a time zone.
//!
//! The fields mean what Vixie cron's mean: lists, ranges, steps, month and
//! weekday names, 7 as Sunday, and when both day fields are restricted a
//! day matching either one fires. Wall-clock times that a DST change skips
//! fire at the first instant after the gap; times it repeats fire once, at
//! their first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The longest a valid expression can go without firing is eight years
/// (29 February across a century that skips its leap year).
const HORIZON_DAYS: u32 = 366 * 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day-of-month field started with `*` (so only weekdays restrict).
    any_day: bool,
    any_weekday: bool,
}

/// Why an expression was refused; the caller adds where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    // 0-7, Sunday twice; names start at 0.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

impl Cron {
    /// Parses an expression such as `"30 2 * * 1-5"` or `"@daily"`.
    ///
    /// # Errors
    /// A field that is malformed or out of range, a wrong number of
    /// fields, or an expression that never fires (`0 0 30 2 *`).
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(CronError(format!(
                    "unknown macro {other} (known: @yearly, @monthly, @weekly, @daily, @hourly)"
                )));
            }
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError(format!(
                "{} fields, expected 5 (minute hour day-of-month month day-of-week)",
                parts.len()
            )));
        }
        let mut sets = [0u64; 5];
        for (i, (part, field)) in parts.iter().zip(&FIELDS).enumerate() {
            sets[i] = parse_field(part, field)?;
        }
        // Sunday is 0 and 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] | 1) & !(1 << 7);
        }
        let cron = Cron {
            text: text.trim().to_string(),
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            any_day: parts[2].starts_with('*'),
            any_weekday: parts[4].starts_with('*'),
        };
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if reference
            .and_then(|r| cron.next_after(r, Tz::UTC))
            .is_none()
        {
            return Err(CronError("never fires (no such day in any year)".into()));
        }
        Ok(cron)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether wall-clock `t` is one of the expression's times.
    pub fn matches(&self, t: &NaiveDateTime) -> bool {
        self.matches_day(&t.date()) && bit(self.hours, t.hour()) && bit(self.minutes, t.minute())
    }

    fn matches_day(&self, d: &NaiveDate) -> bool {
        if !bit(self.months, d.month()) {
            return false;
        }
        let day = bit(self.days, d.day());
        let weekday = bit(self.weekdays, d.weekday().num_days_from_sunday());
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => weekday,
            (false, true) => day,
            (false, false) => day || weekday,
        }
    }

    /// The first instant after `after` at which the expression fires in
    /// `tz`; `None` only for an expression that never fires.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // From the day before: a time in a DST gap fires later than written.
        let mut date = after.with_timezone(&tz).date_naive().pred_opt()?;
        for _ in 0..HORIZON_DAYS {
            if self.matches_day(&date) {
                for hour in (0..24).filter(|h| bit(self.hours, *h)) {
                    for minute in (0..60).filter(|m| bit(self.minutes, *m)) {
                        let wall = date.and_hms_opt(hour, minute, 0)?;
                        let instant = resolve(tz, wall)?;
                        if instant > after {
                            return Some(instant);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// The instant of wall-clock `wall` in `tz`: its first occurrence when a
/// DST change repeats it, the end of the gap when one skips it.
pub fn resolve(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut t = wall;
    // Gaps are at most a few hours; a day bounds the walk.
    for _ in 0..=24 * 60 {
        if let Some(local) = tz.from_local_datetime(&t).earliest() {
            return Some(local.with_timezone(&Utc));
        }
        t += Duration::minutes(1);
    }
    None
}

fn bit(set: u64, n: u32) -> bool {
    set & (1u64 << n) != 0
}

fn parse_field(text: &str, field: &Field) -> Result<u64, CronError> {
    let bad = |why: String| CronError(format!("{} field {text:?}: {why}", field.name));
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad(format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(bad("a step of 0".into()));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, field).map_err(&bad)?,
                value(b, field).map_err(&bad)?,
            )
        } else {
            let v = value(range, field).map_err(&bad)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step > 1 { field.max } else { v })
        };
        if lo > hi {
            return Err(bad(format!("range {lo}-{hi} runs backwards")));
        }
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        // Month names count from 1, weekday names from 0 (Sunday).
        return Ok(field.min + i as u32);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number or a name"))?;
    if v < field.min || v > field.max {
        return Err(format!("{v} is outside {}-{}", field.min, field.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests;
