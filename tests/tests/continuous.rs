#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! `ferry-agent run` keeps a directory source current: creates,
//! overwrites, renames and deletes each end up in a snapshot that lists
//! only what changed, a burst past what the watcher keeps falls back to a
//! full walk, and a restore of the last snapshot equals the directory.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::daemon::Daemon;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check};

fn snapshot_count(site: &Site) -> usize {
    let out = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .unwrap()
        .len()
}

/// Waits until a snapshot newer than the `after`th restores to what `src`
/// holds now; returns how many snapshots there are then.
fn wait_until_caught_up(
    site: &Site,
    src: &Path,
    after: usize,
    agent: &Daemon,
    what: &str,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = describe(src);
    let mut round = 0;
    loop {
        let count = snapshot_count(site);
        if count > after {
            let out = site.dir.join(format!("check-{what}-{round}"));
            round += 1;
            site.restore(&out, &[]);
            let got = describe(&out);
            std::fs::remove_dir_all(&out).unwrap();
            if got == want {
                return count;
            }
        }
        if Instant::now() > deadline {
            let out = site.dir.join(format!("last-{what}"));
            site.restore(&out, &[]);
            assert_same(&want, &describe(&out), what);
            panic!(
                "{what}: never caught up; agent log:\n{}",
                std::fs::read_to_string(&agent.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_keeps_a_directory_current_through_every_kind_of_change_with_fanotify() {
    // The suite runs as root, which fanotify's file-system marks need.
    keeps_a_directory_current("fanotify");
}

#[test]
fn run_keeps_a_directory_current_through_every_kind_of_change_with_inotify() {
    keeps_a_directory_current("inotify");
}

fn keeps_a_directory_current(watcher: &str) {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    for d in ["docs/old", "keep/deep"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for (f, body) in [
        ("docs/a.txt", "alpha"),
        ("docs/old/b.txt", "beta"),
        ("keep/deep/c.txt", "gamma"),
        ("log.txt", "line 1\n"),
    ] {
        std::fs::write(src.join(f), body).unwrap();
    }
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    // A quick settle; few enough kept changes (50) that the burst below is
    // too many even when a loaded machine spreads its 500 writes over
    // several settle windows (the clean-clone CI run saw 65-152 a window).
    site.write_config_with(
        &hub.url(),
        &src,
        &format!("\n[run]\nsettle = \"300ms\"\nmax-changes = 50\nwatcher = \"{watcher}\"\n"),
    );
    let agent = Daemon::start(&site.config, &site.dir);
    // The first snapshot is a full walk; the watches were set up before it.
    let mut count = wait_until_caught_up(&site, &src, 0, &agent, "first walk");

    // Creates: a file, and a directory made and filled at once.
    std::fs::write(src.join("docs/new.txt"), b"new").unwrap();
    std::fs::create_dir_all(src.join("fresh/inner")).unwrap();
    std::fs::write(src.join("fresh/inner/d.txt"), b"delta").unwrap();
    count = wait_until_caught_up(&site, &src, count, &agent, "creates");

    // Overwrites, in place and by append.
    std::fs::write(src.join("docs/a.txt"), b"ALPHA, rewritten").unwrap();
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(src.join("log.txt"))
            .unwrap();
        log.write_all(b"line 2\n").unwrap();
    }
    count = wait_until_caught_up(&site, &src, count, &agent, "overwrites");

    // Renames: a file within a directory, a directory with its contents
    // to another parent.
    std::fs::rename(src.join("docs/new.txt"), src.join("docs/renamed.txt")).unwrap();
    std::fs::rename(src.join("docs/old"), src.join("keep/deep/moved")).unwrap();
    count = wait_until_caught_up(&site, &src, count, &agent, "renames");
    // The moved directory is watched under its new name.
    std::fs::write(src.join("keep/deep/moved/e.txt"), b"epsilon").unwrap();
    count = wait_until_caught_up(&site, &src, count, &agent, "a write in the moved directory");

    // Deletes: a file and a whole subtree.
    std::fs::remove_file(src.join("log.txt")).unwrap();
    std::fs::remove_dir_all(src.join("fresh")).unwrap();
    count = wait_until_caught_up(&site, &src, count, &agent, "deletes");

    // Changes while the agent is down are found by the walk it starts with.
    let mut agent = agent;
    agent.kill9();
    std::fs::write(
        src.join("docs/while-down.txt"),
        b"made while no one watched",
    )
    .unwrap();
    std::fs::write(src.join("docs/a.txt"), b"rewritten while down").unwrap();
    let agent = Daemon::start(&site.config, &site.dir);
    count = wait_until_caught_up(&site, &src, count, &agent, "a restart");

    // A burst of more changes than the watcher keeps: lost, so walked.
    std::fs::create_dir(src.join("burst")).unwrap();
    for i in 0..500 {
        std::fs::write(src.join(format!("burst/f{i:03}")), i.to_string()).unwrap();
    }
    wait_until_caught_up(&site, &src, count, &agent, "burst");

    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(
        log.contains(&format!("watching with {watcher}")),
        "the watcher asked for: {log}"
    );
    assert!(
        log.contains("full_walk=false"),
        "changes were taken without a walk: {log}"
    );
    assert!(
        log.contains("walking the whole tree") && log.contains("max-changes"),
        "the burst fell back to a walk: {log}"
    );
    assert!(
        !log.contains("snapshot failed"),
        "no snapshot failed: {log}"
    );
}

/// Hooks under `run`: what the pre-backup hook writes into the tree is in
/// the snapshot it precedes, what the post-backup hook writes does not
/// bring on another, and the agent's own state inside the tree is left out
/// (it would otherwise count as a change after every snapshot).
#[test]
fn hooks_and_the_agents_own_state_inside_the_tree_do_not_keep_snapshots_coming() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    let config = format!(
        "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"{}\"\n\n\
         [[source]]\nname = \"main\"\npath = \"{}\"\nbucket = \"{}\"\n\
         pre-backup = \"date +%s%N > \\\"$FERRY_SOURCE_PATH/dump.txt\\\"\"\n\
         post-backup = \"date +%s%N > \\\"$FERRY_SOURCE_PATH/after.txt\\\"\"\n\n\
         [run]\nsettle = \"300ms\"\n",
        hub.url(),
        site.key_file.display(),
        src.join(".ferry-state").display(),
        src.display(),
        site.bucket
    );
    std::fs::write(&site.config, config).unwrap();
    let agent = Daemon::start(&site.config, &site.dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshot_count(&site) == 0 {
        assert!(Instant::now() < deadline, "no first snapshot");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(src.join("b.txt"), b"b").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshot_count(&site) < 2 {
        assert!(
            Instant::now() < deadline,
            "the change was not taken: {}",
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Quiet now: ten settles pass with no further snapshot (the hook's
    // second run rewrote what it wrote in its first).
    std::thread::sleep(Duration::from_secs(1));
    let settled = snapshot_count(&site);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        snapshot_count(&site),
        settled,
        "snapshots kept coming: {}",
        std::fs::read_to_string(&agent.log).unwrap_or_default()
    );
    let out = w.join("restored");
    site.restore(&out, &[]);
    assert_eq!(
        std::fs::read(out.join("dump.txt")).unwrap(),
        std::fs::read(src.join("dump.txt")).unwrap(),
        "the last pre-backup hook's dump is in the last snapshot"
    );
    assert!(out.join("b.txt").exists());
    assert!(
        !out.join(".ferry-state").exists(),
        "the agent's state is not backed up"
    );
}

/// A change made while the post-backup hook runs is not taken for the
/// hook's own: it brings on a snapshot (the hook's rewrite of the file it
/// wrote in its last run does not).
#[test]
fn a_change_made_while_the_post_backup_hook_runs_brings_on_a_snapshot() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    // The hook writes into the tree, then waits while `hold` exists.
    let hold = w.join("hold");
    let config = format!(
        "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n\n\
         [[source]]\nname = \"main\"\npath = \"{}\"\nbucket = \"{}\"\n\
         post-backup = \"date +%s%N > \\\"$FERRY_SOURCE_PATH/after.txt\\\"; while [ -e {} ]; do sleep 0.05; done\"\n\n\
         [run]\nsettle = \"300ms\"\n",
        hub.url(),
        site.key_file.display(),
        src.display(),
        site.bucket,
        hold.display(),
    );
    std::fs::write(&site.config, config).unwrap();
    let agent = Daemon::start(&site.config, &site.dir);
    let hook_runs = || {
        std::fs::read_to_string(&agent.log)
            .unwrap_or_default()
            .matches("hook=\"post-backup\"")
            .count()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: {}",
                std::fs::read_to_string(&agent.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The first run's after.txt is new, and brings on a second snapshot;
    // the second run rewrites it, and things go quiet.
    wait_for("two snapshots", &|| {
        snapshot_count(&site) >= 2 && hook_runs() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let quiet = snapshot_count(&site);
    assert_eq!(quiet, 2, "the hook's rewrite brought on no snapshot");

    // A change brings on a snapshot whose hook is held while someone
    // writes another file; once the hook ends, that file is taken too.
    std::fs::write(&hold, b"").unwrap();
    std::fs::write(src.join("c.txt"), b"c").unwrap();
    wait_for("the third hook run", &|| hook_runs() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(src.join("b.txt"), b"written while the hook ran").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&hold).unwrap();
    wait_for("a snapshot for the change made during the hook", &|| {
        snapshot_count(&site) >= 4
    });
    let out = w.join("restored");
    site.restore(&out, &[]);
    assert_eq!(
        std::fs::read(out.join("b.txt")).unwrap(),
        b"written while the hook ran"
    );
}
