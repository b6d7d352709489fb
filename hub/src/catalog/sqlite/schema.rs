//! The SQLite schema and its migrations.

use rusqlite::Connection;

use super::{sql, write_tx};
use crate::catalog::CatalogError;
use crate::catalog::error::pending_migrations;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
/// Append only: never edit a released entry.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE sites (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE buckets (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    source_site_id INTEGER NOT NULL REFERENCES sites(id),
    UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     INTEGER NOT NULL REFERENCES sites(id),
    bucket_id   INTEGER NOT NULL REFERENCES buckets(id),
    header_id   BLOB NOT NULL,
    lease_until INTEGER NOT NULL,
    closed      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_live ON sessions (closed, lease_until);

CREATE TABLE packs (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    pool TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;

-- Small fixed-size rows keyed by (tenant, blob id): WITHOUT ROWID saves an
-- index. Blobs are per tenant: the same id stored by two tenants is two rows,
-- and one tenant's lookups never see another's.
CREATE TABLE blobs (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          BLOB NOT NULL,
    kind        INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    header_id   BLOB NOT NULL,
    pack_id     INTEGER NOT NULL REFERENCES packs(id),
    pack_offset INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX blobs_by_pack ON blobs (pack_id);

-- manifest: the referenced blob ids, 32 bytes each, concatenated.
CREATE TABLE commits (
    bucket_id INTEGER NOT NULL REFERENCES buckets(id),
    seq       INTEGER NOT NULL,
    site_id   INTEGER NOT NULL REFERENCES sites(id),
    time_ms   INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    manifest  BLOB NOT NULL,
    body      BLOB NOT NULL,
    files     INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, seq)
) STRICT;
CREATE INDEX commits_by_time ON commits (bucket_id, time_ms);
"#,
    r#"
-- Session headers by number: every blob of a session names the same one,
-- and a 32-byte id on each row made the blob rows half again as large.
CREATE TABLE headers (
    id        INTEGER PRIMARY KEY,
    header_id BLOB NOT NULL UNIQUE
) STRICT;
INSERT INTO headers (header_id) SELECT DISTINCT header_id FROM blobs;

-- No index by pack: nothing looks blobs up by pack yet, and each index
-- costs every stored blob a second B-tree insert. What needs one adds it.
CREATE TABLE blobs_v2 (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          BLOB NOT NULL,
    kind        INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    header      INTEGER NOT NULL REFERENCES headers(id),
    pack_id     INTEGER NOT NULL REFERENCES packs(id),
    pack_offset INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT, WITHOUT ROWID;
INSERT INTO blobs_v2
    SELECT b.tenant_id, b.id, b.kind, b.flags, h.id, b.pack_id, b.pack_offset, b.length
    FROM blobs b JOIN headers h ON h.header_id = b.header_id;
DROP TABLE blobs;
ALTER TABLE blobs_v2 RENAME TO blobs;
"#,
    r#"
-- A revoked site's token is refused; the row stays, for its journal.
ALTER TABLE sites ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- A commit's MAC, from its agent (NULL for commits made before commits
-- were signed).
ALTER TABLE commits ADD COLUMN mac BLOB;
"#,
    r#"
-- A blob row is one site's copy (dedup is per site, see catalog::BlobOwner);
-- rows from before are of site 0, which every site of the tenant trusts.
CREATE TABLE blobs_v3 (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          BLOB NOT NULL,
    site_id     INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    header      INTEGER NOT NULL REFERENCES headers(id),
    pack_id     INTEGER NOT NULL REFERENCES packs(id),
    pack_offset INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id, site_id)
) STRICT, WITHOUT ROWID;
INSERT INTO blobs_v3
    SELECT tenant_id, id, 0, kind, flags, header, pack_id, pack_offset, length FROM blobs;
DROP TABLE blobs;
ALTER TABLE blobs_v3 RENAME TO blobs;
"#,
    r#"
-- A copy a key holder found damaged: missing for every lookup, replaced by
-- the next copy recorded.
ALTER TABLE blobs ADD COLUMN bad INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- A copy a key holder verified (a signed report): it counts for every site
-- of the tenant, not just the one that uploaded it.
ALTER TABLE blobs ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
-- The tenant's Ed25519 verifier public key; NULL: none registered, so
-- dedup stays per site.
ALTER TABLE tenants ADD COLUMN verifier BLOB;
"#,
    r#"
