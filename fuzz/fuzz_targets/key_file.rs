//! Tenant key files as read from disk (both variants, any mode).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ferry_crypto::TenantKeys::parse(Path::new("fuzz.key"), text, 0o600);
});
