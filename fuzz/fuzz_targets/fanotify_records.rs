//! The bytes a fanotify `read` returns, as the directory watcher parses
//! them: whatever the lengths claim, an error or events, never a panic or
//! a read past the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = ferry_agent::watch::fanotify::records::parse(data, &mut out);
    for record in out {
        if let Some((dir, _)) = record.dir {
            assert!(dir.len() >= 4, "a key holds the handle type");
        }
    }
});