-- The blob ids each bucket's commits reference (catalog::references): a site
-- reads through a bucket only these. No foreign key: the bucket is checked
-- once per call, not once per id.
CREATE TABLE bucket_references (
    bucket_id INTEGER NOT NULL,
    id        BLOB NOT NULL,
    PRIMARY KEY (bucket_id, id)
) STRICT, WITHOUT ROWID;
-- Buckets with commits from before references were recorded: the hub reads
-- their references back from their segments, then deletes the row.
CREATE TABLE reference_backfill (
    bucket_id INTEGER PRIMARY KEY REFERENCES buckets(id)
) STRICT;
INSERT INTO reference_backfill SELECT DISTINCT bucket_id FROM commits;
-- The reference parts whose ids are recorded, so a part sent again (an
-- unchanged tree sends the same parts every snapshot) is not written again.
CREATE TABLE bucket_reference_parts (
    bucket_id INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (bucket_id, hash)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- The sites that keep a copy of a bucket and may read it, besides its source.
CREATE TABLE bucket_replicas (
    bucket_id INTEGER NOT NULL REFERENCES buckets(id),
    site_id   INTEGER NOT NULL REFERENCES sites(id),
    PRIMARY KEY (bucket_id, site_id)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- How far each replica has applied each bucket's journal, and when.
CREATE TABLE replica_cursors (
    bucket_id  INTEGER NOT NULL REFERENCES buckets(id),
    site_id    INTEGER NOT NULL REFERENCES sites(id),
    seq        INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, site_id)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- A commit a replica holds back until an operator confirms it (it would
-- delete more of the replica's copy than allowed): one per replica.
CREATE TABLE replica_holds (
    bucket_id INTEGER NOT NULL REFERENCES buckets(id),
    site_id   INTEGER NOT NULL REFERENCES sites(id),
    seq       INTEGER NOT NULL,
    deletes   INTEGER NOT NULL,
    entries   INTEGER NOT NULL,
    held_ms   INTEGER NOT NULL,
    confirmed INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, site_id)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- What replicas report of their trouble: the last error (seq 0: none), and
-- the commit whose entries they gave up writing (dead_seq 0: none), those
-- entries listed in replica_dead_letters.
CREATE TABLE replica_troubles (
    bucket_id  INTEGER NOT NULL REFERENCES buckets(id),
    site_id    INTEGER NOT NULL REFERENCES sites(id),
    error_seq  INTEGER NOT NULL DEFAULT 0,
    error      TEXT NOT NULL DEFAULT '',
    error_ms   INTEGER NOT NULL DEFAULT 0,
    dead_seq   INTEGER NOT NULL DEFAULT 0,
    dead_total INTEGER NOT NULL DEFAULT 0,
    replay     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_id, site_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE replica_dead_letters (
    bucket_id INTEGER NOT NULL REFERENCES buckets(id),
    site_id   INTEGER NOT NULL REFERENCES sites(id),
    path      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    PRIMARY KEY (bucket_id, site_id, path)
) STRICT, WITHOUT ROWID;
-- Buckets whose replication an operator paused, and since when.
-- (paused_ms 0: not paused; resumed_ms 0: never resumed.)
CREATE TABLE replication_pauses (
    bucket_id  INTEGER PRIMARY KEY REFERENCES buckets(id),
    paused_ms  INTEGER NOT NULL,
    resumed_ms INTEGER NOT NULL
) STRICT;
"#,
    // Version 13: every version of each tenant's policy files
    // (`policy apply`); the newest is in force.
    r#"
CREATE TABLE policy_versions (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id),
    version    INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
) STRICT, WITHOUT ROWID;
CREATE TABLE policy_files (
    tenant_id INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    name      TEXT NOT NULL,
    text      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version, position),
    FOREIGN KEY (tenant_id, version) REFERENCES policy_versions (tenant_id, version)
) STRICT, WITHOUT ROWID;
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
    let tx = write_tx(conn)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         ) STRICT;
         INSERT OR IGNORE INTO schema_version (id, version) VALUES (1, 0);",
    )
    .map_err(sql("create schema_version"))?;
    let found: i64 = tx
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(sql("read schema version"))?;
    let supported = MIGRATIONS.len() as i64;
    for sql_text in pending_migrations(found, MIGRATIONS)? {
        tx.execute_batch(sql_text).map_err(sql("migrate schema"))?;
    }
    tx.execute(
        "UPDATE schema_version SET version = ?1 WHERE id = 1",
        [supported],
    )
    .map_err(sql("write schema version"))?;
    tx.commit().map_err(sql("commit schema migration"))
}
