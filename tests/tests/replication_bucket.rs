#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! One hub and three sites: a source, a replica kept in a directory and one
//! kept in an S3 bucket (Garage on loopback). The directory copy equals the
//! source; in the bucket copy the files appear as objects with their paths
//! as keys, identical;
//! changes, deletes and objects changed behind the replica's back are set
//! right at the next commit, and only what changed is written again, also
//! after a SIGKILL and a restart; a mass delete is held until confirmed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_s3::aws_sdk_s3::Client;
use ferry_s3::aws_sdk_s3::primitives::ByteStream;
use ferry_tests::daemon::Daemon;
use ferry_tests::garage::{Garage, objects_of};
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check, noise};

const COPY: &str = "copy-c";
const PREFIX: &str = "mirror/";

/// Each regular file below `src`: (size, BLAKE3 of its bytes) by path.
fn files_of(src: &Path) -> BTreeMap<String, (usize, String)> {
    describe(src)
        .into_iter()
        .filter(|(_, node)| node.kind == 'f')
        .map(|(path, node)| {
            let size = usize::try_from(node.size).unwrap();
            (
                String::from_utf8_lossy(&path).into_owned(),
                (size, node.content),
            )
        })
        .collect()
}

/// Waits until the copy's objects are `src`'s files.
async fn wait_until_equal(client: &Client, src: &Path, agent: &Daemon, what: &str) {
    let want = files_of(src);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: BTreeMap<String, (usize, String)> = objects_of(client, COPY, PREFIX)
            .await
            .into_iter()
            .map(|(key, o)| (key, (o.size, o.bytes_hash)))
            .collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the bucket copy never converged:\nwant {want:?}\ngot  {got:?}\nlog:\n{}",
            std::fs::read_to_string(&agent.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log's last "replica applied" line.
fn last_applied(agent: &Daemon) -> String {
    let log = std::fs::read_to_string(&agent.log).unwrap();
    log.lines()
        .rfind(|l| l.contains("replica applied"))
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the replica has logged applying commit `seq`.
async fn wait_for_apply(agent: &Daemon, seq: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = last_applied(agent);
        if line.contains(&format!("seq={seq} ")) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "commit {seq} never applied: {line}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_in_a_garage_bucket_follows_the_source_writing_only_what_changed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let garage = Garage::start();
    garage.create_bucket(COPY);
    let client = garage.location(COPY, "").client().await.unwrap();

    let src = w.join("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    std::fs::write(src.join("docs/b.txt"), "beta").unwrap();
    std::fs::write(src.join("docs/deep/c.txt"), "gamma").unwrap();
    // Past one PUT: written in parts.
    std::fs::write(src.join("docs/big.bin"), noise(17 << 20, 7)).unwrap();
    std::fs::write(src.join("empty"), "").unwrap();
    // No object form: left out of the copy.
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();

    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), &src, "site-a", "docs");
    site_a.backup();
    // Two replica sites: B keeps a directory, C a bucket.
    let site_b = Site::other_site_of(&hub, &w.join("site-b"), &site_a, "site-b");
    let site_c = Site::other_site_of(&hub, &w.join("site-c"), &site_a, "site-c");
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
    let copy_b = w.join("copy-b");
    let mut config = std::fs::read_to_string(&site_b.config).unwrap();
    config.push_str(&format!(
        "\n[[replica]]\nbucket = \"acme/docs\"\npath = \"{}\"\n",
        copy_b.display()
    ));
    std::fs::write(&site_b.config, config).unwrap();
    let agent_b = Daemon::start(&site_b.config, &site_b.dir);
    let mut config = std::fs::read_to_string(&site_c.config).unwrap();
    config.push_str(&format!(
        "\n[[replica]]\nbucket = \"acme/docs\"\ns3 = {}\n",
        garage.s3_toml(COPY, PREFIX)
    ));
    std::fs::write(&site_c.config, config).unwrap();
    let agent = Daemon::start(&site_c.config, &site_c.dir);
    wait_until_equal(&client, &src, &agent, "the first snapshot").await;
    let first = wait_for_apply(&agent, 1).await;
    assert!(first.contains("written=5"), "{first}");
    wait_for_apply(&agent_b, 1).await;
    assert_same(&describe(&src), &describe(&copy_b), "b's directory copy");

    // A change, a delete and a new file: two objects written, one deleted,
    // the other three (the big one too) left as they are.
    std::fs::write(src.join("a.txt"), "ALPHA, rewritten").unwrap();
    std::fs::remove_file(src.join("docs/b.txt")).unwrap();
    std::fs::write(src.join("docs/new.txt"), "new").unwrap();
    site_a.backup();
    wait_until_equal(&client, &src, &agent, "the second snapshot").await;
    let second = wait_for_apply(&agent, 2).await;
    wait_for_apply(&agent_b, 2).await;
    assert_same(
        &describe(&src),
        &describe(&copy_b),
        "b's copy of the second snapshot",
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site_c.dir.join("state/replicas/acme+docs.applied.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&report["removed_paths"], &report["written_paths"]),
        (
            &serde_json::json!(["docs/b.txt"]),
            &serde_json::json!(["a.txt", "docs/new.txt"])
        ),
        "{report}"
    );
    assert!(
        second.contains("removed=1")
            && second.contains("written=2")
            && second.contains("unchanged=3"),
        "{second}"
    );

    // Behind the replica's back: an object deleted, one changed, a stray
    // one added. The next commit (nothing changed at the source) sets the
    // copy right: the two written again, the stray deleted.
    let key = |k: &str| format!("{PREFIX}{k}");
    client
        .delete_object()
        .bucket(COPY)
        .key(key("docs/deep/c.txt"))
        .send()
        .await
        .unwrap();
    for (k, body) in [("a.txt", "tampered"), ("stray.txt", "not from the source")] {
        client
            .put_object()
            .bucket(COPY)
            .key(key(k))
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    site_a.backup();
    wait_until_equal(&client, &src, &agent, "after tampering").await;
    let third = wait_for_apply(&agent, 3).await;
    assert!(
        third.contains("removed=1") && third.contains("written=2") && third.contains("unchanged=3"),
        "{third}"
    );

    // Killed and restarted: the index beside the copy is kept, so only
    // the file changed meanwhile is written again.
    let mut agent = agent;
    agent.kill9();
    std::fs::write(src.join("docs/new.txt"), "newer").unwrap();
    site_a.backup();
    let agent = Daemon::start(&site_c.config, &site_c.dir);
    wait_until_equal(&client, &src, &agent, "after a restart").await;
    let fourth = wait_for_apply(&agent, 4).await;
    assert!(
        fourth.contains("written=1") && fourth.contains("unchanged=4"),
        "{fourth}"
    );

    // Four of five objects deleted at the source: held, nothing deleted,
    // until an operator confirms.
    for f in ["a.txt", "docs/new.txt", "docs/deep/c.txt", "docs/big.bin"] {
        std::fs::remove_file(src.join(f)).unwrap();
    }
    site_a.backup();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = check(
            &hub.cli(&["--json", "replication", "status", "--tenant", "acme"]),
            "replication status",
        );
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        let c = status["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["replica"] == "site-c")
            .unwrap();
        let held = &c["held"];
        if !held.is_null() {
            assert_eq!(
                (&held["seq"], &held["deletes"], &held["entries"]),
                (&5.into(), &4.into(), &5.into()),
                "{status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never held: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        objects_of(&client, COPY, PREFIX).await.len(),
        5,
        "nothing deleted while held"
    );
    check(
        &hub.cli(&["replication", "confirm", "acme/docs", "--site", "site-c"]),
        "replication confirm",
    );
    wait_until_equal(&client, &src, &agent, "the confirmed mass delete").await;
}
