#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Placement across sites: a bucket's replica site restores it after its
//! source site is lost ("site A burned down"), at any snapshot or time,
//! with the hub the only thing it talks to; a site of the tenant that is
//! not a replica is refused, and so is a replica once it is removed.

use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check, noise};

fn restore_args<'a>(bucket: &'a str, to: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        "--json",
        "restore",
        "--bucket",
        bucket,
        "--to",
        to.to_str().unwrap(),
    ]
}

#[test]
fn a_replica_site_restores_a_lost_sites_bucket_and_no_other_site_can() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(1 << 20, 7)).unwrap();
    std::fs::write(src.join("sub/note.txt"), "first").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site_a = Site::create(&hub, &w.join("site-a"), &src, "site-a", "docs");
    site_a.backup();
    let first = describe(&src);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(src.join("sub/note.txt"), "second").unwrap();
    std::fs::write(src.join("more.bin"), noise(300_000, 8)).unwrap();
    site_a.backup();
    let second = describe(&src);

    // Sites b and c hold the tenant key; b is made a replica, c is not.
    let site_b = Site::other_site_of(&hub, &w.join("site-b"), &site_a, "site-b");
    let site_c = Site::other_site_of(&hub, &w.join("site-c"), &site_a, "site-c");
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "site-b"]),
        "bucket replicas",
    );
    let listed: serde_json::Value = serde_json::from_str(&check(
        &hub.cli(&["--json", "bucket", "list", "--tenant", "acme"]),
        "bucket list",
    ))
    .unwrap();
    assert_eq!(
        listed["buckets"][0],
        serde_json::json!({"bucket": "acme/docs", "source": "site-a", "replicas": ["site-b"]}),
        "{listed}"
    );

    // No replica has applied anything yet: two commits behind.
    let status: serde_json::Value = serde_json::from_str(&check(
        &hub.cli(&["--json", "replication", "status", "--tenant", "acme"]),
        "replication status",
    ))
    .unwrap();
    let lag = &status["replicas"][0];
    assert_eq!(
        (
            &lag["bucket"],
            &lag["replica"],
            &lag["applied_seq"],
            &lag["head_seq"],
            &lag["commits_behind"]
        ),
        (
            &serde_json::json!("acme/docs"),
            &serde_json::json!("site-b"),
            &serde_json::json!(0),
            &serde_json::json!(2),
            &serde_json::json!(2)
        ),
        "{status}"
    );
    assert!(lag["seconds_behind"].as_f64().unwrap() >= 2.0, "{status}");

    // Site A is lost: its processes, state, key and data.
    std::fs::remove_dir_all(w.join("site-a")).unwrap();
    std::fs::remove_dir_all(&src).unwrap();

    // B restores the latest state, the first by number, and the first by time.
    let latest = w.join("restored-latest");
    let out = check(
        &site_b.agent(&restore_args("acme/docs", &latest)),
        "restore at the replica",
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["seq"], 2, "{report}");
    assert_same(&second, &describe(&latest), "the replica's latest restore");
    let by_seq = w.join("restored-1");
    let mut args = restore_args("acme/docs", &by_seq);
    args.extend(["--snapshot", "1"]);
    check(&site_b.agent(&args), "restore --snapshot 1 at the replica");
    assert_same(&first, &describe(&by_seq), "the replica's restore of #1");
    let at = w.join("restored-at");
    let mut args = restore_args("acme/docs", &at);
    args.extend(["--at", &between]);
    check(&site_b.agent(&args), "restore --at at the replica");
    assert_same(&first, &describe(&at), "the replica's restore --at");

    // C, a site of the tenant with the key but no part in the bucket, is refused.
    let refused = site_c.agent(&restore_args("acme/docs", &w.join("by-c")));
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("neither the source nor a replica of bucket acme/docs"),
        "{said}"
    );
    assert!(
        !w.join("by-c").exists() || std::fs::read_dir(w.join("by-c")).unwrap().next().is_none()
    );

    // With its replicas removed, B is refused too.
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs"]),
        "bucket replicas (none)",
    );
    let refused = site_b.agent(&restore_args("acme/docs", &w.join("by-b-after")));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("neither the source nor a replica"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A site that is not the tenant's cannot be made a replica.
    let foreign = hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "nowhere"]);
    assert!(!foreign.status.success());
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("nowhere"));
}
