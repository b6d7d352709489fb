//! A source's exclude patterns (from its config or a pattern file) and the
//! paths they are matched against: a bad pattern is an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Patterns first, then (after a NUL) the paths to match.
    let (patterns, paths) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(patterns) else {
        return;
    };
    let patterns: Vec<String> = text.lines().map(str::to_owned).collect();
    let Ok(filter) = ferry_agent::source::filter::Filter::new(&patterns, None) else {
        return;
    };
    for path in paths.split(|&b| b == b'\n') {
        let _ = filter.excludes(path, false);
        let _ = filter.excludes(path, true);
    }
});
