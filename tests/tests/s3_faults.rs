#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! S3 faults through the real binaries: the S3 server stopped in the middle
//! of a bucket backup or under the hub's pool, and wrong credentials. Each
//! gives a clear error and commits nothing; the rerun after the server is
//! back resends nothing the hub had acknowledged, and nothing is lost.

use ferry_tests::garage::{Garage, put_object};
use ferry_tests::{Hub, Site, check, noise};

const OBJECTS: u64 = 24;

/// Fills `bucket` with OBJECTS objects of 2 MiB each.
fn fill(garage: &Garage, bucket: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = garage.location(bucket, "").client().await.unwrap();
        for i in 0..OBJECTS {
            let key = format!("data/{i:03}.bin");
            put_object(&client, bucket, &key, noise(2 << 20, i + 1), None, &[]).await;
        }
    });
}

fn write_agent_config(site: &Site, hub: &Hub, source_s3: &str, target_s3: &str) {
    let text = format!(
        "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n\n[[source]]\nname = \"data\"\nbucket = \"{}\"\ns3 = {source_s3}\n\n[[target]]\nname = \"dr\"\ns3 = {target_s3}\n",
        hub.url(),
        site.key_file.display(),
        site.bucket,
    );
    std::fs::write(&site.config, text).unwrap();
}

fn snapshot_count(site: &Site) -> usize {
    let out = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .unwrap()
        .len()
}

#[test]
fn source_bucket_stopped_mid_backup_then_rerun_sends_only_the_rest() {
    let mut garage = Garage::start();
    garage.create_bucket("data");
    garage.create_bucket("restored");
    fill(&garage, "data");
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let unused = work.path().join("unused");
    std::fs::create_dir_all(&unused).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &unused, "site-a", "data");

    // Wrong credentials: refused up front, naming the bucket.
    let wrong = work.path().join("wrong.credentials");
    std::fs::write(
        &wrong,
        "[default]\naws_access_key_id = GK00000000000000000000000\naws_secret_access_key = nope\n",
    )
    .unwrap();
    let bad = garage.s3_toml("data", "").replace(
        &garage.credentials_file().display().to_string(),
        &wrong.display().to_string(),
    );
    write_agent_config(&site, &hub, &bad, &garage.s3_toml("restored", ""));
    let refused = site.agent(&["backup"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("data"), "{err}");
    assert!(!err.contains("nope"), "a secret reached the error: {err}");

    write_agent_config(
        &site,
        &hub,
        &garage.s3_toml("data", ""),
        &garage.s3_toml("restored", ""),
    );
    let (ok, log) = site.backup_with_fault_after_first_ack(|| garage.stop());
    assert!(!ok, "the backup must fail while its bucket is unreachable");
    assert!(
        log.contains("s3://data/"),
        "the error names the bucket: {log}"
    );
    assert_eq!(snapshot_count(&site), 0, "nothing is committed");

    garage.resume();
    let rerun: serde_json::Value =
        serde_json::from_str(&check(&site.agent(&["--json", "backup"]), "rerun")).unwrap();
    assert_eq!(rerun["files"], OBJECTS, "{rerun}");
    assert!(
        rerun["chunks_deduplicated"].as_u64().unwrap() > 0,
        "chunks the hub acknowledged before the stop are not sent again: {rerun}"
    );

    // The target's server stopped in the middle of a restore: a clear error;
    // the rerun refuses the now non-empty target unless told to overwrite,
    // then completes.
    let (ok, log) = site.run_with_fault_after(
        &["--json", "restore", "--to-target", "dr"],
        "object written",
        || garage.stop(),
    );
    assert!(!ok, "the restore must fail while its target is down");
    assert!(
        log.contains("s3://restored/"),
        "the error names the target: {log}"
    );
    garage.resume();
    let refused = site.agent(&["restore", "--to-target", "dr"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--overwrite"));
    let restored: serde_json::Value = serde_json::from_str(&check(
        &site.agent(&["--json", "restore", "--to-target", "dr", "--overwrite"]),
        "restore",
    ))
    .unwrap();
    assert_eq!(restored["files"], OBJECTS);
    assert_eq!(restored["bytes"], OBJECTS * (2 << 20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = garage.location("restored", "").client().await.unwrap();
        for i in 0..OBJECTS {
            let got = client
                .get_object()
                .bucket("restored")
                .key(format!("data/{i:03}.bin"))
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().to_vec();
            assert!(bytes == noise(2 << 20, i + 1), "object {i} differs");
        }
    });
}

#[test]
fn hub_pool_stopped_mid_backup_fails_clearly_and_the_rerun_completes() {
    // The source is a directory; the hub's only pool is on Garage.
    let mut garage = Garage::start();
    garage.create_bucket("packs");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..OBJECTS {
        std::fs::write(src.join(format!("{i:03}.bin")), noise(2 << 20, i + 100)).unwrap();
    }
    let hub = Hub::start_on_s3(&work.path().join("hub"), &garage, "packs", None);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "files");

    let (ok, log) = site.backup_with_fault_after_first_ack(|| garage.stop());
    assert!(!ok, "the backup must fail while the hub's pool is down");
    assert!(
        log.contains("pool garage"),
        "the error names the pool: {log}"
    );
    assert_eq!(snapshot_count(&site), 0);

    garage.resume();
    let rerun = site.backup();
    assert_eq!(rerun["files"], OBJECTS, "{rerun}");
    assert!(
        rerun["chunks_deduplicated"].as_u64().unwrap() > 0,
        "{rerun}"
    );
    let out = work.path().join("restored");
    site.restore(&out, &[]);
    for i in 0..OBJECTS {
        let name = format!("{i:03}.bin");
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap(),
            "{name}"
        );
    }
}
