#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! An S3 bucket protected end to end against a real S3 server (Garage on
//! loopback): the source conformance suite, a backup, changes found by a
//! reconcile, and restores into other buckets with keys, bytes and metadata
//! identical. The hub keeps its packs in the same Garage, its catalog on
//! SQLite and, in the second run of the same test, on PostgreSQL.

use ferry_agent::source::Source;
use ferry_agent::source::bucket::BucketSource;
use ferry_agent::source::conformance;
use ferry_tests::garage::{Garage, objects_of as snapshot_of, put_object};
use ferry_tests::postgres::Postgres;
use ferry_tests::{Hub, Site, check, noise};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_source_conforms() {
    let garage = Garage::start();
    garage.create_bucket("fixture");
    let client = garage.location("fixture", "").client().await.unwrap();
    for (path, content) in conformance::FIXTURE {
        put_object(
            &client,
            "fixture",
            &format!("within/{path}"),
            content.to_vec(),
            None,
            &[],
        )
        .await;
    }
    // Outside the prefix: must not be seen.
    put_object(&client, "fixture", "without/x", b"x".to_vec(), None, &[]).await;
    let source = BucketSource::open(garage.location("fixture", "within/"))
        .await
        .unwrap();
    assert!(source.holds_objects());
    tokio::task::spawn_blocking(move || conformance::run_all(&source))
        .await
        .unwrap();

    let missing = BucketSource::open(garage.location("no-such-bucket", ""))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        missing.contains("no-such-bucket") && missing.contains("does not exist"),
        "{missing}"
    );
}

