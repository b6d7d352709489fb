//! The daemon's job state read back from its state directory: the saved
//! plan (a `Policy.Jobs` answer, as the hub sends it) and the status file.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((plan, _)) = ferry_agent::jobs::plan::Plan::decode(data) {
        // What the daemon then does with a plan: its schedules' next slots.
        let now = DateTime::<Utc>::from_timestamp(1_796_000_000, 0).unwrap_or_default();
        for source in plan.sources.values() {
            let _ = ferry_policies::schedule::next_run(&source.schedules, Some(now), now);
        }
    }
    let _ = ferry_agent::jobs::status::Board::decode(data);
});
