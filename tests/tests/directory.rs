#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A directory protected end to end through real processes on loopback:
//! backup, change, incremental backup, restores (latest, by snapshot, by time).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_tests::postgres::Postgres;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, copy_tree, quick_dataset};

/// Adds what the generated dataset lacks: symlinks, a hard link, an empty
/// directory, odd modes and a name that is not UTF-8.
fn add_metadata_cases(src: &Path) {
    std::fs::create_dir_all(src.join("extras/empty-dir")).unwrap();
    std::fs::write(src.join("extras/script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        src.join("extras/script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(src.join("extras/read-only"), b"frozen").unwrap();
    std::fs::set_permissions(
        src.join("extras/read-only"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    std::fs::write(src.join("extras/empty-file"), b"").unwrap();
    std::os::unix::fs::symlink("script.sh", src.join("extras/link-to-script")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("extras/dangling")).unwrap();
    std::fs::hard_link(src.join("extras/script.sh"), src.join("extras/hard-link")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"extras/caf\xe9 name");
    std::fs::write(src.join(odd), b"latin-1 bytes in the name").unwrap();
    std::fs::set_permissions(
        src.join("extras/empty-dir"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    filetime::set_file_mtime(
        src.join("extras/empty-dir"),
        filetime::FileTime::from_unix_time(1_600_000_000, 5),
    )
    .unwrap();
}

fn n(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no {field}: {report}"))
}

#[test]
fn directory_backup_change_incremental_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    backup_change_incremental_and_restores(&hub, work.path());
}

/// The same, with the hub's catalog on a PostgreSQL server.
#[test]
fn directory_backup_change_incremental_and_restores_with_the_catalog_on_postgres() {
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start_on_postgres(&work.path().join("hub"), &pg);
    backup_change_incremental_and_restores(&hub, work.path());
    assert!(
        !work.path().join("hub/hub/catalog.db").exists(),
        "the hub wrote a SQLite catalog beside PostgreSQL"
    );
}

fn backup_change_incremental_and_restores(hub: &Hub, work: &Path) {
    let data = quick_dataset();
    let src = work.join("src");
    std::fs::create_dir(&src).unwrap();
    copy_tree(&data.join("mixed"), &src.join("mixed"));
    copy_tree(&data.join("small"), &src.join("small"));
    add_metadata_cases(&src);

    let site = Site::create(hub, &work.join("site-a"), &src, "site-a", "docs");

    // First backup reads everything.
    let first = site.backup();
    let state1 = describe(&src);
    let files = state1.values().filter(|n| n.kind == 'f').count() as u64;
    assert_eq!(n(&first, "files"), files);
    assert_eq!(
        n(&first, "files_read"),
        files - 1,
        "the hard link is not read twice"
    );
    assert!(n(&first, "chunks_sent") > 0);
    assert!(first["skipped"].as_array().unwrap().is_empty(), "{first}");
    let repo_after_first = hub.pool_bytes();
    let source_bytes: u64 = state1
        .values()
        .filter(|n| n.kind == 'f' && n.link_of.is_none())
        .map(|n| n.size)
        .sum();
    println!("source {source_bytes} bytes; repo after first backup {repo_after_first} bytes");
    assert!(
        repo_after_first < source_bytes,
        "compression should save something on this data"
    );

    // A time between the two snapshots, for --at.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = rfc3339_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Change a few files: an insertion in the middle of a large one, an
    // append, a new file, a deletion.
    let big = largest_file(&src.join("mixed"));
    let mut bytes = std::fs::read(&big).unwrap();
    let mid = bytes.len() / 2;
    bytes.splice(mid..mid, *b"an insertion in the middle");
    std::fs::write(&big, &bytes).unwrap();
    let mut small = std::fs::read(src.join("extras/script.sh")).unwrap();
    small.extend_from_slice(b"echo more\n");
    std::fs::write(src.join("extras/script.sh"), &small).unwrap();
    std::fs::write(src.join("extras/new-file"), b"brand new").unwrap();
    std::fs::remove_file(src.join("extras/empty-file")).unwrap();

    let second = site.backup();
    let state2 = describe(&src);
    // Only the changed and new files are read (script.sh and its hard link are one inode).
    assert_eq!(n(&second, "files_read"), 3, "{second}");
    let repo_after_second = hub.pool_bytes();
    let growth = repo_after_second - repo_after_first;
    println!(
        "repo after second backup {repo_after_second} bytes (growth {growth} bytes, big file {} bytes)",
        bytes.len()
    );
    assert!(n(&second, "chunks_deduplicated") > 0);
    assert!(
        growth < 16 << 20,
        "an edit in one file stored {growth} bytes"
    );

    // Snapshots listing.
    let listing: serde_json::Value = serde_json::from_str(&ferry_tests::check(
        &site.agent(&["--json", "snapshots"]),
        "snapshots",
    ))
    .unwrap();
    let seqs: Vec<u64> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![n(&first, "seq"), n(&second, "seq")]);

    // Latest restore matches the current tree byte for byte, with metadata.
    let latest = work.join("restore-latest");
    let report = site.restore(&latest, &[]);
    assert_eq!(n(&report, "seq"), n(&second, "seq"));
    assert_same(&state2, &describe(&latest), "latest restore");

    // By snapshot number and by time: the first state.
    let by_seq = work.join("restore-seq");
    site.restore(&by_seq, &["--snapshot", &n(&first, "seq").to_string()]);
    assert_same(&state1, &describe(&by_seq), "restore --snapshot 1");
    let by_time = work.join("restore-at");
    site.restore(&by_time, &["--at", &between]);
    assert_same(&state1, &describe(&by_time), "restore --at");

    // Restoring into a non-empty directory is refused and touches nothing.
    let out = site.agent(&["restore", "--to", latest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

fn largest_file(dir: &Path) -> std::path::PathBuf {
    ferry_tests::tree::files_with_extension(dir, "")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
