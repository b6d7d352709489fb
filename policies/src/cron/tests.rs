use super::*;
use proptest::prelude::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .unwrap_or_default()
}

fn next(expr: &str, tz: Tz, after: DateTime<Utc>) -> DateTime<Utc> {
    let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
    cron.next_after(after, tz)
        .unwrap_or_else(|| panic!("{expr} never fires"))
}

#[test]
fn fields_lists_ranges_steps_and_names() {
    let after = utc(2026, 12, 7, 10, 7); // a Monday
    assert_eq!(
        next("*/15 * * * *", Tz::UTC, after),
        utc(2026, 12, 7, 10, 15)
    );
    assert_eq!(
        next("5,50 10 * * *", Tz::UTC, after),
        utc(2026, 12, 7, 10, 50)
    );
    assert_eq!(
        next("0 9-17/4 * * *", Tz::UTC, after),
        utc(2026, 12, 7, 13, 0)
    );
    assert_eq!(
        next("30 2 * * sat", Tz::UTC, after),
        utc(2026, 12, 12, 2, 30)
    );
    assert_eq!(next("0 0 1 jan *", Tz::UTC, after), utc(2027, 1, 1, 0, 0));
    assert_eq!(
        next("0 0 * * 7", Tz::UTC, after),
        utc(2026, 12, 13, 0, 0),
        "7 is Sunday"
    );
    assert_eq!(next("@hourly", Tz::UTC, after), utc(2026, 12, 7, 11, 0));
    assert_eq!(next("@weekly", Tz::UTC, after), utc(2026, 12, 13, 0, 0));
    // Exactly on a firing time: the next one, not the same.
    assert_eq!(
        next("0 * * * *", Tz::UTC, utc(2026, 1, 1, 5, 0)),
        utc(2026, 1, 1, 6, 0)
    );
}

#[test]
fn both_day_fields_restricted_fire_on_either() {
    // The 15th, or any Friday: 2026-12-11 is a Friday before the 15th.
    let after = utc(2026, 12, 7, 0, 0);
    assert_eq!(
        next("0 0 15 * fri", Tz::UTC, after),
        utc(2026, 12, 11, 0, 0)
    );
    // With the weekday field a star, only the day of month counts.
    assert_eq!(next("0 0 15 * *", Tz::UTC, after), utc(2026, 12, 15, 0, 0));
}

#[test]
fn the_time_zone_sets_the_wall_clock() {
    let berlin: Tz = "Europe/Berlin".parse().unwrap_or(Tz::UTC);
    // 02:00 in Berlin in winter is 01:00 UTC.
    assert_eq!(
        next("0 2 * * *", berlin, utc(2026, 12, 7, 12, 0)),
        utc(2026, 12, 8, 1, 0)
    );
}

#[test]
fn a_skipped_wall_time_fires_when_the_gap_ends_and_a_repeated_one_once() {
    let berlin: Tz = "Europe/Berlin".parse().unwrap_or(Tz::UTC);
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    let spring = next("30 2 * * *", berlin, utc(2026, 3, 28, 12, 0));
    assert_eq!(spring, utc(2026, 3, 29, 1, 0));
    // The day after, 02:30 CEST is 00:30 UTC again.
    assert_eq!(next("30 2 * * *", berlin, spring), utc(2026, 3, 30, 0, 30));
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice
    // (00:30 and 01:30 UTC) and fires at the first only.
    let autumn = next("30 2 * * *", berlin, utc(2026, 10, 24, 12, 0));
    assert_eq!(autumn, utc(2026, 10, 25, 0, 30));
    assert_eq!(next("30 2 * * *", berlin, autumn), utc(2026, 10, 26, 1, 30));
}

#[test]
fn leap_days_come_every_four_years_but_not_in_2100() {
    assert_eq!(
        next("0 0 29 2 *", Tz::UTC, utc(2026, 3, 1, 0, 0)),
        utc(2028, 2, 29, 0, 0)
    );
    assert_eq!(
        next("0 0 29 2 *", Tz::UTC, utc(2096, 3, 1, 0, 0)),
        utc(2104, 2, 29, 0, 0)
    );
}

#[test]
fn bad_expressions_say_which_field_and_why() {
    let cases = [
        ("* * * *", "4 fields"),
        ("61 * * * *", "minute field \"61\": 61 is outside 0-59"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month field \"0\""),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day of week field"),
        ("*/0 * * * *", "a step of 0"),
        ("5-1 * * * *", "runs backwards"),
        ("* * * foo *", "\"foo\" is not a number or a name"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "unknown macro"),
    ];
    for (expr, want) in cases {
        match Cron::parse(expr) {
            Ok(_) => panic!("{expr:?} was accepted"),
            Err(CronError(why)) => assert!(why.contains(want), "{expr:?}: {why}"),
        }
    }
}

/// The reference: walk every UTC minute and ask whether the expression
/// fires then, from the zone's own view of each instant.
fn brute_next(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    limit_minutes: i64,
) -> Option<DateTime<Utc>> {
    let start = after.timestamp().div_euclid(60) * 60 + 60;
    for i in 0..limit_minutes {
        let u = DateTime::from_timestamp(start + i * 60, 0)?;
        let wall = u.with_timezone(&tz).naive_local();
        let first_of_wall = tz
            .from_local_datetime(&wall)
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        if cron.matches(&wall) && first_of_wall == Some(u) {
            return Some(u);
        }
        // The first instant after a gap stands for every wall time skipped.
        let before = (u - Duration::minutes(1)).with_timezone(&tz).naive_local();
        let mut skipped = before + Duration::minutes(1);
        while skipped < wall {
            if cron.matches(&skipped) {
                return Some(u);
            }
            skipped += Duration::minutes(1);
        }
    }
    None
}

fn field_strategy(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..7).prop_map(|s| format!("*/{s}")),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn next_after_is_the_first_firing_minute(
        minute in field_strategy(0, 59),
        hour in field_strategy(0, 23),
        weekday in field_strategy(0, 6),
        zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
        // 2024-2031, leap days and DST changes included.
        secs in 1_704_067_200i64..1_956_528_000i64,
    ) {
        let expr = format!("{minute} {hour} * * {weekday}");
        let cron = Cron::parse(&expr).map_err(|e| TestCaseError::fail(e.0))?;
        let tz: Tz = zone.parse().map_err(|_| TestCaseError::fail("zone"))?;
        let after = DateTime::from_timestamp(secs, 0).unwrap_or_default();
        // Every such expression fires within eight days.
        let want = brute_next(&cron, tz, after, 8 * 24 * 60 + 180);
        prop_assert_eq!(cron.next_after(after, tz), want, "{} in {} after {}", expr, zone, after);
    }
}
