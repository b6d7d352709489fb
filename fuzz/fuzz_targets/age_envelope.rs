//! Session headers and chunk payloads as fetched from a hub.
#![no_main]

use std::sync::OnceLock;

use ferry_crypto::TenantKeys;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (TenantKeys, ferry_crypto::SessionOpener) {
    static KEYS: OnceLock<(TenantKeys, ferry_crypto::SessionOpener)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().expect("sealer");
        let opener = keys.opener(sealer.header()).expect("opener");
        (keys, opener)
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, opener) = keys();
    let _ = keys.opener(data);
    let _ = opener.open(data);
    let _ = ferry_crypto::envelope::header_len(data);
});
