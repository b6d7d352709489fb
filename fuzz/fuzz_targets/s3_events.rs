//! S3 event notification bodies as posted to the agent's webhook.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_agent::events::parse::parse_events(data);
});
