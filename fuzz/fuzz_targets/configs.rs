//! The agent's and the hub's TOML configs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ferry_agent::config::AgentConfig::parse(Path::new("/etc/ferry/agent.toml"), text);
    let _ = ferry_hub::config::HubConfig::parse(Path::new("/etc/ferry/hub.toml"), text);
});
