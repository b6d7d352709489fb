#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A replica site following a bucket's journal with `ferry-agent run`: each
//! backup at the source appears in the replica's directory, identical
//! (deletes included), and a replica killed with SIGKILL resumes from its
//! acknowledged cursor and converges. The failover walk: the source site
//! is lost, a replica becomes the source and goes on backing up, another
//! replica follows it and restores the lost site's last state, the old
//! site comes back empty as a replica and converges, and takes the source
//! role back; a fenced site's backup is refused.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::daemon::Daemon;
use ferry_tests::tree::{assert_same, describe, try_describe};
use ferry_tests::{Hub, Site, check, noise};

/// Waits until the replica directory equals `src` as it is now.
fn wait_until_equal(replica: &Path, src: &Path, agent: &Daemon, what: &str) {
    let want = describe(src);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if try_describe(replica).is_ok_and(|now| now == want) {
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

/// A hub, site a backing `src` up into acme/docs once, and site b keeping
/// a copy with `ferry-agent run`, waited for until it equals `src`.
fn source_and_replica(w: &Path, src: &Path) -> (Hub, Site, Site, std::path::PathBuf, Daemon) {
    source_and_replica_with(w, src, "")
}

/// As [`source_and_replica`], with more settings (TOML lines) in b's
/// `[[replica]]`.
fn source_and_replica_with(
    w: &Path,
    src: &Path,
    settings: &str,
) -> (Hub, Site, Site, std::path::PathBuf, Daemon) {
    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), src, "site-a", "docs");
    site_a.backup();
    let site_b = Site::other_site_of(&hub, &w.join("site-b"), &site_a, "site-b");
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "site-b"]),
        "bucket replicas",
    );
    let copy = w.join("copy-b");
    add_replica(&site_b, "acme/docs", &copy);
    let mut config = std::fs::read_to_string(&site_b.config).unwrap();
    config.push_str(settings);
    std::fs::write(&site_b.config, config).unwrap();
    let agent = Daemon::start(&site_b.config, &site_b.dir);
    wait_until_equal(&copy, src, &agent, "the first snapshot");
    (hub, site_a, site_b, copy, agent)
}

