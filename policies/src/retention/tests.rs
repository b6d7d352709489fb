use super::*;
use chrono::{Duration, TimeZone};
use proptest::prelude::*;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap_or_default()
}

fn snap(id: u64, time: DateTime<Utc>) -> SnapshotRef {
    SnapshotRef {
        id,
        time,
        locked_until: None,
        holds: vec![],
    }
}

fn four_a_day() -> Vec<SnapshotRef> {
    // At 00, 06, 12 and 18 for ten days of 2026-03.
    (0..40)
        .map(|i| snap(i, at(2026, 3, 1 + (i / 4) as u32, 6 * (i % 4) as u32)))
        .collect()
}

fn kept(d: &Decision) -> Vec<u64> {
    d.keep.keys().copied().collect()
}

#[test]
fn last_and_daily_are_or_ed_and_each_reason_is_told() {
    let r = Retention {
        keep_last: Some(2),
        keep_daily: Some(3),
        ..Default::default()
    };
    let d = r.evaluate(&four_a_day(), at(2026, 3, 11, 0));
    // The last two (39, 38) and the newest of each of the last three days (39, 35, 31).
    assert_eq!(kept(&d), vec![31, 35, 38, 39]);
    assert_eq!(d.keep[&39], vec![Keep::Last, Keep::Daily]);
    assert_eq!(d.forget.len(), 36);
    assert_eq!(d.forget[0], 37, "newest first");
}

#[test]
fn keep_within_counts_back_from_the_newest_snapshot_not_from_now() {
    let r = Retention {
        keep_within: Period::parse("2d").ok(),
        ..Default::default()
    };
    // A month after the last snapshot: still the newest two days of them.
    let d = r.evaluate(&four_a_day(), at(2026, 4, 11, 0));
    // Newest is 03-10 18:00 (39); strictly after 03-08 18:00 (31): eight.
    assert_eq!(kept(&d), (32..40).collect::<Vec<_>>());
}

#[test]
fn a_future_dated_snapshot_is_kept_and_takes_no_rule_s_place() {
    let mut snaps = four_a_day();
    snaps.push(snap(99, at(2027, 1, 1, 0)));
    let r = Retention {
        keep_last: Some(1),
        keep_daily: Some(1),
        ..Default::default()
    };
    let d = r.evaluate(&snaps, at(2026, 3, 11, 0));
    assert_eq!(d.keep[&99], vec![Keep::Future]);
    assert_eq!(d.keep[&39], vec![Keep::Last, Keep::Daily]);
    assert_eq!(d.keep.len(), 2);
}

#[test]
fn locks_in_force_and_holds_keep_what_no_rule_does() {
    let mut snaps = four_a_day();
    snaps[0].locked_until = Some(at(2026, 6, 1, 0));
    snaps[1].locked_until = Some(at(2026, 3, 5, 0)); // expired
    snaps[2].holds = vec!["case-17".into()];
    let r = Retention {
        keep_last: Some(1),
        ..Default::default()
    };
    let d = r.evaluate(&snaps, at(2026, 3, 11, 0));
    assert_eq!(kept(&d), vec![0, 2, 39]);
    assert_eq!(
        d.keep[&0][0].to_string(),
        "locked until 2026-06-01T00:00:00Z"
    );
    assert_eq!(d.keep[&2][0].to_string(), "held by case-17");
}

#[test]
fn periods_follow_the_policy_s_zone() {
    // 23:30 UTC on 28 March is already 29 March in Berlin.
    let snaps = [
        snap(1, at(2026, 3, 28, 12)),
        snap(2, at(2026, 3, 28, 23) + Duration::minutes(30)),
    ];
    let utc = Retention {
        keep_daily: Some(2),
        ..Default::default()
    };
    assert_eq!(
        kept(&utc.evaluate(&snaps, at(2026, 4, 1, 0))),
        vec![2],
        "one UTC day"
    );
    let berlin = Retention {
        zone: "Europe/Berlin".parse().unwrap_or(Tz::UTC),
        ..utc
    };
    assert_eq!(
        kept(&berlin.evaluate(&snaps, at(2026, 4, 1, 0))),
        vec![1, 2],
        "two Berlin days"
    );
}

#[test]
fn weeks_are_iso_weeks_and_leap_days_are_days() {
    // 2026-12-28 (Monday) to 2027-01-03 is ISO week 53 of 2026.
    let snaps = [
        snap(1, at(2026, 12, 27, 12)),
        snap(2, at(2026, 12, 28, 12)),
        snap(3, at(2027, 1, 3, 12)),
        snap(4, at(2027, 1, 4, 12)),
    ];
    let weekly = Retention {
        keep_weekly: Some(3),
        ..Default::default()
    };
    assert_eq!(
        kept(&weekly.evaluate(&snaps, at(2027, 2, 1, 0))),
        vec![1, 3, 4]
    );
    let leap = [
        snap(1, at(2028, 2, 28, 12)),
        snap(2, at(2028, 2, 29, 12)),
        snap(3, at(2028, 3, 1, 12)),
    ];
    let daily = Retention {
        keep_daily: Some(2),
        ..Default::default()
    };
    assert_eq!(kept(&daily.evaluate(&leap, at(2028, 4, 1, 0))), vec![2, 3]);
}

