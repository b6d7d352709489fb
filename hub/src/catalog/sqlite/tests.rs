//! SQLite-specific checks beside the shared conformance suite.

use std::sync::Arc;

use ferry_proto::BlobId;
use rusqlite::params;

use super::blobs::header_number;
use super::schema::MIGRATIONS;
use super::*;
use crate::catalog::{BlobIndex, BlobOwner, CatalogExt, SiteId, TenantId, conformance};

#[test]
fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(dir.path().join("catalog.db")).unwrap();
    conformance::run_all(&cat);
}

#[test]
fn conformance_suite_via_arc_dyn() {
    let dir = tempfile::tempdir().unwrap();
    let cat: Arc<dyn Catalog> =
        Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
    conformance::run_all(cat.as_ref());
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let before = {
        let cat = SqliteCatalog::open(&path).unwrap();
        conformance::populate(&cat)
    };
    let cat = SqliteCatalog::open(&path).unwrap();
    conformance::check_populated(&cat, &before);
}

#[test]
fn pragmas_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(dir.path().join("catalog.db")).unwrap();
    let conn = cat.conn();
    let get = |p: &str| -> i64 { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
    assert_eq!(get("synchronous"), 2, "FULL");
    assert_eq!(get("foreign_keys"), 1);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(get("wal_autocheckpoint"), WAL_CHECKPOINT_PAGES);
    assert_eq!(get("journal_size_limit"), WAL_SIZE_LIMIT);
}

#[test]
fn lookups_do_not_wait_for_a_write_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
    let (tenant, site, _) = conformance::namespace(&*cat);
    let owner = BlobOwner { tenant, site };
    let stored = BlobId(rand::random());
    conformance::store_blobs(&*cat, owner, &[stored]);
    let pending = BlobId(rand::random());
    let (record, entries) = conformance::fake_pack(owner, &[pending]);

    // A pack being recorded: the writer's lock held, its insert not committed.
    let mut conn = cat.conn();
    let tx = write_tx(&mut conn).unwrap();
    tx.execute(
        "INSERT INTO packs (name, pool, size, hash) VALUES (?1, ?2, ?3, ?4)",
        params![
            record.name,
            record.pool,
            record.size as i64,
            &record.hash[..]
        ],
    )
    .unwrap();
    let pack_id = tx.last_insert_rowid();
    let e = &entries[0].1;
    let header = header_number(&tx, &e.header_id).unwrap();
    tx.execute(
        "INSERT INTO blobs (tenant_id, id, site_id, kind, flags, header, pack_id, pack_offset, length) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            tenant.0,
            &pending.0[..],
            site.0,
            e.kind as u8,
            e.flags,
            header,
            pack_id,
            e.offset as i64,
            e.length
        ],
    )
    .unwrap();

    let lookup = {
        let cat = cat.clone();
        std::thread::spawn(move || cat.missing_blobs(owner, &[stored, pending]).unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lookup.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(lookup.is_finished(), "the lookup waited for the writer");
    // It saw the last committed state: the pending blob is still missing.
    assert_eq!(lookup.join().unwrap(), vec![pending]);

    tx.commit().unwrap();
    drop(conn);
    assert!(
        cat.missing_blobs(owner, &[stored, pending])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_wal_stays_small_however_much_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = SqliteCatalog::open(&path).unwrap();
    let (tenant, site, _) = conformance::namespace(&cat);
    let owner = BlobOwner { tenant, site };
    // 40,000 blob rows in 400 packs: each pack's transaction logs the
    // pages it touched, tens of megabytes of log in all.
    for _ in 0..400 {
        let ids: Vec<BlobId> = (0..100).map(|_| BlobId(rand::random())).collect();
        conformance::store_blobs(&cat, owner, &ids);
    }
    let wal = std::fs::metadata(dir.path().join("catalog.db-wal"))
        .unwrap()
        .len();
    // A checkpoint's worth, plus at most one pack's transaction past it.
    assert!(wal <= 2 * WAL_SIZE_LIMIT as u64, "WAL is {wal} bytes");
    let db = std::fs::metadata(&path).unwrap().len();
    // Checkpoints moved the rows into the database: 32 bytes of id each.
    assert!(db > 40_000 * 32, "rows reached the database: {db} bytes");
}

#[test]
fn a_first_version_catalog_is_migrated_with_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    // A catalog as the first schema left it: blob rows carry their
    // session header's id themselves.
    let (header_a, header_b) = (BlobId([0xa; 32]), BlobId([0xb; 32]));
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT;
             INSERT INTO schema_version VALUES (1, 1);
             INSERT INTO tenants (name) VALUES ('t');
             INSERT INTO packs (name, pool, size, hash) VALUES ('p1', 'main', 300, x'00');",
        )
        .unwrap();
        for (i, header) in [header_a, header_a, header_b].iter().enumerate() {
            conn.execute(
                "INSERT INTO blobs (tenant_id, id, kind, flags, header_id, pack_id, pack_offset, length) \
                 VALUES (1, ?1, 1, 1, ?2, 1, ?3, 100)",
                params![&[i as u8; 32][..], &header.0[..], i as i64 * 100],
            )
            .unwrap();
        }
    }
    let cat = SqliteCatalog::open(&path).unwrap();
    // Rows from before copies were per site are of no known site.
    let legacy = BlobOwner {
        tenant: TenantId(1),
        site: SiteId::UNKNOWN,
    };
    let ids: Vec<BlobId> = (0..3u8).map(|i| BlobId([i; 32])).collect();
    let found = cat.blob_locations(legacy, &ids).unwrap();
    let seen: Vec<_> = found
        .iter()
        .map(|l| (l.id, l.header_id, l.offset, l.flags, l.pack.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ids[0], header_a, 0, 1, "p1"),
            (ids[1], header_a, 100, 1, "p1"),
            (ids[2], header_b, 200, 1, "p1"),
        ]
    );
    let headers: i64 = cat
        .conn()
        .query_row("SELECT COUNT(*) FROM headers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(headers, 2, "one row per distinct session header");
    // And new packs go on being recorded beside the migrated rows.
    let more = [BlobId([9; 32])];
    conformance::store_blobs(&cat, legacy, &more);
    assert!(cat.missing_blobs(legacy, &more).unwrap().is_empty());
}