/// Waits until the replica has acknowledged every commit.
fn wait_until_acknowledged(hub: &Hub) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag_of(hub)["commits_behind"] != 0 {
        assert!(
            Instant::now() < deadline,
            "never acknowledged: {}",
            lag_of(hub)
        );
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

/// Adds a `[[replica]]` of `bucket` kept at `path` to `site`'s config.
fn add_replica(site: &Site, bucket: &str, path: &Path) {
    let mut config = std::fs::read_to_string(&site.config).unwrap();
    config.push_str(&format!(
        "\n[[replica]]\nbucket = \"{bucket}\"\npath = \"{}\"\n",
        path.display()
    ));
    std::fs::write(&site.config, config).unwrap();
}

/// `site`'s config with `src` as its one source of `bucket` and no replica.
fn become_source(site: &Site, hub: &Hub, src: &Path) {
    site.write_config(&hub.url(), src);
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
    // Linked to a file the same apply writes (and flushes before it links).
    std::fs::hard_link(src.join("keep/deep/big.bin"), src.join("keep/hard")).unwrap();

    // The backlog: the first snapshot.
    let (hub, site_a, site_b, replica, agent) = source_and_replica(w, &src);

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
    // Two snapshots waiting: the newer replaces the older (both may be
    // applied, if the second came after the first was read).
    assert!(
        second.contains("replica applied") && second.contains("seq=4"),
        "{second}"
    );
    assert!(
        !second.contains("seq=1") && !second.contains("seq=2"),
        "nothing applied twice: {second}"
    );
}

#[test]
fn the_failover_walk_a_lost_source_a_new_one_and_the_old_one_back() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src-a");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs/a.txt"), "written at a").unwrap();
    std::fs::write(src.join("big.bin"), noise(1 << 20, 5)).unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), &src, "site-a", "docs");
    site_a.backup();
    let a_last = describe(&src);
    let site_b = Site::other_site_of(&hub, &w.join("site-b"), &site_a, "site-b");
    let site_c = Site::other_site_of(&hub, &w.join("site-c"), &site_a, "site-c");
    let (copy_b, copy_c) = (w.join("copy-b"), w.join("copy-c"));
    add_replica(&site_b, "acme/docs", &copy_b);
    add_replica(&site_c, "acme/docs", &copy_c);
    check(
        &hub.cli(&[
            "bucket",
            "replicas",
            "acme/docs",
            "--replica",
            "site-b",
            "--replica",
            "site-c",
        ]),
        "bucket replicas",
    );
    let mut agent_b = Daemon::start(&site_b.config, &site_b.dir);
    let agent_c = Daemon::start(&site_c.config, &site_c.dir);
    wait_until_equal(&copy_b, &src, &agent_b, "b before the loss");
    wait_until_equal(&copy_c, &src, &agent_c, "c before the loss");

    // Site A burns down: its agent's state, key and data are gone.
    std::fs::remove_dir_all(w.join("site-a")).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    let failed = check(
        &hub.cli(&[
            "--json",
            "bucket",
            "failover",
            "acme/docs",
            "--to",
            "site-b",
        ]),
        "bucket failover",
    );
    assert!(failed.contains(r#""replicas":["site-c"]"#), "{failed}");

    // B backs up its copy as the new source, with new data; C follows B.
    agent_b.kill9();
    become_source(&site_b, &hub, &copy_b);
    std::fs::write(copy_b.join("docs/b.txt"), "written at b after the failover").unwrap();
    let committed = site_b.backup();
    assert_eq!(committed["seq"], 2, "{committed}");
    wait_until_equal(&copy_c, &copy_b, &agent_c, "c following the new source");

    // C restores A's last state from the hub.
    let at_c = w.join("a-last-at-c");
    let mut args = vec![
        "--json",
        "restore",
        "--bucket",
        "acme/docs",
        "--snapshot",
        "1",
        "--to",
    ];
    args.push(at_c.to_str().unwrap());
    check(&site_c.agent(&args), "restore of a's last snapshot at c");
    assert_same(&a_last, &describe(&at_c), "a's last state restored at c");

    // A comes back empty: a new token and the tenant key, a replica again.
    std::fs::create_dir_all(w.join("site-a2")).unwrap();
    hub.rotate_token("acme", "site-a", &w.join("site-a2/site.token"));
    let key = w.join("site-a2/tenant.key");
    std::fs::copy(&site_b.key_file, &key).unwrap();
    let config_a = w.join("site-a2/agent.toml");
    let copy_a = w.join("copy-a");
    std::fs::write(
        &config_a,
        format!(
            "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n",
            hub.url(),
            key.display()
        ),
    )
    .unwrap();
    let site_a = Site {
        dir: w.join("site-a2"),
        config: config_a,
        key_file: key,
        bucket: "acme/docs".into(),
    };
    add_replica(&site_a, "acme/docs", &copy_a);
    check(
        &hub.cli(&["bucket", "failback", "acme/docs", "--site", "site-a"]),
        "bucket failback",
    );
    let agent_a = Daemon::start(&site_a.config, &site_a.dir);
    wait_until_equal(&copy_a, &copy_b, &agent_a, "a back as a replica");
    // The report lists what A lacked: every file, A having come back empty.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site_a.dir.join("state/replicas/acme+docs.applied.json")).unwrap(),
    )
    .unwrap();
    let mut written: Vec<&str> = report["written_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    written.sort();
    assert_eq!(
        (&report["seq"], written),
        (&2.into(), vec!["big.bin", "docs/a.txt", "docs/b.txt"]),
        "{report}"
    );

    // A second failover returns the source role to A; B is fenced.
    let mut agent_a = agent_a;
    agent_a.kill9();
    check(
        &hub.cli(&["bucket", "failover", "acme/docs", "--to", "site-a"]),
        "failover back to a",
    );
    std::fs::write(
        copy_b.join("docs/late.txt"),
        "b writes after losing the role",
    )
    .unwrap();
    let fenced = site_b.agent(&["backup"]);
    assert!(
        !fenced.status.success(),
        "a fenced site's backup is refused"
    );
    let said = String::from_utf8_lossy(&fenced.stderr);
    assert!(said.contains("is not the source"), "{said}");
    become_source(&site_a, &hub, &copy_a);
    std::fs::write(copy_a.join("docs/a-again.txt"), "a is the source again").unwrap();
    assert_eq!(site_a.backup()["seq"], 3);
    wait_until_equal(&copy_c, &copy_a, &agent_c, "c following a again");
}

#[test]
fn a_mass_delete_is_held_until_an_operator_confirms_it() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("files")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("files/f{i:02}")), format!("file {i}")).unwrap();
    }
    let (hub, site_a, _site_b, copy, agent) = source_and_replica(w, &src);
    let before = describe(&copy);

    // 16 of the 22 entries go: more than the default half.
    for i in 0..16 {
        std::fs::remove_file(src.join(format!("files/f{i:02}"))).unwrap();
    }
    site_a.backup();
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let lag = lag_of(&hub);
        if !lag["held"].is_null() {
            break lag;
        }
        assert!(Instant::now() < deadline, "never held: {lag}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (
            &held["held"]["seq"],
            &held["held"]["deletes"],
            &held["held"]["confirmed"]
        ),
        (&2.into(), &16.into(), &false.into()),
        "{held}"
    );
    assert_eq!(held["commits_behind"], 1, "{held}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_same(&before, &describe(&copy), "nothing deleted while held");

    check(
        &hub.cli(&["replication", "confirm", "acme/docs", "--site", "site-b"]),
        "replication confirm",
    );
    wait_until_equal(&copy, &src, &agent, "after the confirmation");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lag_of(&hub)["held"].is_null() || lag_of(&hub)["commits_behind"] != 0 {
        assert!(Instant::now() < deadline, "{}", lag_of(&hub));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_cut_off_from_the_hub_catches_up_when_the_link_returns() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("first.txt"), "first").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), &src, "site-a", "docs");
    site_a.backup();
    let site_c = Site::other_site_of(&hub, &w.join("site-c"), &site_a, "site-c");
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "site-c"]),
        "bucket replicas",
    );
    // C reaches the hub only through the proxy.
    let proxy = ferry_tests::proxy::Proxy::start(hub.addr.parse().unwrap());
    let config = std::fs::read_to_string(&site_c.config)
        .unwrap()
        .replace(&hub.url(), &proxy.url());
    std::fs::write(&site_c.config, config).unwrap();
    let copy = w.join("copy-c");
    add_replica(&site_c, "acme/docs", &copy);
    let agent = Daemon::start(&site_c.config, &site_c.dir);
    wait_until_equal(&copy, &src, &agent, "before the cut");
    // Applied is not yet acknowledged: wait for the acknowledgement too.
    wait_until_acknowledged(&hub);

    proxy.cut();
    for i in 0..2 {
        std::fs::write(
            src.join(format!("while-cut-{i}.txt")),
            "made while c was cut off",
        )
        .unwrap();
        site_a.backup();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let lag = lag_of(&hub);
    assert_eq!(lag["commits_behind"], 2, "{lag}");
    assert!(
        lag["seconds_behind"].as_f64().unwrap() >= 1.0,
        "lag rises: {lag}"
    );
    assert!(!copy.join("while-cut-0.txt").exists());

    proxy.restore();
    wait_until_equal(&copy, &src, &agent, "after the link returned");
    wait_until_acknowledged(&hub);
    assert_eq!(lag_of(&hub)["seconds_behind"], 0.0, "lag falls back");
}

