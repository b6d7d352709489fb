#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! `ferry-agent run` takes a source's backups on the schedule the hub's
//! policy gives it: at its slots and not in between (no watcher), one run
//! at start for slots missed while the agent was down, and continuous
//! again once the policy drops the schedule. `ferry-agent status` shows
//! each source's last outcome and next run. A one-minute schedule keeps
//! this to about two minutes of wall time.

use std::time::{Duration, Instant};

use ferry_tests::daemon::Daemon;
use ferry_tests::{Hub, Site, check};

const EVERY_MINUTE: &str =
    "tenant = \"acme\"\n\n[[source.\"site-a/main\".schedule]]\ncron = \"* * * * *\"\n";
const NO_SCHEDULE: &str = "tenant = \"acme\"\n\n[retention]\nkeep-last = 100\n";

fn snapshots(site: &Site) -> Vec<serde_json::Value> {
    let out = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    serde_json::from_str(&out).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the bucket has `count` snapshots; gives them.
fn wait_for(
    site: &Site,
    count: usize,
    within: Duration,
    agent: &Daemon,
    what: &str,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let all = snapshots(site);
        if all.len() >= count {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} snapshots, wanted {count}; agent log:\n{}",
            all.len(),
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn status(site: &Site) -> serde_json::Value {
    let out = check(&site.agent(&["--json", "status"]), "status");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["sources"]["main"].clone()
}

#[test]
fn a_policy_schedule_drives_backups_missed_slots_run_once_and_dropping_it_goes_continuous() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.write_config_with(
        &hub.url(),
        &src,
        "\n[run]\nsettle = \"300ms\"\npolicy-interval = \"1s\"\n",
    );
    let policy = w.join("acme.toml");
    std::fs::write(&policy, EVERY_MINUTE).unwrap();
    check(
        &hub.cli(&["policy", "apply", policy.to_str().unwrap()]),
        "policy apply",
    );

    // Scheduled: nothing at start (a continuous source would walk at
    // once), nothing for a change, one snapshot at the next minute.
    let started_ms = now_ms();
    let mut agent = Daemon::start(&site.config, &site.dir);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(src.join("b.txt"), b"beta").unwrap();
    let first = wait_for(&site, 1, Duration::from_secs(75), &agent, "first slot");
    let slot_ms = (started_ms / 60_000 + 1) * 60_000;
    let at = first[0]["time_unix_ms"].as_i64().unwrap();
    assert!(
        (slot_ms..slot_ms + 30_000).contains(&at),
        "the snapshot at {at} is not soon after the slot {slot_ms} (started {started_ms})"
    );
    assert_eq!(first[0]["files"], 2, "{first:?}");
    let s = status(&site);
    assert_eq!(s["mode"], "scheduled", "{s}");
    assert_eq!(s["schedules"][0], "* * * * * (UTC)", "{s}");
    assert_eq!(s["last"]["seq"], first[0]["seq"], "{s}");
    assert!(s["last"]["error"].is_null(), "{s}");
    assert!(s["next_unix_ms"].as_i64().unwrap() > at, "{s}");
    let text = check(&site.agent(&["status"]), "status");
    assert!(
        text.contains("main -> acme/docs: scheduled * * * * * (UTC)"),
        "{text}"
    );
    assert!(text.contains("last backup: ok"), "{text}");

    // Down across a slot: started again, it runs once at once, not once
    // per missed slot, and then waits for the next slot.
    agent.kill9();
    let down_until = (now_ms() / 60_000 + 1) * 60_000 + 2_000;
    std::thread::sleep(Duration::from_millis((down_until - now_ms()).max(0) as u64));
    let restarted_ms = now_ms();
    let agent = Daemon::start(&site.config, &site.dir);
    let after = wait_for(&site, 2, Duration::from_secs(20), &agent, "missed slot");
    let at = after[1]["time_unix_ms"].as_i64().unwrap();
    assert!(
        at - restarted_ms < 15_000,
        "the missed run came {} ms after start",
        at - restarted_ms
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshots(&site).len(), 2, "one run for the missed slots");

    // The schedule dropped: the source is kept current continuously.
    std::fs::write(&policy, NO_SCHEDULE).unwrap();
    check(
        &hub.cli(&["policy", "apply", policy.to_str().unwrap()]),
        "policy apply",
    );
    // The continuous loop's first snapshot is a full walk; then a change.
    let walked = wait_for(&site, 3, Duration::from_secs(20), &agent, "continuous walk");
    std::fs::write(src.join("c.txt"), b"gamma").unwrap();
    let changed = wait_for(
        &site,
        walked.len() + 1,
        Duration::from_secs(20),
        &agent,
        "continuous change",
    );
    assert_eq!(changed.last().unwrap()["files"], 3, "{changed:?}");
    let s = status(&site);
    assert_eq!(s["mode"], "continuous", "{s}");
    assert!(s["next_unix_ms"].is_null(), "{s}");
}
