//! What the hub reads back from its pools beside packs: journal segments,
//! namespace records and reference parts, as `recover` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_hub::records::Segment::decode(data);
    let _ = ferry_hub::records::NamespaceRecord::decode(data);
    let hash = *blake3::hash(data).as_bytes();
    let _ = ferry_hub::records::refs::decode(&hash, data);
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = ferry_hub::records::segment::parse_name(name);
    }
});
