#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! The hub's S3 pool against a real S3 server (Garage on loopback): the
//! blob store conformance suite, multipart uploads, clear errors for a bad
//! bucket or key, and a hub that adds an S3 pool beside its local one.

use std::path::Path;

use ferry_hub::blobstore::{BlobStore, S3Store, conformance};
use ferry_tests::garage::Garage;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, noise};

#[tokio::test]
async fn s3_store_conforms_and_uploads_large_objects_in_parts() {
    let garage = Garage::start();
    garage.create_bucket("packs");
    let store = S3Store::open(garage.location("packs", "pool-a/"))
        .await
        .unwrap();
    conformance::run_all(&store).await;

    // Under another prefix of the same bucket nothing of pool-a is visible.
    let other = S3Store::open(garage.location("packs", "pool-b/"))
        .await
        .unwrap();
    assert!(other.list("").await.unwrap().is_empty());

    // 12 MiB in 5 MiB parts: three parts, the last one short.
    let parted = store.clone().with_multipart(5 << 20, 5 << 20);
    let data = noise(12 << 20, 7);
    parted.put("big/object", data.clone()).await.unwrap();
    assert_eq!(parted.size("big/object").await.unwrap(), data.len() as u64);
    assert_eq!(parted.get("big/object").await.unwrap(), data);
    let across = (5 << 20) - 100;
    assert_eq!(
        parted.get_range("big/object", across, 200).await.unwrap(),
        &data[across as usize..across as usize + 200]
    );
}

#[tokio::test]
async fn bodies_go_up_signed_or_checksummed_and_a_corrupt_one_is_refused() {
    let garage = Garage::start();
    garage.create_bucket("packs");
    // Loopback: unsigned by default (the conformance run above took that
    // path); signed when the pool says so.
    let mut signed = garage.location("packs", "signed/");
    assert!(!signed.signs_payload());
    signed.sign_payload = Some(true);
    let store = S3Store::open(signed).await.unwrap();
    let data = noise(3 << 20, 5);
    store.put("a/pack", data.clone()).await.unwrap();
    assert_eq!(store.get("a/pack").await.unwrap(), data);

    // Unsigned, the body still carries a CRC32 the server checks: a body
    // that does not match it is refused, not stored.
    let location = garage.location("packs", "");
    let client = location.client().await.unwrap();
    let request = client
        .put_object()
        .bucket("packs")
        .key("corrupt")
        .checksum_crc32("AAAAAA==")
        .body(noise(1 << 20, 6).into());
    let refused = ferry_s3::put_object(request, &location).await;
    let err = ferry_s3::describe(&refused.expect_err("a body with a wrong checksum was stored"));
    assert!(err.to_lowercase().contains("checksum"), "{err}");
    let listed = S3Store::open(location)
        .await
        .unwrap()
        .list("")
        .await
        .unwrap();
    assert!(!listed.iter().any(|k| k == "corrupt"), "{listed:?}");
}

#[tokio::test]
async fn a_missing_bucket_or_a_wrong_key_is_a_clear_error() {
    let garage = Garage::start();
    garage.create_bucket("real");
    let err = S3Store::open(garage.location("no-such-bucket", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-bucket") && err.contains("does not exist"),
        "{err}"
    );

    let wrong = garage.dir().join("wrong-credentials");
    std::fs::write(
        &wrong,
        "[default]\naws_access_key_id = GK0000000000000000000000\naws_secret_access_key = 00\n",
    )
    .unwrap();
    let mut bad_key = garage.location("real", "");
    bad_key.credentials_file = Some(wrong);
    let err = S3Store::open(bad_key).await.unwrap_err().to_string();
    assert!(err.contains("real"), "{err}");
    assert!(
        !err.contains("aws_secret_access_key") && !err.contains(&garage.key_id),
        "credentials leak into the error: {err}"
    );
}

fn write_hub_config(path: &Path, pools: &[String]) {
    std::fs::write(path, pools.join("\n")).unwrap();
}

/// A hub with a local pool gains an S3 pool: new packs go to S3, old ones
/// stay and are still read; dropping a pool that holds packs is refused.
#[test]
fn a_hub_adds_an_s3_pool_and_reads_from_both() {
    let garage = Garage::start();
    garage.create_bucket("hub-packs");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("first")).unwrap();
    std::fs::write(src.join("first/a.bin"), noise(3 << 20, 1)).unwrap();
    std::fs::write(src.join("first/note.txt"), b"first backup").unwrap();

    let config = work.path().join("hub.toml");
    let data_dir = work.path().join("hub");
    let local_pool = format!(
        "[[pool]]\nname = \"disk\"\ndir = \"{}\"\n",
        work.path().join("disk-pool").display()
    );
    write_hub_config(&config, std::slice::from_ref(&local_pool));
    let mut hub = Hub::start_with_config(&data_dir, &config);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "files");
    site.backup();
    let disk_packs =
        ferry_tests::tree::files_with_extension(&work.path().join("disk-pool"), "pack");
    assert!(!disk_packs.is_empty());
    hub.kill9();

    // Add the S3 pool (newest last) and back up new data.
    let s3_pool = format!(
        "[[pool]]\nname = \"garage\"\ns3 = {}\n",
        garage.s3_toml("hub-packs", "ferry/")
    );
    write_hub_config(&config, &[local_pool.clone(), s3_pool.clone()]);
    let hub = Hub::start_with_config(&data_dir, &config);
    site.write_config(&hub.url(), &src);
    std::fs::create_dir_all(src.join("second")).unwrap();
    std::fs::write(src.join("second/b.bin"), noise(2 << 20, 2)).unwrap();
    site.backup();
    assert_eq!(
        ferry_tests::tree::files_with_extension(&work.path().join("disk-pool"), "pack"),
        disk_packs,
        "adding a pool moved or added local packs"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let in_s3 = rt.block_on(async {
        let store = S3Store::open(garage.location("hub-packs", "ferry/"))
            .await
            .unwrap();
        store.list("packs/").await.unwrap()
    });
    assert!(!in_s3.is_empty(), "the second backup wrote no pack to S3");

    // The restore reads old chunks from disk and new ones from S3.
    let out = work.path().join("restored");
    site.restore(&out, &[]);
    assert_same(&describe(&src), &describe(&out), "restore from two pools");

    // Without the local pool in the config the hub refuses to start.
    drop(hub);
    write_hub_config(&config, &[s3_pool]);
    let err = Hub::try_start(&data_dir, Some(&config)).err().unwrap();
    assert!(
        err.contains("pool disk holds") && err.contains("not configured"),
        "{err}"
    );
}
