#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Faults and bad input through the real binaries: a hub killed with
//! SIGKILL or stopped with SIGTERM mid-backup, wrong, revoked and rotated
//! tokens (the crash and token tests on both catalog engines), write-only
//! keys, corrupt key files and configs, and a tampered pack.

use std::os::unix::fs::PermissionsExt;

use ferry_tests::postgres::Postgres;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, check, copy_tree, quick_dataset};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hub_killed_mid_backup_then_rerun_sends_only_the_rest() {
    hub_killed_mid_backup(None);
}

/// The same with the catalog on PostgreSQL: what the hub acknowledged is
/// committed on the server before the acknowledgement.
#[test]
fn hub_killed_mid_backup_with_the_catalog_on_postgres() {
    hub_killed_mid_backup(Some(&Postgres::start()));
}

fn hub_killed_mid_backup(pg: Option<&Postgres>) {
    let data = quick_dataset();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    copy_tree(&data.join("mixed"), &src);
    let mut hub = Hub::start_in(&work.path().join("hub"), "", pg);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "kill");

    // Start a backup and SIGKILL the hub as soon as it has acknowledged a
    // batch (durable and catalogued), while most of the data is still to come.
    let (ok, log) = site.backup_with_fault_after_first_ack(|| hub.kill9());
    assert!(!ok, "backup must fail when its hub dies");
    assert!(
        log.contains("error: lost the connection to the hub during"),
        "the error says the hub was lost: {log}"
    );
    let stored_before = hub.pool_bytes();
    assert!(stored_before > 0);

    // Restart on the same data dir; the rerun resends only what was not acknowledged.
    let hub = hub.restart();
    site.write_config(&hub.url(), &src);
    let rerun = site.backup();
    let deduplicated = rerun["chunks_deduplicated"].as_u64().unwrap();
    let sent = rerun["chunks_sent"].as_u64().unwrap();
    assert!(
        deduplicated > 0,
        "chunks stored before the kill must not be sent again: {rerun}"
    );

    // The same data and key into an empty hub sends every chunk (chunk
    // boundaries depend on the key, so the key must be the same): the rerun
    // sent fewer.
    let empty_hub = Hub::start(&work.path().join("hub-empty"));
    let full = Site::create(
        &empty_hub,
        &work.path().join("site-full"),
        &src,
        "site-a",
        "kill",
    );
    std::fs::remove_file(&full.key_file).unwrap();
    std::fs::copy(&site.key_file, &full.key_file).unwrap();
    let everything = full.backup();
    let total = everything["chunks_sent"].as_u64().unwrap();
    assert!(sent < total, "rerun sent {sent} of {total} chunks");

    let restored = work.path().join("restored");
    site.restore(&restored, &[]);
    assert_same(
        &describe(&src),
        &describe(&restored),
        "restore after hub crash",
    );
}