/// Buckets with commits from before the reference index are left for the
/// backfill; those without are indexed (there is nothing to read back).
#[test]
fn an_upgrade_leaves_buckets_with_commits_to_the_reference_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let (with, without) = {
        let cat = SqliteCatalog::open(&path).unwrap();
        let (tenant, site, with) = conformance::namespace(&cat);
        let without = cat
            .write(|w| w.create_bucket(tenant, "empty", site))
            .unwrap();
        cat.write(|w| w.append_commit(with, &conformance::new_commit(site, 1, vec![])))
            .unwrap();
        (with, without)
    };
    // Back to the schema before the index.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE policy_files; DROP TABLE policy_versions; DROP TABLE replication_pauses; DROP TABLE replica_dead_letters; DROP TABLE replica_troubles;
         DROP TABLE replica_holds; DROP TABLE replica_cursors; DROP TABLE bucket_replicas; DROP TABLE bucket_references;
         DROP TABLE reference_backfill;
         DROP TABLE bucket_reference_parts;
         UPDATE schema_version SET version = 7;",
    )
    .unwrap();
    drop(conn);
    let cat = SqliteCatalog::open(&path).unwrap();
    assert_eq!(cat.read(|r| r.unindexed_buckets()).unwrap(), [with]);
    let id = BlobId([3; 32]);
    assert_eq!(
        cat.read(|r| r.referenced(with, &[id])).unwrap(),
        crate::catalog::Referenced::Unindexed
    );
    assert!(
        !cat.read(|r| r.referenced(without, &[id]))
            .unwrap()
            .allows(&id)
    );
    cat.write(|w| w.mark_references_indexed(with)).unwrap();
    assert!(cat.read(|r| r.unindexed_buckets()).unwrap().is_empty());
    assert!(!cat.read(|r| r.referenced(with, &[id])).unwrap().allows(&id));
}

#[test]
fn a_committed_snapshot_leaves_the_log_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = SqliteCatalog::open(&path).unwrap();
    let (tenant, site, bucket) = conformance::namespace(&cat);
    let owner = BlobOwner { tenant, site };
    let ids: Vec<BlobId> = (0..2000).map(|_| BlobId(rand::random())).collect();
    conformance::store_blobs(&cat, owner, &ids);
    let wal = || {
        std::fs::metadata(dir.path().join("catalog.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    assert!(wal() > 0, "the pack's rows are in the log");
    cat.write(|w| w.append_commit(bucket, &conformance::new_commit(site, 1, ids.clone())))
        .unwrap();
    assert_eq!(wal(), 0);
    // Everything is still there, read through a fresh connection.
    drop(cat);
    let cat = SqliteCatalog::open(&path).unwrap();
    assert!(cat.missing_blobs(owner, &ids).unwrap().is_empty());
    assert_eq!(cat.read(|r| r.commits(bucket, 0, 10)).unwrap().len(), 1);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    drop(SqliteCatalog::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = version + 1", [])
        .unwrap();
    let err = SqliteCatalog::open(&path).unwrap_err();
    assert!(matches!(err, CatalogError::SchemaTooNew { .. }), "{err:?}");
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let cat = SqliteCatalog::open(&path).unwrap();
    let populated = conformance::populate(&cat);
    let bucket = populated.bucket;
    cat.conn()
        .execute("UPDATE commits SET manifest = x'0102', kind = 'bogus'", [])
        .unwrap();
    let err = cat.read(|r| r.commits(bucket, 0, 10)).unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err:?}");
    cat.conn()
        .execute("UPDATE headers SET header_id = x'00'", [])
        .unwrap();
    let ids: Vec<BlobId> = {
        let conn = cat.conn();
        let mut stmt = conn.prepare("SELECT id FROM blobs").unwrap();
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|r| BlobId::from_slice("t", &r.unwrap()).unwrap())
            .collect()
    };
    let err = cat
        .blob_locations(populated.entries[0].0, &ids)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Corrupt {
                what: "headers.header_id",
                ..
            }
        ),
        "{err:?}"
    );
}