/// `extra_targets`: (name, bucket, prefix) on `garage`; `other_site`: a
/// target named "site-b" on another server (endpoint and credentials).
fn agent_config(
    site: &Site,
    hub: &Hub,
    garage: &Garage,
    extra_targets: &[(&str, &str, &str)],
    other_site: Option<(&Garage, &str)>,
) {
    let mut text = format!(
        "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n\n[[source]]\nname = \"photos\"\nbucket = \"{}\"\ns3 = {}\n",
        hub.url(),
        site.key_file.display(),
        site.bucket,
        garage.s3_toml("photos", "")
    );
    for (name, bucket, prefix) in extra_targets {
        text.push_str(&format!(
            "\n[[target]]\nname = \"{name}\"\ns3 = {}\n",
            garage.s3_toml(bucket, prefix)
        ));
    }
    if let Some((other, bucket)) = other_site {
        text.push_str(&format!(
            "\n[[target]]\nname = \"site-b\"\ns3 = {}\n",
            other.s3_toml(bucket, "")
        ));
    }
    std::fs::write(&site.config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_backed_up_reconciled_and_restored_into_other_buckets() {
    bucket_round_trip(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_round_trip_with_the_catalog_on_postgres() {
    let pg = Postgres::start();
    bucket_round_trip(Some(&pg)).await;
}

async fn bucket_round_trip(pg: Option<&Postgres>) {
    let garage = Garage::start();
    for b in ["photos", "photos-dr", "hub-packs"] {
        garage.create_bucket(b);
    }
    let client = garage.location("photos", "").client().await.unwrap();
    // Keys that are no valid paths, a folder marker, metadata, an empty
    // object and one large enough to be restored in parts.
    put_object(
        &client,
        "photos",
        "2024/beach.jpg",
        noise(300_000, 1),
        Some("image/jpeg"),
        &[("camera", "x100"), ("album", "summer")],
    )
    .await;
    put_object(
        &client,
        "photos",
        "2024/",
        Vec::new(),
        Some("application/x-directory"),
        &[],
    )
    .await;
    put_object(
        &client,
        "photos",
        "2024//double",
        b"double slash".to_vec(),
        None,
        &[],
    )
    .await;
    put_object(
        &client,
        "photos",
        "/leading",
        b"leading slash".to_vec(),
        Some("text/plain"),
        &[],
    )
    .await;
    put_object(
        &client,
        "photos",
        "notes/../up.txt",
        b"dots".to_vec(),
        None,
        &[],
    )
    .await;
    put_object(
        &client,
        "photos",
        "raw/big.bin",
        noise(20 << 20, 2),
        Some("application/octet-stream"),
        &[("origin", "scanner")],
    )
    .await;
    put_object(&client, "photos", "z-empty", Vec::new(), None, &[]).await;
    let original = snapshot_of(&client, "photos", "").await;
    // Another site's S3 server: other endpoint, other credentials.
    let site_b = Garage::start();
    site_b.create_bucket("photos-replica");

    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start_on_s3(work.path(), &garage, "hub-packs", pg);
    let empty = work.path().join("unused");
    std::fs::create_dir_all(&empty).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &empty, "site-a", "photos");
    agent_config(
        &site,
        &hub,
        &garage,
        &[("dr", "photos-dr", ""), ("v1", "photos-dr", "v1/")],
        Some((&site_b, "photos-replica")),
    );

    let config = site.config.clone();
    let run = |args: &[&str]| {
        let config = config.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(ferry_tests::bin("ferry-agent"))
                .arg("--config")
                .arg(&config)
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let first: serde_json::Value =
        serde_json::from_str(&check(&run(&["--json", "backup"]).await.unwrap(), "backup")).unwrap();
    assert_eq!(first["files"], 7, "{first}");
    assert_eq!(first["files_read"], 7, "{first}");

    // A reconcile finds exactly what changed: one object replaced (same
    // size), one deleted, one added; the rest is not read again.
    put_object(
        &client,
        "photos",
        "2024/beach.jpg",
        noise(300_000, 3),
        Some("image/jpeg"),
        &[("camera", "x100"), ("album", "autumn")],
    )
    .await;
    client
        .delete_object()
        .bucket("photos")
        .key("/leading")
        .send()
        .await
        .unwrap();
    put_object(
        &client,
        "photos",
        "2025/new.txt",
        b"new object".to_vec(),
        Some("text/plain"),
        &[],
    )
    .await;
    let changed = snapshot_of(&client, "photos", "").await;
    let second: serde_json::Value =
        serde_json::from_str(&check(&run(&["--json", "backup"]).await.unwrap(), "backup")).unwrap();
    assert_eq!(second["files"], 7, "{second}");
    assert_eq!(
        second["files_read"], 2,
        "only the replaced and the new object: {second}"
    );

    // The latest snapshot into one bucket, the first into a prefix of it.
    let restored: serde_json::Value = serde_json::from_str(&check(
        &run(&["--json", "restore", "--to-target", "dr"])
            .await
            .unwrap(),
        "restore",
    ))
    .unwrap();
    assert_eq!(restored["files"], 7, "{restored}");
    let mut latest = snapshot_of(&client, "photos-dr", "").await;
    latest.retain(|k, _| !k.starts_with("v1/"));
    assert_eq!(latest, changed);

    // The same snapshot into the other site's server.
    check(
        &run(&["restore", "--to-target", "site-b"]).await.unwrap(),
        "restore into site b",
    );
    let site_b_client = site_b
        .location("photos-replica", "")
        .client()
        .await
        .unwrap();
    assert_eq!(
        snapshot_of(&site_b_client, "photos-replica", "").await,
        changed
    );

    // A non-empty target is refused, naming it.
    let refused = run(&["restore", "--to-target", "dr"]).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("photos-dr") && stderr.contains("empty"),
        "{stderr}"
    );

    let seq = first["seq"].as_u64().unwrap().to_string();
    check(
        &run(&["restore", "--to-target", "v1", "--snapshot", &seq])
            .await
            .unwrap(),
        "restore first snapshot",
    );
    assert_eq!(snapshot_of(&client, "photos-dr", "v1/").await, original);

    // A bucket snapshot cannot be poured into a directory.
    let as_dir = work.path().join("as-dir").display().to_string();
    let into_dir = run(&["restore", "--to", &as_dir]).await.unwrap();
    assert!(!into_dir.status.success());
    assert!(String::from_utf8_lossy(&into_dir.stderr).contains("bucket snapshot"));
}
