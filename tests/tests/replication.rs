#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A replica site following a bucket's journal with `ferry-agent run`: each
//! backup at the source appears in the replica's directory, identical
//! (deletes included), and a replica killed with SIGKILL resumes from its
//! acknowledged cursor and converges.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::daemon::Daemon;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check, noise};

/// Waits until the replica directory equals `src` as it is now.
fn wait_until_equal(replica: &Path, src: &Path, agent: &Daemon, what: &str) {
    let want = describe(src);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if replica.exists() && describe(replica) == want {
            return;
        }
        if Instant::now() > deadline {
            assert_same(&want, &describe(replica), what);
            panic!(
                "{what}: the replica never converged; its log:\n{}",
                std::fs::read_to_string(&agent.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lag_of(hub: &Hub) -> serde_json::Value {
    let out = check(
        &hub.cli(&["--json", "replication", "status", "--tenant", "acme"]),
        "replication status",
    );
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["replicas"][0].clone()
}

#[test]
fn a_replica_follows_the_journal_applies_deletes_and_resumes_after_sigkill() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    for d in ["docs/old", "keep/deep"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("docs/a.txt"), "alpha").unwrap();
    std::fs::write(src.join("docs/old/b.txt"), "beta").unwrap();
    std::fs::write(src.join("keep/deep/big.bin"), noise(1 << 20, 3)).unwrap();
    std::os::unix::fs::symlink("docs/a.txt", src.join("link")).unwrap();

    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), &src, "site-a", "docs");
    site_a.backup();
    let site_b = Site::other_site_of(&hub, &w.join("site-b"), &site_a, "site-b");
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "site-b"]),
        "bucket replicas",
    );
    let replica = w.join("replica-b");
    let mut config = std::fs::read_to_string(&site_b.config).unwrap();
    config.push_str(&format!(
        "\n[[replica]]\nbucket = \"acme/docs\"\npath = \"{}\"\n",
        replica.display()
    ));
    std::fs::write(&site_b.config, config).unwrap();

    // The backlog: the first snapshot.
    let agent = Daemon::start(&site_b.config, &site_b.dir);
    wait_until_equal(&replica, &src, &agent, "the first snapshot");

    // Changes of every kind, then a backup: applied as it is committed.
    std::fs::write(src.join("docs/a.txt"), "ALPHA, rewritten").unwrap();
    std::fs::remove_dir_all(src.join("docs/old")).unwrap();
    std::fs::rename(src.join("keep/deep"), src.join("keep/moved")).unwrap();
    std::fs::create_dir_all(src.join("fresh/inner")).unwrap();
    std::fs::write(src.join("fresh/inner/c.txt"), "gamma").unwrap();
    std::fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("fresh", src.join("link")).unwrap();
    site_a.backup();
    wait_until_equal(&replica, &src, &agent, "the second snapshot");
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag_of(&hub)["commits_behind"] != 0 {
        assert!(
            Instant::now() < deadline,
            "never acknowledged: {}",
            lag_of(&hub)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lag = lag_of(&hub);
    assert_eq!(
        (&lag["applied_seq"], &lag["head_seq"]),
        (&2.into(), &2.into()),
        "{lag}"
    );

    // The replica dies; two more snapshots come meanwhile; restarted, it
    // resumes from its cursor and converges.
    let mut agent = agent;
    agent.kill9();
    std::fs::write(
        src.join("while-down.txt"),
        "made while the replica was down",
    )
    .unwrap();
    site_a.backup();
    std::fs::remove_file(src.join("docs/a.txt")).unwrap();
    site_a.backup();
    assert_eq!(lag_of(&hub)["commits_behind"], 2);
    let agent = Daemon::start(&site_b.config, &site_b.dir);
    wait_until_equal(&replica, &src, &agent, "after a restart");
    let log = std::fs::read_to_string(&agent.log).unwrap();
    // The log goes on from the first run: the second starts at its last
    // "replica following".
    let second = &log[log.rfind("replica following").unwrap()..];
    assert!(second.contains("after=2"), "resumed from the cursor: {log}");
    assert!(
        second.contains("seq=3") && second.contains("seq=4"),
        "{second}"
    );
    assert!(
        !second.contains("seq=1") && !second.contains("seq=2"),
        "nothing applied twice: {second}"
    );
}
