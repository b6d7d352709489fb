//! The manifest stream decoder, fed arbitrary bytes in arbitrary pieces.
#![no_main]

use ferry_proto::manifest::{MANIFEST_MAGIC, ManifestDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut decoder = ManifestDecoder::new();
    decoder.push(MANIFEST_MAGIC);
    for piece in data.chunks(step) {
        decoder.push(piece);
        while let Ok(Some(_)) = decoder.next_entry() {}
    }
    let _ = decoder.finish();
});
