//! The hub's request handlers past decoding: each input is one unary
//! request (the first byte picks which) run by a real in-process hub
//! (SQLite catalog, local pool), as the gate runs it once the caller has
//! authenticated. Errors are fine answers; a panic is the finding.
#![no_main]

use std::sync::OnceLock;

use ferry_hub::service::harness::Harness;
use libfuzzer_sys::fuzz_target;

static HUB: OnceLock<Harness> = OnceLock::new();

fn hub() -> &'static Harness {
    HUB.get_or_init(|| {
        // scripts/fuzz.sh removes these when the run ends.
        let dir = std::env::temp_dir().join(format!("ferry-fuzz-hub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Harness::new(&dir).unwrap_or_else(|e| panic!("starting the hub: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    hub().call(data);
});