#[test]
fn bad_credentials_keys_and_configs_give_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");

    // A token file others may read: refused before anything is sent.
    let token_file = site.dir.join("site.token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = site.agent(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("site token file") && stderr(&out).contains("mode 0644"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Wrong token: refused, nothing committed.
    std::fs::write(site.dir.join("site.token"), "ferry_site_0000").unwrap();
    let out = site.agent(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown or revoked site token"),
        "{}",
        stderr(&out)
    );

    // A token from another tenant's site cannot see this bucket.
    check(&hub.cli(&["tenant", "add", "other"]), "tenant add");
    let other_token = site.dir.join("other.token");
    hub.add_site("other", "intruder", &other_token);
    std::fs::copy(&other_token, site.dir.join("site.token")).unwrap();
    let out = site.agent(&["backup"]);
    assert!(stderr(&out).contains("no such bucket"), "{}", stderr(&out));
    std::fs::remove_file(site.dir.join("site.token")).unwrap();

    // Back to a valid token (added fresh), then a write-only key: backup works, restore refuses.
    hub.add_site("acme", "site-b", &site.dir.join("site.token"));
    check(
        &hub.cli(&["bucket", "add", "acme/wo", "--source", "site-b"]),
        "bucket add",
    );
    let public = site.dir.join("public.key");
    check(
        &site.agent(&[
            "key",
            "public",
            "--key",
            site.key_file.to_str().unwrap(),
            "--out",
            public.to_str().unwrap(),
        ]),
        "key public",
    );
    let config = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace(site.key_file.to_str().unwrap(), public.to_str().unwrap())
        .replace("acme/docs", "acme/wo");
    std::fs::write(&site.config, config).unwrap();
    check(&site.agent(&["backup"]), "write-only backup");
    let out = site.agent(&["restore", "--to", work.path().join("r").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("write-only"), "{}", stderr(&out));
    assert!(
        !work.path().join("r").exists(),
        "a refused restore creates nothing"
    );

    // Truncated key file: error names the file.
    let full_key = std::fs::read_to_string(&site.key_file).unwrap();
    std::fs::write(&public, &full_key[..full_key.len() / 2]).unwrap();
    let out = site.agent(&["snapshots"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(public.to_str().unwrap()),
        "{}",
        stderr(&out)
    );

    // Unknown config field: error names the file and the field.
    std::fs::write(&site.config, "hub = \"http://127.0.0.1:1\"\nkey-file = \"k\"\nstate-dir = \"s\"\ntoken = \"inline-secret\"\n").unwrap();
    let out = site.agent(&["snapshots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("agent.toml") && err.contains("token"), "{err}");
}

#[test]
fn restore_refuses_a_tampered_pack() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let content = ferry_tests::noise(3_000_000, 11);
    std::fs::write(src.join("big.bin"), &content).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.backup();

    // Flip one byte in the middle of the largest pack (a data blob).
    let pack = hub
        .pack_files()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    let target = work.path().join("restored");
    let out = site.agent(&["restore", "--to", target.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a tampered pack must fail the restore"
    );
    let err = stderr(&out);
    assert!(
        err.contains("chunk") && (err.contains("decrypt") || err.contains("tampered")),
        "{err}"
    );
    let restored = target.join("big.bin");
    if restored.exists() {
        assert_ne!(
            std::fs::read(&restored).unwrap(),
            content,
            "no silent success"
        );
    }
}

#[test]
fn journal_is_not_trusted_when_the_hub_lacks_its_chunks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.bin"), ferry_tests::noise(700_000, 3)).unwrap();
    std::fs::write(src.join("b.txt"), b"bee").unwrap();
    let first_hub = Hub::start(&work.path().join("hub1"));
    let site = Site::create(
        &first_hub,
        &work.path().join("site"),
        &src,
        "site-a",
        "docs",
    );
    site.backup();
    drop(first_hub);

    // A new, empty hub with the same namespace: the agent's journal says
    // "unchanged", but the hub holds none of those chunks.
    let second_hub = Hub::start(&work.path().join("hub2"));
    check(&second_hub.cli(&["tenant", "add", "acme"]), "tenant add");
    std::fs::remove_file(site.dir.join("site.token")).unwrap();
    second_hub.add_site("acme", "site-a", &site.dir.join("site.token"));
    check(
        &second_hub.cli(&["bucket", "add", "acme/docs", "--source", "site-a"]),
        "bucket add",
    );
    site.write_config(&second_hub.url(), &src);
    // The agent has seen a commit the new hub lacks: it refuses the hub's
    // journal as rolled back until told the move was meant.
    let refused = site.agent(&["backup"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("rolled back"), "{stderr}");
    check(&site.agent(&["forget-head"]), "forget-head");
    let report = site.backup();
    assert_eq!(
        report["files_read"].as_u64(),
        Some(2),
        "every file read again: {report}"
    );
    let restored = work.path().join("restored");
    site.restore(&restored, &[]);
    assert_same(
        &describe(&src),
        &describe(&restored),
        "restore from the second hub",
    );
}

#[tokio::test]
async fn calls_without_a_valid_token_or_from_another_site_are_refused() {
    use ferry_proto::v1::ingest_client::IngestClient;
    use ferry_proto::v1::journal_client::JournalClient;
    use ferry_proto::v1::{
        FetchBlobsRequest, FindMissingRequest, ListCommitsRequest, OpenSessionRequest,
    };

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    let header = b"age-encryption.org/v1\n-> X25519 x\n--- y\n".to_vec();

    // No token at all, even on loopback.
    let mut ingest = IngestClient::connect(hub.url()).await.unwrap();
    let mut journal = JournalClient::connect(hub.url()).await.unwrap();
    let open = OpenSessionRequest {
        bucket: site.bucket.clone(),
        header: header.clone(),
    };
    assert_eq!(
        code(ingest.open_session(open.clone()).await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(
            ingest
                .find_missing(FindMissingRequest {
                    session_id: 1,
                    ids: vec![]
                })
                .await
        ),
        tonic::Code::Unauthenticated
    );
    let list = ListCommitsRequest {
        bucket: site.bucket.clone(),
        after_seq: 0,
        limit: 0,
        omit_manifests: false,
    };
    assert_eq!(
        code(journal.list_commits(list.clone()).await),
        tonic::Code::Unauthenticated
    );
    let fetch = FetchBlobsRequest {
        bucket: site.bucket.clone(),
        ids: vec![vec![0; 32]],
    };
    assert_eq!(
        code(journal.fetch_blobs(fetch).await),
        tonic::Code::Unauthenticated
    );

    // A valid token of a site that is not the bucket's source: no writes, no reads.
    let other = work.path().join("other.token");
    hub.add_site("acme", "site-b", &other);
    let token = std::fs::read_to_string(&other).unwrap();
    let link = ferry_agent::hub_link::HubLink::new(&hub.url(), None, false).unwrap();
    let client = ferry_agent::client::HubClient::connect(&link, &token)
        .await
        .unwrap();
    assert_eq!(
        code(client.ingest.clone().open_session(open).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(client.journal.clone().list_commits(list).await),
        tonic::Code::PermissionDenied
    );
}

fn code<T>(result: Result<T, tonic::Status>) -> tonic::Code {
    match result {
        Ok(_) => panic!("the call succeeded"),
        Err(status) => status.code(),
    }
}

/// SIGTERM in the middle of a backup: the hub stops taking work, answers
/// the batches it holds, ends the stream with a retryable error and exits
/// cleanly; nothing it acknowledged is missing, and the next run (against
/// the restarted hub) sends only the rest and restores identical.
#[test]
fn sigterm_mid_backup_drains_and_the_next_run_finishes() {
    sigterm_mid_backup(None);
}

#[test]
fn sigterm_mid_backup_with_the_catalog_on_postgres() {
    sigterm_mid_backup(Some(&Postgres::start()));
}

fn sigterm_mid_backup(pg: Option<&Postgres>) {
    let data = quick_dataset();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    copy_tree(&data.join("mixed"), &src);
    let mut hub = Hub::start_in(&work.path().join("hub"), "", pg);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "term");

    let mut exit = None;
    let (ok, log) = site.backup_with_fault_after_first_ack(|| exit = Some(hub.terminate()));
    let exit = exit.unwrap();
    assert!(!ok, "the backup cannot finish on a hub that stopped: {log}");
    assert!(
        exit.success(),
        "the hub exits 0 on SIGTERM: {exit}\n{}",
        hub.log()
    );
    assert!(
        log.contains("shutting down"),
        "the agent is told the hub is going away (retryable), not a reset: {log}"
    );
    assert!(hub.log().contains("ferry-hub stopped"), "{}", hub.log());
    assert!(hub.pool_bytes() > 0);

    let hub = hub.restart();
    site.write_config(&hub.url(), &src);
    let rerun = site.backup();
    assert!(
        rerun["chunks_deduplicated"].as_u64().unwrap() > 0,
        "what the stopping hub acknowledged is kept: {rerun}"
    );
    let restored = work.path().join("restored");
    site.restore(&restored, &[]);
    assert_same(
        &describe(&src),
        &describe(&restored),
        "restore after SIGTERM",
    );
}

/// Revoking a site or rotating its token takes effect on the serving hub
/// at once: the very next call with the old token is refused.
#[test]
fn revoked_and_rotated_tokens_are_refused_on_the_next_call() {
    revoked_and_rotated_tokens(None);
}

/// The same with the catalog on PostgreSQL, where the admin command and the
/// serving hub are two clients of one server.
#[test]
fn revoked_and_rotated_tokens_are_refused_with_the_catalog_on_postgres() {
    revoked_and_rotated_tokens(Some(&Postgres::start()));
}

fn revoked_and_rotated_tokens(pg: Option<&Postgres>) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let hub = Hub::start_in(&work.path().join("hub"), "", pg);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.backup();

    // Rotate: the old token fails now, the new one works, the hub never restarted.
    let token = site.dir.join("site.token");
    let old = std::fs::read_to_string(&token).unwrap();
    let new_file = site.dir.join("new.token");
    hub.rotate_token("acme", "site-a", &new_file);
    let out = site.agent(&["snapshots"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown or revoked site token"),
        "{}",
        stderr(&out)
    );
    std::fs::copy(&new_file, &token).unwrap();
    assert_ne!(std::fs::read_to_string(&token).unwrap(), old);
    check(&site.agent(&["snapshots"]), "snapshots with the new token");

    // Revoke: refused on the next call; listed as revoked.
    check(
        &hub.cli(&["site", "revoke", "--tenant", "acme", "site-a"]),
        "site revoke",
    );
    let out = site.agent(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown or revoked site token"),
        "{}",
        stderr(&out)
    );
    let listed = check(
        &hub.cli(&["--json", "site", "list", "--tenant", "acme"]),
        "site list",
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["revoked"], serde_json::json!(["site-a"]), "{listed}");
    // A revoked site gets no new token.
    let out = hub.cli(&["site", "rotate-token", "--tenant", "acme", "site-a"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
}
