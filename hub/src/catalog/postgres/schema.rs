//! The PostgreSQL schema and its migrations.

use postgres::Client;

use super::pg;
use crate::catalog::CatalogError;
use crate::catalog::error::pending_migrations;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
/// Append only: never edit a released entry.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE sites (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (tenant_id, name)
);

CREATE TABLE buckets (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    source_site_id BIGINT NOT NULL REFERENCES sites(id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE sessions (
    id          BIGSERIAL PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    bucket_id   BIGINT NOT NULL REFERENCES buckets(id),
    header_id   BYTEA NOT NULL,
    lease_until BIGINT NOT NULL,
    closed      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_live ON sessions (closed, lease_until);

CREATE TABLE packs (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pool TEXT NOT NULL,
    size BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

-- Session headers by number: every blob of a session names the same one.
CREATE TABLE headers (
    id        BIGSERIAL PRIMARY KEY,
    header_id BYTEA NOT NULL UNIQUE
);

-- Blobs are per tenant: the same id stored by two tenants is two rows.
CREATE TABLE blobs (
    tenant_id   BIGINT NOT NULL REFERENCES tenants(id),
    id          BYTEA NOT NULL,
    kind        SMALLINT NOT NULL,
    flags       SMALLINT NOT NULL,
    header      BIGINT NOT NULL REFERENCES headers(id),
    pack_id     BIGINT NOT NULL REFERENCES packs(id),
    pack_offset BIGINT NOT NULL,
    length      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- manifest: the referenced blob ids, 32 bytes each, concatenated.
CREATE TABLE commits (
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    seq       BIGINT NOT NULL,
    site_id   BIGINT NOT NULL REFERENCES sites(id),
    time_ms   BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    manifest  BYTEA NOT NULL,
    body      BYTEA NOT NULL,
    files     BIGINT NOT NULL,
    bytes     BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, seq)
);
CREATE INDEX commits_by_time ON commits (bucket_id, time_ms);
"#,
    // Version 2: a blob row's tenant and header are checked by `record_pack` in
    // the transaction that inserts them (the tenant looked up, the header row
    // written just before), and neither table ever loses a row; checking them
    // again per blob row was a third of a pack's recording time on PostgreSQL.
    // The pack key stays: it is what will stop a sweep deleting a pack in use.
    r#"
ALTER TABLE blobs DROP CONSTRAINT blobs_tenant_id_fkey;
ALTER TABLE blobs DROP CONSTRAINT blobs_header_fkey;
"#,
    // Version 3: a commit's MAC, from its agent (NULL for commits made before
    // commits were signed).
    r#"
ALTER TABLE commits ADD COLUMN mac BYTEA;
"#,
    // Version 4: a blob row is one site's copy (dedup is per site, see
    // catalog::BlobOwner); rows from before are of site 0, which every site of
    // the tenant trusts.
    r#"
ALTER TABLE blobs ADD COLUMN site_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs DROP CONSTRAINT blobs_pkey;
ALTER TABLE blobs ADD PRIMARY KEY (tenant_id, id, site_id);
ALTER TABLE blobs ALTER COLUMN site_id DROP DEFAULT;
"#,
    // Version 5: a copy a key holder found damaged: missing for every lookup,
    // replaced by the next copy recorded.
    r#"
ALTER TABLE blobs ADD COLUMN bad BOOLEAN NOT NULL DEFAULT FALSE;
"#,
    // Version 6: a copy a key holder verified (a signed report) counts for
    // every site of the tenant; the tenant's Ed25519 verifier public key
    // (NULL: none registered, so dedup stays per site).
    r#"
ALTER TABLE blobs ADD COLUMN verified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tenants ADD COLUMN verifier BYTEA;
"#,
    // Version 7: the blob ids each bucket's commits reference
    // (catalog::references), and the buckets with commits from before, whose
    // references the hub reads back from their segments. No foreign key on
    // the ids: the bucket is checked once per call, not once per id.
    r#"
CREATE TABLE bucket_references (
    bucket_id BIGINT NOT NULL,
    id        BYTEA NOT NULL,
    PRIMARY KEY (bucket_id, id)
);
CREATE TABLE reference_backfill (
    bucket_id BIGINT PRIMARY KEY REFERENCES buckets(id)
);
INSERT INTO reference_backfill SELECT DISTINCT bucket_id FROM commits;
-- The reference parts whose ids are recorded, so a part sent again (an
-- unchanged tree sends the same parts every snapshot) is not written again.
CREATE TABLE bucket_reference_parts (
    bucket_id BIGINT NOT NULL,
    hash      BYTEA NOT NULL,
    PRIMARY KEY (bucket_id, hash)
);
"#,
    // Version 8: the sites that keep a copy of a bucket and may read it,
    // besides its source.
    r#"
CREATE TABLE bucket_replicas (
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    site_id   BIGINT NOT NULL REFERENCES sites(id),
    PRIMARY KEY (bucket_id, site_id)
);
"#,
    // Version 9: how far each replica has applied each bucket's journal,
    // and when.
    r#"
CREATE TABLE replica_cursors (
    bucket_id  BIGINT NOT NULL REFERENCES buckets(id),
    site_id    BIGINT NOT NULL REFERENCES sites(id),
    seq        BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, site_id)
);
"#,
    // Version 10: a commit a replica holds back until an operator confirms
    // it (it would delete more of the replica's copy than allowed).
    r#"
CREATE TABLE replica_holds (
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    site_id   BIGINT NOT NULL REFERENCES sites(id),
    seq       BIGINT NOT NULL,
    deletes   BIGINT NOT NULL,
    entries   BIGINT NOT NULL,
    held_ms   BIGINT NOT NULL,
    confirmed BOOLEAN NOT NULL,
    PRIMARY KEY (bucket_id, site_id)
);
"#,
    // Version 11: what replicas report of their trouble (the last error,
    // the entries they gave up writing) and the buckets paused.
    r#"
CREATE TABLE replica_troubles (
    bucket_id  BIGINT NOT NULL REFERENCES buckets(id),
    site_id    BIGINT NOT NULL REFERENCES sites(id),
    error_seq  BIGINT NOT NULL DEFAULT 0,
    error      TEXT NOT NULL DEFAULT '',
    error_ms   BIGINT NOT NULL DEFAULT 0,
    dead_seq   BIGINT NOT NULL DEFAULT 0,
    dead_total BIGINT NOT NULL DEFAULT 0,
    replay     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (bucket_id, site_id)
);
CREATE TABLE replica_dead_letters (
    bucket_id BIGINT NOT NULL REFERENCES buckets(id),
    site_id   BIGINT NOT NULL REFERENCES sites(id),
    path      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    PRIMARY KEY (bucket_id, site_id, path)
);
CREATE TABLE replication_pauses (
    bucket_id  BIGINT PRIMARY KEY REFERENCES buckets(id),
    paused_ms  BIGINT NOT NULL,
    resumed_ms BIGINT NOT NULL
);
"#,
    // Version 12: every version of each tenant's policy files
    // (`policy apply`); the newest is in force.
    r#"
CREATE TABLE policy_versions (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id),
    version    BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE policy_files (
    tenant_id BIGINT NOT NULL,
    version   BIGINT NOT NULL,
    position  BIGINT NOT NULL,
    name      TEXT NOT NULL,
    text      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version, position),
    FOREIGN KEY (tenant_id, version) REFERENCES policy_versions (tenant_id, version)
);
"#,
];

/// A number no other application takes an advisory lock on: hubs starting
/// side by side against one database migrate one at a time.
const MIGRATION_LOCK: i64 = 0x0046_4552_5259_4d47; // "FERRYMG"

pub(super) fn migrate(client: &mut Client) -> Result<(), CatalogError> {
    let mut tx = client.transaction().map_err(pg("begin schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg("lock schema migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             version BIGINT NOT NULL
         );
         INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .map_err(pg("create schema_version"))?;
    let found: i64 = tx
        .query_one("SELECT version FROM schema_version WHERE id = 1", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg("read schema version"))?;
    let supported = MIGRATIONS.len() as i64;
    for sql_text in pending_migrations(found, MIGRATIONS)? {
        tx.batch_execute(sql_text).map_err(pg("migrate schema"))?;
    }
    tx.execute(
        "UPDATE schema_version SET version = $1 WHERE id = 1",
        &[&supported],
    )
    .map_err(pg("write schema version"))?;
    tx.commit().map_err(pg("commit schema migration"))
}
