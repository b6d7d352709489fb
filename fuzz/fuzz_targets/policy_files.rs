//! Policy files (`ferry-hub policy apply`): the parser, the checks, the
//! set's resolution, and the evaluators on what a file sets.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [("a.toml".to_string(), text.to_string()), ("b.toml".to_string(), text.to_string())];
    let _ = ferry_policies::set::parse(&files[..1]);
    // The same file twice: every table is a duplicate.
    let _ = ferry_policies::set::parse(&files);
    let Ok(set) = ferry_policies::set::parse(&files[..1]) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_796_000_000, 0).unwrap_or_default();
    let snaps: Vec<ferry_policies::SnapshotRef> = (0..50)
        .map(|i| ferry_policies::SnapshotRef {
            id: i,
            time: now - chrono::Duration::hours(7 * i as i64),
            locked_until: None,
            holds: vec![],
        })
        .collect();
    for tenant in set.tenants.values() {
        let _ = tenant.describe();
        let policy = tenant.bucket("b");
        if let Some(r) = policy.retention {
            let _ = r.evaluate(&snaps, now);
            let _ = r.journal_cutoff(now);
        }
        for s in policy.schedules {
            let _ = s.next_after(now);
        }
    }
});
