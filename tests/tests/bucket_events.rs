#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! `ferry-agent run` against a real S3 server (Garage, which sends no
//! notifications, so the test posts them as MinIO would): a full listing
//! first, then snapshots driven by events; the webhook's answers to bad
//! input, a full queue and a missing token; and no acknowledged event lost
//! when the agent is killed right after answering 2xx.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_agent::events::queue::QueueReader;
use ferry_s3::aws_sdk_s3::Client;
use ferry_tests::daemon::Daemon;
use ferry_tests::garage::{Garage, put_object};
use ferry_tests::http::request;
use ferry_tests::{Hub, Site, check};

const TOKEN: &str = "webhook-secret-token";

/// A MinIO-style notification body (`s3:` event names, top-level EventName and Key).
fn minio_body(records: &[(&str, &str, u64, &str)]) -> String {
    let records: Vec<String> = records
        .iter()
        .map(|(name, key, size, sequencer)| {
            format!(
                r#"{{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-23T10:00:00.000Z","eventName":"s3:{name}","userIdentity":{{"principalId":"minio"}},"requestParameters":{{"sourceIPAddress":"127.0.0.1"}},"responseElements":{{"x-amz-request-id":"17A"}},"s3":{{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{{"name":"photos","ownerIdentity":{{"principalId":"minio"}},"arn":"arn:aws:s3:::photos"}},"object":{{"key":"{key}","size":{size},"eTag":"e","contentType":"application/octet-stream","userMetadata":{{}},"sequencer":"{sequencer}"}}}},"source":{{"host":"127.0.0.1","port":"","userAgent":"MinIO"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"EventName":"s3:ObjectCreated:Put","Key":"photos/x","Records":[{}]}}"#,
        records.join(",")
    )
}

fn snapshots(site: &Site) -> Vec<serde_json::Value> {
    let out = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
}

/// Waits until the bucket has `n` snapshots; returns the newest.
fn wait_for_snapshots(site: &Site, n: usize, log: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = snapshots(site);
        if all.len() >= n {
            return all[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} snapshots; agent log:\n{}",
            all.len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn keys_of(client: &Client, bucket: &str) -> Vec<(String, i64)> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap_or(0)))
        .collect()
}

fn write_config(
    site: &Site,
    hub: &Hub,
    garage: &Garage,
    max_pending: u64,
    target: &str,
) -> PathBuf {
    ferry_tests::write_secret(&site.dir.join("webhook.token"), &format!("{TOKEN}\n"));
    let text = format!(
        "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n\n[webhook]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"webhook.token\"\nmax-pending = {max_pending}\n\n[run]\nsettle = \"50ms\"\nreconcile-interval = \"1h\"\n\n[[source]]\nname = \"photos\"\nbucket = \"{}\"\ns3 = {}\n\n[[target]]\nname = \"dr\"\ns3 = {}\n",
        hub.url(),
        site.key_file.display(),
        site.bucket,
        garage.s3_toml("photos", ""),
        garage.s3_toml(target, "")
    );
    std::fs::write(&site.config, text).unwrap();
    site.dir.join("state/events.db")
}

async fn put(client: &Client, key: &str, data: &[u8]) {
    put_object(client, "photos", key, data.to_vec(), None, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_drive_snapshots_and_survive_a_kill() {
    let garage = Garage::start();
    for b in ["photos", "photos-dr", "hub-packs"] {
        garage.create_bucket(b);
    }
    let client = garage.location("photos", "").client().await.unwrap();
    put(&client, "a.txt", b"first object").await;
    put(&client, "dir/b.bin", &ferry_tests::noise(100_000, 5)).await;

    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start_on_s3(work.path(), &garage, "hub-packs", None);
    let empty = work.path().join("unused");
    std::fs::create_dir_all(&empty).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &empty, "site-a", "photos");
    let events_db = write_config(&site, &hub, &garage, 1000, "photos-dr");
    let log = site.dir.join("agent.log");

    let mut agent = tokio::task::block_in_place(|| Daemon::start(&site.config, &site.dir));
    let addr = agent.addr.clone();
    let first = tokio::task::block_in_place(|| wait_for_snapshots(&site, 1, &log));
    assert_eq!(first["files"], 2, "the full listing at start: {first}");

    // The webhook's answers to probes and bad requests.
    let post = |token: Option<&str>, body: String| {
        let addr = addr.clone();
        let token = token.map(str::to_owned);
        tokio::task::block_in_place(move || {
            request(&addr, "POST", "/", token.as_deref(), body.as_bytes())
        })
    };
    let head = tokio::task::block_in_place(|| request(&addr, "HEAD", "/", None, b""));
    assert_eq!(head.status, 200);
    let no_token = post(None, minio_body(&[("ObjectCreated:Put", "x", 1, "01")]));
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    let garbage = post(Some(TOKEN), "{\"Records\": [{\"eventName\": 5}]".into());
    assert_eq!(garbage.status, 400);
    assert!(!garbage.body.is_empty(), "a 400 says why");
    let oversized = post(
        Some(TOKEN),
        format!("{{\"Records\":[], \"pad\":\"{}\"}}", "x".repeat(1_500_000)),
    );
    assert_eq!(oversized.status, 400, "{}", oversized.body);

    // Changes reach the snapshot through events alone: a new object, a
    // replaced one and a deleted one.
    put(&client, "new/c.txt", b"created after the listing").await;
    put(&client, "a.txt", b"first object, replaced").await;
    client
        .delete_object()
        .bucket("photos")
        .key("dir/b.bin")
        .send()
        .await
        .unwrap();
    let answer = post(
        Some(TOKEN),
        minio_body(&[
            ("ObjectCreated:Put", "new/c.txt", 25, "0000000000000010"),
            ("ObjectCreated:Put", "a.txt", 22, "0000000000000011"),
            ("ObjectRemoved:Delete", "dir/b.bin", 0, "0000000000000012"),
        ]),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let counts: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        counts,
        serde_json::json!({"queued": 3, "duplicates": 0, "ignored": 0})
    );
    let second = tokio::task::block_in_place(|| wait_for_snapshots(&site, 2, &log));
    assert_eq!(second["files"], 2, "{second}");
    let restored = check(
        &site.agent(&["--json", "restore", "--to-target", "dr"]),
        "restore",
    );
    let restored: serde_json::Value = serde_json::from_str(&restored).unwrap();
    assert_eq!(restored["files"], 2);
    assert_eq!(
        keys_of(&client, "photos-dr").await,
        keys_of(&client, "photos").await
    );

    agent.kill9();

    // SIGKILL right after a 2xx loses nothing: with a long settle time the
    // event is still queued when the agent dies, and the next start takes it.
    let text = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        text.replace("settle = \"50ms\"", "settle = \"1h\""),
    )
    .unwrap();
    let agent = tokio::task::block_in_place(|| Daemon::start(&site.config, &site.dir));
    tokio::task::block_in_place(|| wait_for_snapshots(&site, 3, &log));
    put(&client, "late.txt", b"late").await;
    let addr = agent.addr.clone();
    let answer = tokio::task::block_in_place(|| {
        request(
            &addr,
            "POST",
            "/",
            Some(TOKEN),
            minio_body(&[("ObjectCreated:Put", "late.txt", 4, "0000000000000030")]).as_bytes(),
        )
    });
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(agent);
    let queued = QueueReader::open(&events_db)
        .unwrap()
        .changes("photos", 100)
        .unwrap();
    assert!(
        queued.keys.contains_key("late.txt"),
        "an acknowledged event was lost: {:?}",
        queued.keys
    );

    std::fs::write(&site.config, text).unwrap();
    let _agent = tokio::task::block_in_place(|| Daemon::start(&site.config, &site.dir));
    let fourth = tokio::task::block_in_place(|| wait_for_snapshots(&site, 4, &log));
    assert_eq!(fourth["files"], 3, "{fourth}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while QueueReader::open(&events_db).unwrap().pending().unwrap() > 0 {
        assert!(Instant::now() < deadline, "taken events were not cleared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let garage = Garage::start();
    for b in ["photos", "photos-dr", "hub-packs"] {
        garage.create_bucket(b);
    }
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let empty = work.path().join("unused");
    std::fs::create_dir_all(&empty).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &empty, "site-a", "photos");
    write_config(&site, &hub, &garage, 3, "photos-dr");
    let agent = Daemon::start(&site.config, &site.dir);
    let four: Vec<(&str, String, u64, String)> = (0..4)
        .map(|i| ("ObjectCreated:Put", format!("k{i}"), 1, format!("{i:02}")))
        .collect();
    let records: Vec<(&str, &str, u64, &str)> = four
        .iter()
        .map(|(n, k, s, q)| (*n, k.as_str(), *s, q.as_str()))
        .collect();
    let answer = request(
        &agent.addr,
        "POST",
        "/",
        Some(TOKEN),
        minio_body(&records).as_bytes(),
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"));
}

/// The longest the daemon may take to notice a frozen hub (keepalive: a
/// ping every 5 s, 10 s for its answer) and log the failed snapshot.
const FROZEN_HUB_NOTICED_WITHIN: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rides_out_a_frozen_hub_and_snapshots_once_it_thaws() {
    let garage = Garage::start();
    for b in ["photos", "photos-dr"] {
        garage.create_bucket(b);
    }
    let client = garage.location("photos", "").client().await.unwrap();
    put(&client, "a.txt", b"first object").await;
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let empty = work.path().join("unused");
    std::fs::create_dir_all(&empty).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &empty, "site-a", "photos");
    write_config(&site, &hub, &garage, 1000, "photos-dr");
    let log = site.dir.join("agent.log");
    let agent = tokio::task::block_in_place(|| Daemon::start(&site.config, &site.dir));
    tokio::task::block_in_place(|| wait_for_snapshots(&site, 1, &log));

    hub.freeze();
    let frozen_at = Instant::now();
    put(&client, "b.txt", b"written while the hub is frozen").await;
    let answer = tokio::task::block_in_place(|| {
        request(
            &agent.addr,
            "POST",
            "/",
            Some(TOKEN),
            minio_body(&[("ObjectCreated:Put", "b.txt", 31, "0000000000000020")]).as_bytes(),
        )
    });
    assert_eq!(answer.status, 200, "events queue while the hub is away");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("snapshot failed") {
            assert!(
                text.contains("lost the connection to the hub"),
                "the failure says the hub was lost:\n{text}"
            );
            break;
        }
        assert!(
            frozen_at.elapsed() < FROZEN_HUB_NOTICED_WITHIN,
            "the daemon did not notice the frozen hub:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hub.thaw();
    // Retried with backoff, the snapshot lands once the hub answers.
    let second = tokio::task::block_in_place(|| wait_for_snapshots(&site, 2, &log));
    assert_eq!(second["files"], 2, "{second}");
}