#[test]
fn rules_that_keep_nothing_are_told_apart() {
    assert!(!Retention::default().keeps_something());
    assert!(
        !Retention {
            keep_last: Some(0),
            ..Default::default()
        }
        .keeps_something()
    );
    assert!(
        Retention {
            keep_within: Period::parse("1h").ok(),
            ..Default::default()
        }
        .keeps_something()
    );
}

/// The reference model: group by the period's name as the calendar writes
/// it, take the newest of each group, the groups newest first.
fn reference(r: &Retention, snaps: &[SnapshotRef], now: DateTime<Utc>) -> BTreeMap<u64, Vec<Keep>> {
    let mut keep: BTreeMap<u64, Vec<Keep>> = BTreeMap::new();
    let newest_first = |a: &&SnapshotRef, b: &&SnapshotRef| (b.time, b.id).cmp(&(a.time, a.id));
    let mut past: Vec<&SnapshotRef> = snaps.iter().filter(|s| s.time <= now).collect();
    past.sort_by(newest_first);
    for s in snaps.iter().filter(|s| s.time > now) {
        keep.entry(s.id).or_default().push(Keep::Future);
    }
    for s in past.iter().take(r.keep_last.unwrap_or(0) as usize) {
        keep.entry(s.id).or_default().push(Keep::Last);
    }
    let rules = [
        (r.keep_hourly, Keep::Hourly, "%Y-%m-%d %H"),
        (r.keep_daily, Keep::Daily, "%Y-%m-%d"),
        (r.keep_weekly, Keep::Weekly, "%G-W%V"),
        (r.keep_monthly, Keep::Monthly, "%Y-%m"),
        (r.keep_yearly, Keep::Yearly, "%Y"),
    ];
    for (n, why, format) in rules {
        let Some(n) = n else { continue };
        let mut groups: BTreeMap<String, Vec<&SnapshotRef>> = BTreeMap::new();
        for s in &past {
            groups
                .entry(s.time.with_timezone(&r.zone).format(format).to_string())
                .or_default()
                .push(s);
        }
        let mut newest: Vec<&SnapshotRef> = groups
            .values()
            .filter_map(|g| g.iter().copied().min_by(newest_first))
            .collect();
        newest.sort_by(newest_first);
        for s in newest.into_iter().take(n as usize) {
            keep.entry(s.id).or_default().push(why.clone());
        }
    }
    if let (Some(w), Some(top)) = (r.keep_within, past.first()) {
        let cutoff = w.before(top.time, r.zone);
        for s in past.iter().filter(|s| s.time > cutoff) {
            keep.entry(s.id).or_default().push(Keep::Within);
        }
    }
    for v in keep.values_mut() {
        v.sort();
    }
    keep
}

fn history() -> impl Strategy<Value = (Vec<SnapshotRef>, i64)> {
    // Start anywhere in 2024-2031 (leap days, DST changes), then gaps of a
    // minute to nine days; some snapshots share a time.
    (
        1_704_067_200i64..1_956_528_000i64,
        prop::collection::vec(
            prop_oneof![
                Just(0i64),
                60i64..3_600,
                3_600i64..90_000,
                90_000i64..800_000
            ],
            0..120,
        ),
        -86_400i64..2_600_000,
    )
        .prop_map(|(start, gaps, now_after)| {
            let mut t = start;
            let snaps = gaps
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    t += g;
                    snap(i as u64, DateTime::from_timestamp(t, 0).unwrap_or_default())
                })
                .collect();
            (snaps, t + now_after)
        })
}

fn rules() -> impl Strategy<Value = Retention> {
    let n = || prop::option::of(0u32..6);
    let within = prop::option::of(prop::sample::select(vec![
        "12h", "1d", "3d", "1w", "1m", "1y", "2m10d",
    ]));
    let zone = prop::sample::select(vec![
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Santiago",
    ]);
    (n(), n(), n(), n(), n(), n(), within, zone).prop_map(|(l, h, d, w, m, y, within, zone)| {
        Retention {
            keep_last: l,
            keep_hourly: h,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_yearly: y,
            keep_within: within.and_then(|p| Period::parse(p).ok()),
            journal_window: None,
            zone: zone.parse().unwrap_or(Tz::UTC),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn the_evaluator_agrees_with_the_reference_model((snaps, now) in history(), r in rules(), shuffle in any::<u64>()) {
        let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
        // The input's order does not matter.
        let mut input = snaps.clone();
        let k = input.len().max(1);
        input.rotate_left((shuffle as usize) % k);
        let mut d = r.evaluate(&input, now);
        for v in d.keep.values_mut() { v.sort(); }
        prop_assert_eq!(&d.keep, &reference(&r, &snaps, now));
        // Kept and forgotten split the snapshots exactly.
        prop_assert_eq!(d.keep.len() + d.forget.len(), snaps.len());
        prop_assert!(d.forget.iter().all(|id| !d.keep.contains_key(id)));
        // The newest snapshot not dated in the future is always kept by a policy that keeps something.
        let top = snaps.iter().filter(|s| s.time <= now).max_by_key(|s| (s.time, s.id));
        if let (true, Some(top)) = (r.keeps_something(), top) {
            prop_assert!(d.keep.contains_key(&top.id));
        }
    }
}
