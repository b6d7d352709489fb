//! Pack files as read back from a pool: full parse and the tail-only index parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_hub::pack::parse_pack(data);
    let _ = ferry_hub::pack::parse_footer(data);
    let _ = ferry_hub::pack::parse_pack_index_unverified(data, data.len() as u64);
});
