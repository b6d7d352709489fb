#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Authenticated commits, end to end: a catalog edited behind the hub's
//! back (a commit moved to another bucket, commits reordered, the newest
//! dropped) is refused by the agent at restore, at `snapshots` and at the
//! next backup, with an error that says what happened; put back, it
//! restores again.

use std::path::Path;

use ferry_tests::{Hub, Site, check};
use rusqlite::{Connection, params};

fn catalog(hub: &Hub) -> Connection {
    let conn = Connection::open(hub.data_dir.join("catalog.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn
}

fn bucket_id(conn: &Connection, name: &str) -> i64 {
    conn.query_row("SELECT id FROM buckets WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .unwrap()
}

/// What the agent says to `args`, which must fail.
fn refused(site: &Site, args: &[&str]) -> String {
    let out = site.agent(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded:\n{stderr}");
    stderr
}

fn restore_refused(site: &Site, to: &Path) -> String {
    refused(site, &["restore", "--to", to.to_str().unwrap()])
}

#[test]
fn an_altered_journal_is_refused_and_the_true_one_restores() {
    let work = tempfile::tempdir().unwrap();
    let (src_a, src_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&src_a).unwrap();
    std::fs::create_dir_all(&src_b).unwrap();
    std::fs::write(src_b.join("b.txt"), b"bucket b").unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let a = Site::create(&hub, &work.path().join("site-a"), &src_a, "site-a", "docs");
    let b = Site::create(&hub, &work.path().join("site-b"), &src_b, "site-b", "other");
    // One tenant key: a commit moved from one bucket to the other carries
    // a MAC under the right key, for the wrong bucket.
    std::fs::copy(&a.key_file, &b.key_file).unwrap();
    for round in 1..=3 {
        std::fs::write(src_a.join("file.txt"), format!("round {round}")).unwrap();
        assert_eq!(a.backup()["seq"], round);
    }
    assert_eq!(b.backup()["seq"], 1);
    let conn = catalog(&hub);
    let (docs, other) = (bucket_id(&conn, "docs"), bucket_id(&conn, "other"));

    // A commit of bucket docs moved to bucket other.
    conn.execute(
        "UPDATE commits SET bucket_id = ?1, seq = 2 WHERE bucket_id = ?2 AND seq = 3",
        params![other, docs],
    )
    .unwrap();
    let err = restore_refused(&b, &work.path().join("r1"));
    assert!(err.contains("bucket acme/other: commit 2"), "{err}");
    assert!(err.contains("altered"), "{err}");
    // Bucket docs lost its newest commit, which site a made and saw.
    let err = restore_refused(&a, &work.path().join("r2"));
    assert!(err.contains("ends at commit 2"), "{err}");
    assert!(err.contains("has seen commit 3"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    let err = refused(&a, &["snapshots"]);
    assert!(err.contains("rolled back"), "{err}");
    // A backup onto the rolled-back journal is refused before it sends data.
    let err = refused(&a, &["backup"]);
    assert!(err.contains("rolled back"), "{err}");
    conn.execute(
        "UPDATE commits SET bucket_id = ?1, seq = 3 WHERE bucket_id = ?2 AND seq = 2",
        params![docs, other],
    )
    .unwrap();

    // Commits 1 and 2 of docs swapped.
    conn.execute_batch(&format!(
        "UPDATE commits SET seq = 100 WHERE bucket_id = {docs} AND seq = 1;
         UPDATE commits SET seq = 1 WHERE bucket_id = {docs} AND seq = 2;
         UPDATE commits SET seq = 2 WHERE bucket_id = {docs} AND seq = 100;"
    ))
    .unwrap();
    let err = restore_refused(&a, &work.path().join("r3"));
    assert!(
        err.contains("bucket acme/docs: commit 1 does not verify"),
        "{err}"
    );
    conn.execute_batch(&format!(
        "UPDATE commits SET seq = 100 WHERE bucket_id = {docs} AND seq = 1;
         UPDATE commits SET seq = 1 WHERE bucket_id = {docs} AND seq = 2;
         UPDATE commits SET seq = 2 WHERE bucket_id = {docs} AND seq = 100;"
    ))
    .unwrap();

    // A commit's counts changed.
    conn.execute(
        "UPDATE commits SET files = files + 1 WHERE bucket_id = ?1 AND seq = 2",
        [docs],
    )
    .unwrap();
    let err = restore_refused(&a, &work.path().join("r4"));
    assert!(err.contains("commit 2 does not verify"), "{err}");
    conn.execute(
        "UPDATE commits SET files = files - 1 WHERE bucket_id = ?1 AND seq = 2",
        [docs],
    )
    .unwrap();

    // Put back, every snapshot restores, and the next backup follows on.
    for (seq, text) in [(1, "round 1"), (3, "round 3")] {
        let to = work.path().join(format!("ok-{seq}"));
        let report = a.restore(&to, &["--snapshot", &seq.to_string()]);
        assert_eq!(report["seq"], seq);
        assert_eq!(std::fs::read_to_string(to.join("file.txt")).unwrap(), text);
    }
    let to = work.path().join("ok-b");
    b.restore(&to, &[]);
    assert_eq!(std::fs::read(to.join("b.txt")).unwrap(), b"bucket b");
    assert_eq!(a.backup()["seq"], 4);
    let listed = check(&a.agent(&["--json", "snapshots"]), "snapshots");
    assert!(
        listed.contains("\"seq\":4") || listed.contains("\"seq\": 4"),
        "{listed}"
    );
}

/// A journal from before commits were signed (its MACs NULL, as the
/// migration leaves them) is refused until the site accepts it with
/// `trust-history`; then it restores, the next backup signs on from it,
/// and a MAC stripped after it is refused.
#[test]
fn an_unsigned_history_is_used_once_trusted_and_no_further() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    for round in 1..=2 {
        std::fs::write(src.join("file.txt"), format!("round {round}")).unwrap();
        site.backup();
    }
    // As an upgrade finds them: no MACs, and an agent that knew no heads.
    let conn = catalog(&hub);
    conn.execute("UPDATE commits SET mac = NULL", []).unwrap();
    std::fs::remove_file(site.dir.join("state/heads.db")).unwrap();

    let err = restore_refused(&site, &work.path().join("r1"));
    assert!(err.contains("commit 1 carries no MAC"), "{err}");
    assert!(err.contains("trust-history"), "{err}");
    let err = refused(&site, &["backup"]);
    assert!(err.contains("trust-history"), "{err}");

    let out = check(&site.agent(&["trust-history"]), "trust-history");
    assert!(out.contains("up to 2"), "{out}");
    let to = work.path().join("r2");
    site.restore(&to, &["--snapshot", "1"]);
    assert_eq!(
        std::fs::read_to_string(to.join("file.txt")).unwrap(),
        "round 1"
    );
    std::fs::write(src.join("file.txt"), "round 3").unwrap();
    assert_eq!(site.backup()["seq"], 3);
    let to = work.path().join("r3");
    site.restore(&to, &[]);
    assert_eq!(
        std::fs::read_to_string(to.join("file.txt")).unwrap(),
        "round 3"
    );

    // The trust reaches commit 2, not past it.
    conn.execute("UPDATE commits SET mac = NULL WHERE seq = 3", [])
        .unwrap();
    let err = restore_refused(&site, &work.path().join("r4"));
    assert!(err.contains("commit 3 carries no MAC"), "{err}");
}
