//! The decoders of catalog rows shared by both engines: packed id lists,
//! integers narrowed to their Rust types, commit kinds.
#![no_main]

use ferry_hub::catalog::{CommitKind, from_i64, stored_ids};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = data.get(..8) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(head);
        let value = i64::from_le_bytes(raw);
        let _ = from_i64::<u64>("fuzz", value);
        let _ = from_i64::<u32>("fuzz", value);
    }
    let _ = stored_ids("fuzz", data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CommitKind::parse(text);
    }
});