/// Makes `dir` refuse new entries, even to root (`chattr +i`), or allows
/// them again.
fn lock_dir(dir: &Path, locked: bool) {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        let flag = if locked { "+i" } else { "-i" };
        let out = std::process::Command::new("chattr")
            .arg(flag)
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "chattr: {out:?}");
    } else {
        let mode = if locked { 0o555 } else { 0o755 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn entries_that_keep_failing_become_dead_letters_and_a_replay_writes_them() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    for d in ["locked", "open"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("locked/a.txt"), "alpha").unwrap();
    std::fs::write(src.join("open/b.txt"), "beta").unwrap();
    let (hub, site_a, _site_b, copy, agent) = source_and_replica(w, &src);

    // The copy's directory refuses the new file (and a change of its
    // times): the apply is retried, the error told, then both are dead
    // letters and the commit is acknowledged with the rest written.
    lock_dir(&copy.join("locked"), true);
    std::fs::write(src.join("locked/new.txt"), "refused at the replica").unwrap();
    std::fs::write(src.join("open/b.txt"), "BETA, changed").unwrap();
    site_a.backup();
    let mut saw_failing = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let lag = loop {
        let lag = lag_of(&hub);
        saw_failing |= lag["last_error"]["seq"] == 2 && lag["applied_seq"] == 1;
        if lag["dead_letters"] != 0 && lag["commits_behind"] == 0 {
            break lag;
        }
        assert!(Instant::now() < deadline, "no dead letter: {lag}");
        std::thread::sleep(Duration::from_millis(100));
    };
    lock_dir(&copy.join("locked"), false);
    assert!(saw_failing, "the failing apply was told: {lag}");
    assert!(
        lag["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked/new.txt"),
        "{lag}"
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("open/b.txt")).unwrap(),
        "BETA, changed",
        "the rest of the commit is applied"
    );
    assert!(!copy.join("locked/new.txt").exists());
    let listed: serde_json::Value = serde_json::from_str(&check(
        &hub.cli(&[
            "--json",
            "replication",
            "dead-letters",
            "acme/docs",
            "--site",
            "site-b",
        ]),
        "replication dead-letters",
    ))
    .unwrap();
    // The new file, and the directory whose times could not be set.
    let paths: Vec<&str> = listed["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        (&listed["seq"], &listed["total"], paths),
        (&2.into(), &2.into(), vec!["locked", "locked/new.txt"]),
        "{listed}"
    );

    // The cause fixed, a replay writes it, and the list is empty again.
    check(
        &hub.cli(&["replication", "replay", "acme/docs", "--site", "site-b"]),
        "replication replay",
    );
    wait_until_equal(&copy, &src, &agent, "after the replay");
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag_of(&hub)["dead_letters"] != 0 || lag_of(&hub)["replay_requested"] != false {
        assert!(Instant::now() < deadline, "{}", lag_of(&hub));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Entries below `dir` that are not directories, as paths relative to it
/// (none when `dir` is not there).
fn files_below(dir: &Path) -> Vec<String> {
    try_describe(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, node)| node.kind != 'd')
        .map(|(path, _)| String::from_utf8_lossy(&path).into_owned())
        .collect()
}

#[test]
fn a_mass_delete_is_kept_as_tombstones_paused_and_undone() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("files")).unwrap();
    for i in 0..10 {
        std::fs::write(src.join(format!("files/f{i}")), format!("file {i}")).unwrap();
    }
    let (hub, site_a, _site_b, copy, agent) =
        source_and_replica_with(w, &src, "delete-delay = \"4s\"\nmax-delete-share = 1\n");
    let tombstones = w.join(".copy-b.ferry-tombstones");

    // A mass delete at the source reaches the replica as tombstones; the
    // operator pauses replication, and the tombstones outlive the delay.
    let gone: Vec<String> = (0..8).map(|i| format!("files/f{i}")).collect();
    for f in &gone {
        std::fs::remove_file(src.join(f)).unwrap();
    }
    site_a.backup();
    wait_until_equal(&copy, &src, &agent, "the mass delete");
    check(
        &hub.cli(&["bucket", "pause-replication", "acme/docs"]),
        "pause-replication",
    );
    let buried = |dir: &Path| {
        files_below(dir)
            .into_iter()
            .filter_map(|p| p.split_once('/').map(|(_, rest)| rest.to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(buried(&tombstones), gone);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        buried(&tombstones),
        gone,
        "kept past the delay while paused"
    );
    assert!(!lag_of(&hub)["paused_since_unix_ms"].is_null());

    // Undone at the source (restored from the snapshot before, times and
    // all) and backed up: nothing reaches the paused replica.
    let undo = w.join("undo");
    site_a.restore(&undo, &["--snapshot", "1"]);
    for f in &gone {
        std::fs::rename(undo.join(f), src.join(f)).unwrap();
    }
    site_a.backup();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lag_of(&hub)["commits_behind"],
        1,
        "paused: {}",
        lag_of(&hub)
    );

    // Resumed: the files come back from their tombstones, none fetched.
    check(
        &hub.cli(&["bucket", "resume-replication", "acme/docs"]),
        "resume-replication",
    );
    wait_until_equal(&copy, &src, &agent, "after the undo");
    let log = std::fs::read_to_string(&agent.log).unwrap();
    let applied = log
        .lines()
        .rfind(|l| l.contains("replica applied"))
        .unwrap();
    assert!(
        applied.contains("seq=3") && applied.contains("written=0"),
        "{applied}"
    );
    assert!(log.contains("taken_back=8"), "{log}");
    assert!(buried(&tombstones).is_empty());

    // Not paused, tombstones go once the delay has passed.
    std::fs::remove_file(src.join("files/f9")).unwrap();
    site_a.backup();
    wait_until_equal(&copy, &src, &agent, "a delete");
    assert_eq!(buried(&tombstones), ["files/f9"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !buried(&tombstones).is_empty() {
        assert!(Instant::now() < deadline, "tombstones never removed");
        std::thread::sleep(Duration::from_millis(200));
    }
}
