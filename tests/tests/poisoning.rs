#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Dedup that cannot be poisoned, end to end. A second site of the tenant,
//! holding only the write-only key, uploads garbage under the chunk id of
//! content the first site will back up. The first site's backup does not
//! dedup against it (copies are per site): it uploads its own copy and
//! restores identical. Nor can the second site learn through FindMissing
//! what the first stored, or fetch it. Once a key holder's restore has
//! verified the first site's copies (a signed report), the second site's
//! backups dedup against them.

use ferry_agent::client::HubClient;
use ferry_agent::hub_link::HubLink;
use ferry_crypto::TenantKeys;
use ferry_proto::v1::{Blob, BlobBatch, FetchBlobsRequest, FindMissingRequest, OpenSessionRequest};
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check, noise};

async fn client(hub: &Hub, site: &Site) -> HubClient {
    let token = std::fs::read_to_string(site.dir.join("site.token")).unwrap();
    let link = HubLink::new(&hub.url(), None, false).unwrap();
    HubClient::connect(&link, token.trim()).await.unwrap()
}

/// Opens a session on `bucket` as `client` and returns its id.
async fn open(client: &HubClient, keys: &TenantKeys, bucket: &str) -> u64 {
    let sealer = keys.sealer().unwrap();
    client
        .ingest
        .clone()
        .open_session(OpenSessionRequest {
            bucket: bucket.to_owned(),
            header: sealer.header().to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_id
}

async fn find_missing(client: &HubClient, session: u64, ids: &[[u8; 32]]) -> Vec<u32> {
    client
        .ingest
        .clone()
        .find_missing(FindMissingRequest {
            session_id: session,
            ids: ids.iter().map(|id| id.to_vec()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_a_known_id_from_another_site_is_never_used() {
    let work = tempfile::tempdir().unwrap();
    let (src_a, src_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&src_a).unwrap();
    std::fs::create_dir_all(&src_b).unwrap();
    // One chunk (below the 256 KiB minimum), and a second file beside it.
    let common = noise(200_000, 77);
    std::fs::write(src_a.join("common.bin"), &common).unwrap();
    let own = noise(100_000, 78);
    std::fs::write(src_a.join("own.bin"), &own).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let a = Site::create(&hub, &work.path().join("site-a"), &src_a, "site-a", "docs");
    let b = Site::create(&hub, &work.path().join("site-b"), &src_b, "site-b", "other");
    // Site b holds the tenant's write-only key: it can back up, not read.
    std::fs::remove_file(&b.key_file).unwrap();
    check(
        &a.agent(&[
            "key",
            "public",
            "--key",
            a.key_file.to_str().unwrap(),
            "--out",
            b.key_file.to_str().unwrap(),
        ]),
        "key public",
    );
    let b_keys = TenantKeys::load(&b.key_file).unwrap();
    assert!(!b_keys.can_decrypt());
    let target = b_keys.chunk_id(&common);

    // Site b plants garbage under the id of the common file's chunk.
    let attacker = client(&hub, &b).await;
    let session = open(&attacker, &b_keys, &b.bucket).await;
    let batch = BlobBatch {
        session_id: session,
        batch: 1,
        blobs: vec![Blob {
            id: target.to_vec(),
            kind: 1,
            flags: 0,
            data: vec![0xBA; 4096].into(),
        }],
    };
    let mut acks = attacker
        .bulk
        .clone()
        .upload_blobs(tokio_stream::iter(vec![batch]))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!(ack.stored, 1, "the garbage is stored, as site b's copy");
    assert_eq!(
        find_missing(&attacker, session, &[target]).await,
        Vec::<u32>::new()
    );

    // Site a's backup does not take site b's copy for its own.
    let report = tokio::task::spawn_blocking({
        let config = a.config.clone();
        move || {
            let out = std::process::Command::new(ferry_tests::bin("ferry-agent"))
                .arg("--config")
                .arg(&config)
                .args(["--json", "backup"])
                .output()
                .unwrap();
            check(&out, "backup")
        }
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["chunks_deduplicated"], 0, "{report}");
    assert!(report["chunks_sent"].as_u64().unwrap() >= 2, "{report}");
    let restored = work.path().join("restored");
    let to = restored.clone();
    let a_restore = a.config.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(ferry_tests::bin("ferry-agent"))
            .arg("--config")
            .arg(&a_restore)
            .args(["restore", "--to", to.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    check(&out, "restore");
    assert_same(&describe(&src_a), &describe(&restored), "site a's restore");

    // Site b learns nothing of what site a stored: a's other chunk is
    // missing for it, as is everything site a uploaded only.
    let own_id = b_keys.chunk_id(&own);
    assert_eq!(
        find_missing(&attacker, session, &[own_id, target]).await,
        [0]
    );
    // And it cannot read site a's bucket, nor reach a's copy through its own.
    let denied = attacker
        .journal
        .clone()
        .fetch_blobs(FetchBlobsRequest {
            bucket: a.bucket.clone(),
            ids: vec![own_id.to_vec()],
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
    let mut own_bucket = attacker
        .journal
        .clone()
        .fetch_blobs(FetchBlobsRequest {
            bucket: b.bucket.clone(),
            ids: vec![own_id.to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    let err = own_bucket.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
}

/// A copy that does not open to its id (damaged in the pool) fails the
/// restore, which names it and tells the hub; the hub marks it bad, the
/// site's next backup uploads that chunk again, and the restore succeeds.
#[test]
fn a_damaged_copy_is_reported_at_restore_and_replaced_by_the_next_backup() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), noise(900_000, 5)).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.backup();

    // Flip a byte in the middle of one data chunk's ciphertext.
    let (pack, at) = hub
        .pack_files()
        .into_iter()
        .find_map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let index = ferry_hub::pack::parse_pack(&bytes).unwrap();
            let e = index
                .entries
                .iter()
                .find(|e| e.kind == ferry_proto::BlobKind::Data)?;
            Some((path, e.offset as usize + e.length as usize / 2))
        })
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    // A verify finds it as a restore would, and writes nothing.
    let out = site.agent(&["verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the hub was told"), "{stderr}");
    assert!(hub.log().contains("blobs reported bad"), "{}", hub.log());
    // Marked bad, the copy is still served (a site's word may be wrong).
    let out = site.agent(&["restore", "--to", work.path().join("r1").to_str().unwrap()]);
    assert!(!out.status.success());

    let report = site.backup();
    assert!(report["chunks_sent"].as_u64().unwrap() >= 1, "{report}");
    let restored = work.path().join("r2");
    site.restore(&restored, &[]);
    assert_same(&describe(&src), &describe(&restored), "after the re-upload");
}

/// Copies count for another site only once a key holder has verified
/// them: a restore at site a reports what it opened, signed with the
/// tenant's verifier key (registered at the hub); site b, holding only the
/// write-only key, then dedups against those copies, and its bucket
/// restores from them.
#[test]
fn a_key_holders_restore_lets_other_sites_dedup_against_verified_copies() {
    let work = tempfile::tempdir().unwrap();
    let (src_a, src_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&src_a).unwrap();
    std::fs::create_dir_all(&src_b).unwrap();
    let common = noise(200_000, 91);
    std::fs::write(src_a.join("common.bin"), &common).unwrap();
    std::fs::write(src_a.join("only-a.bin"), noise(100_000, 92)).unwrap();
    std::fs::write(src_b.join("common.bin"), &common).unwrap();
    std::fs::write(src_b.join("only-b.bin"), noise(50_000, 93)).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let a = Site::create(&hub, &work.path().join("site-a"), &src_a, "site-a", "docs");
    let b = Site::create(&hub, &work.path().join("site-b"), &src_b, "site-b", "other");
    // One tenant, one key: site b gets its write-only variant.
    std::fs::remove_file(&b.key_file).unwrap();
    let key = a.key_file.to_str().unwrap();
    check(
        &a.agent(&[
            "key",
            "public",
            "--key",
            key,
            "--out",
            b.key_file.to_str().unwrap(),
        ]),
        "key public",
    );
    let refused = b.agent(&["key", "verifier", "--key", b.key_file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("write-only"));

    a.backup();
    // No verifier key registered: the restore verifies, nobody is told.
    let report = a.restore(&work.path().join("r1"), &[]);
    assert_eq!(report["copies_verified"], 0, "{report}");
    let verifier = check(&a.agent(&["key", "verifier", "--key", key]), "key verifier");
    check(
        &hub.cli(&["tenant", "verifier", "acme", "--key", verifier.trim()]),
        "tenant verifier",
    );
    let listed = check(&hub.cli(&["--json", "tenant", "list"]), "tenant list");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["tenants"][0]["tenant"], "acme", "{listed}");
    assert_eq!(
        listed["tenants"][0]["verifier"],
        verifier.trim(),
        "{listed}"
    );
    let bad = hub.cli(&["tenant", "verifier", "acme", "--key", "12ab"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--key"));
    // Registered: a scheduled verify (a restore that writes nothing)
    // reports the copies it opened, once.
    let out = check(&a.agent(&["--json", "verify"]), "verify");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["copies_verified"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["files"], 2, "{report}");
    assert_eq!(report["bytes"], 300_000, "{report}");
    let report = a.restore(&work.path().join("r3"), &[]);
    assert_eq!(report["copies_verified"], 0, "already verified: {report}");

    // Site b's backup dedups the common chunk against site a's copy.
    let backup = b.backup();
    assert!(
        backup["chunks_deduplicated"].as_u64().unwrap() >= 1,
        "{backup}"
    );
    // And b's bucket restores (its key holder reading a's verified copy).
    std::fs::remove_file(&b.key_file).unwrap();
    std::fs::copy(&a.key_file, &b.key_file).unwrap();
    let restored = work.path().join("restored-b");
    b.restore(&restored, &[]);
    assert_same(&describe(&src_b), &describe(&restored), "site b's restore");
}
