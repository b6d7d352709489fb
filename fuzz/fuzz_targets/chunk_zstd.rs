//! The zstd path of opening a chunk: any bytes, sealed under the session's
//! key so they decrypt, then decompressed (bounded) and checked.
#![no_main]

use std::sync::OnceLock;

use ferry_crypto::{SessionOpener, SessionSealer, TenantKeys};
use ferry_proto::{BlobId, FLAG_ZSTD};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (TenantKeys, SessionSealer, SessionOpener) {
    static KEYS: OnceLock<(TenantKeys, SessionSealer, SessionOpener)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().expect("sealer");
        let opener = keys.opener(sealer.header()).expect("opener");
        (keys, sealer, opener)
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, sealer, opener) = keys();
    let Ok(payload) = sealer.seal(data) else {
        return;
    };
    // The id of the bytes as given: decompression must not find them (or
    // only when `data` is itself a zstd frame of content with this id).
    let id = BlobId(keys.chunk_id(data));
    let _ = ferry_agent::blob_codec::open_chunk(keys, opener, id, FLAG_ZSTD, &payload);
});
