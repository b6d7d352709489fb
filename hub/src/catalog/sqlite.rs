//! The embedded catalog: one SQLite file in WAL mode.
//!
//! One connection behind a mutex: SQLite allows one writer at a time anyway,
//! and the hub's catalog work is short index lookups. Writes run in
//! `BEGIN IMMEDIATE` transactions, so they also serialise correctly against
//! other processes (e.g. the CLI) opening the same file. `synchronous=FULL`
//! makes a committed transaction durable, which the hub's acknowledgements
//! rely on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use ferry_proto::{BlobId, BlobKind, ID_LEN};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    BlobLocation, Bucket, BucketId, Catalog, CatalogError, Commit, CommitKind, NewCommit,
    PackEntry, PackRecord, Session, SessionId, Site, SiteId, Tenant, TenantId, validate_name,
};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
/// Append only: never edit a released entry.
const MIGRATIONS: &[&str] = &[
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
];

/// Page cache per connection (negative: KiB), 16 MiB.
const CACHE_SIZE: i64 = -16384;
/// Log pages (4 KiB each) after which a commit checkpoints the WAL: about
/// SQLite's default. Blob ids are random, so each pack's rows touch pages
/// all over the table; checkpointing every 1 MiB instead wrote the same
/// pages out again and again (4 % of the hub's CPU on 50,000 small files).
const WAL_CHECKPOINT_PAGES: i64 = 1024;
/// Bytes the WAL file is cut back to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// A [`Catalog`] in a SQLite database file.
///
/// Writes go through `conn`; lookups that only read (the dedup query, blob
/// locations, authentication) go through one of `readers`, so in WAL mode
/// they never wait behind a pack's insert and its fsync.
#[derive(Debug)]
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
    /// One per core of the machine this is built for: two lookups run side
    /// by side, and a long reference check is split across both.
    readers: [Mutex<Connection>; READERS],
    path: PathBuf,
}

const READERS: usize = 2;

/// A reference check of at least this many ids is split across the
/// readers: below it, a thread costs more than it saves.
const SPLIT_CHECK_FROM: usize = 8192;

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog at `path` and brings its schema
    /// up to date.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Open`] if the file cannot be opened or configured,
    /// [`CatalogError::SchemaTooNew`] if a newer hub wrote it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CatalogError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| CatalogError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CatalogError::Invalid {
                field: "catalog journal_mode",
                reason: format!(
                    "{}: SQLite kept journal_mode {mode:?}, not WAL",
                    path.display()
                ),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Blob ids are random, so every pack's inserts touch pages all over
        // the blob index: keep the hot part of it in memory (16 MiB).
        conn.pragma_update(None, "cache_size", CACHE_SIZE)
            .map_err(open_err)?;
        // Checkpoint every 1 MiB of log (SQLite's default is 4 MiB) and cut
        // the log file back to that size afterwards, so the WAL beside the
        // catalog stays small on disk instead of keeping its high-water mark.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(open_err)?;
        migrate(&mut conn)?;
        // Opened after the migration, so they never see an old schema.
        let open_reader = || {
            let reader = Connection::open(&path)?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            reader.pragma_update(None, "query_only", true)?;
            reader.pragma_update(None, "cache_size", CACHE_SIZE)?;
            Ok(Mutex::new(reader))
        };
        let readers = [
            open_reader().map_err(open_err)?,
            open_reader().map_err(open_err)?,
        ];
        Ok(Self {
            conn: Mutex::new(conn),
            readers,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back on
        // unwind (Transaction's Drop), so the connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read-only connection, the first one free (else the first one, once
    /// free). Each statement (or read transaction) on it sees every write
    /// committed before it began.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.readers[0]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`missing_ids`] in one read transaction.
    fn missing_in_one_snapshot(
        &self,
        tenant: TenantId,
        ids: &[BlobId],
    ) -> Result<Vec<BlobId>, CatalogError> {
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        missing_ids(&tx, tenant, ids)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
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
    if found > supported {
        return Err(CatalogError::SchemaTooNew { found, supported });
    }
    let from = usize::try_from(found).map_err(|_| CatalogError::Corrupt {
        what: "schema_version",
        detail: format!("negative version {found}"),
    })?;
    for sql_text in &MIGRATIONS[from..] {
        tx.execute_batch(sql_text).map_err(sql("migrate schema"))?;
    }
    tx.execute(
        "UPDATE schema_version SET version = ?1 WHERE id = 1",
        [supported],
    )
    .map_err(sql("write schema version"))?;
    tx.commit().map_err(sql("commit schema migration"))
}

/// Starts a write transaction that takes the write lock up front, so the
/// reads inside it (uniqueness checks, the next sequence number) cannot race
/// another writer.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, CatalogError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin write transaction"))
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError {
    move |source| CatalogError::Sqlite { op, source }
}

fn to_i64(field: &'static str, value: u64) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::Invalid {
        field,
        reason: format!("{value} exceeds the catalog's limit of {}", i64::MAX),
    })
}

fn from_i64<T: TryFrom<i64>>(what: &'static str, value: i64) -> Result<T, CatalogError> {
    T::try_from(value).map_err(|_| CatalogError::Corrupt {
        what,
        detail: format!("stored value {value} out of range"),
    })
}

fn blob_id(what: &'static str, bytes: &[u8]) -> Result<BlobId, CatalogError> {
    BlobId::from_slice(what, bytes).map_err(|e| CatalogError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn manifest_bytes(ids: &[BlobId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

fn manifest_ids(bytes: &[u8]) -> Result<Vec<BlobId>, CatalogError> {
    let chunks = bytes.chunks_exact(ID_LEN);
    if !chunks.remainder().is_empty() {
        return Err(CatalogError::Corrupt {
            what: "commits.manifest",
            detail: format!("{} bytes is not a whole number of ids", bytes.len()),
        });
    }
    chunks.map(|c| blob_id("commits.manifest", c)).collect()
}

/// `<select> IN (?, ?, ...)` over `ids` in batches, handing each row to
/// `row_fn`. `select` ends in `WHERE <tenant column> = ? AND <id column>`: the
/// first parameter is `tenant`, the rest a batch of ids.
fn for_each_found(
    conn: &Connection,
    op: &'static str,
    select: &str,
    tenant: TenantId,
    ids: &[BlobId],
    mut row_fn: impl FnMut(&rusqlite::Row<'_>) -> Result<(), CatalogError>,
) -> Result<(), CatalogError> {
    // One point lookup per id: about a third cheaper than `IN (...)` lists,
    // which SQLite first copies into a temporary index.
    let mut stmt = conn
        .prepare_cached(&format!("{select} = ?2"))
        .map_err(sql(op))?;
    for id in ids {
        let mut rows = stmt.query(params![tenant.0, &id.0[..]]).map_err(sql(op))?;
        if let Some(row) = rows.next().map_err(sql(op))? {
            row_fn(row)?;
        }
    }
    Ok(())
}

/// Moves the log into the database and empties it, so that between backups
/// the catalog is one file, no larger than its rows. Skipped (until the
/// next snapshot) while a reader still uses the log: writers must not wait
/// on a long read for it.
fn fold_wal(conn: &Connection) {
    let folded = conn.busy_timeout(Duration::ZERO).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
    });
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!(error = %e, "catalog: cannot restore the busy timeout");
    }
    match folded {
        Ok(0) => {}
        Ok(_) => {
            tracing::debug!("catalog: a reader holds the log; it is folded after a later snapshot")
        }
        Err(e) => tracing::warn!(error = %e, "catalog: folding the log failed"),
    }
}

/// The number of a session header in `headers`, added if new.
fn header_number(conn: &Connection, header_id: &BlobId) -> Result<i64, CatalogError> {
    conn.prepare_cached(
        "INSERT INTO headers (header_id) VALUES (?1) \
         ON CONFLICT (header_id) DO UPDATE SET header_id = excluded.header_id RETURNING id",
    )
    .and_then(|mut stmt| stmt.query_row([&header_id.0[..]], |r| r.get(0)))
    .map_err(sql("record session header"))
}

/// The ids among `ids` that `tenant` has not stored, in order, each once.
/// One point lookup per id that only asks whether the row exists: a commit
/// checks every id it references, nearly all of them stored, so nothing is
/// read, allocated or hashed for an id that is found.
fn missing_ids(
    conn: &Connection,
    tenant: TenantId,
    ids: &[BlobId],
) -> Result<Vec<BlobId>, CatalogError> {
    let mut stmt = conn
        .prepare_cached("SELECT 1 FROM blobs WHERE tenant_id = ?1 AND id = ?2")
        .map_err(sql("look up blobs"))?;
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for id in ids {
        let stored = stmt
            .exists(params![tenant.0, &id.0[..]])
            .map_err(sql("look up blobs"))?;
        if !stored && seen.insert(*id) {
            missing.push(*id);
        }
    }
    Ok(missing)
}

const SITE_COLUMNS: &str = "id, tenant_id, name";
const BUCKET_COLUMNS: &str = "id, tenant_id, name, source_site_id";
const COMMIT_COLUMNS: &str = "seq, site_id, time_ms, kind, manifest, body, files, bytes";

fn site_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Site> {
    Ok(Site {
        id: SiteId(row.get(0)?),
        tenant: TenantId(row.get(1)?),
        name: row.get(2)?,
    })
}

fn bucket_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        id: BucketId(row.get(0)?),
        tenant: TenantId(row.get(1)?),
        name: row.get(2)?,
        source_site: SiteId(row.get(3)?),
    })
}

/// A commit row as stored, before its values are checked.
struct RawCommit {
    seq: i64,
    site: i64,
    time_ms: i64,
    kind: String,
    manifest: Vec<u8>,
    body: Vec<u8>,
    files: i64,
    bytes: i64,
}

fn raw_commit_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCommit> {
    Ok(RawCommit {
        seq: row.get(0)?,
        site: row.get(1)?,
        time_ms: row.get(2)?,
        kind: row.get(3)?,
        manifest: row.get(4)?,
        body: row.get(5)?,
        files: row.get(6)?,
        bytes: row.get(7)?,
    })
}

impl RawCommit {
    fn decode(self) -> Result<Commit, CatalogError> {
        Ok(Commit {
            seq: from_i64("commits.seq", self.seq)?,
            site: SiteId(self.site),
            time_unix_ms: self.time_ms,
            kind: CommitKind::parse(&self.kind).ok_or_else(|| CatalogError::Corrupt {
                what: "commits.kind",
                detail: format!("unknown kind {:?}", self.kind),
            })?,
            manifest: manifest_ids(&self.manifest)?,
            body: self.body,
            files: from_i64("commits.files", self.files)?,
            bytes: from_i64("commits.bytes", self.bytes)?,
        })
    }
}

fn query_commits(
    conn: &Connection,
    op: &'static str,
    where_clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Commit>, CatalogError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COMMIT_COLUMNS} FROM commits WHERE {where_clause}"
        ))
        .map_err(sql(op))?;
    let raws = stmt
        .query_map(params, raw_commit_row)
        .map_err(sql(op))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql(op))?;
    raws.into_iter().map(RawCommit::decode).collect()
}

/// `Ok` if tenant `id` exists, else NotFound.
fn tenant_exists(tx: &Connection, id: TenantId) -> Result<(), CatalogError> {
    tx.query_row("SELECT 1 FROM tenants WHERE id = ?1", [id.0], |_| Ok(()))
        .optional()
        .map_err(sql("look up tenant"))?
        .ok_or_else(|| CatalogError::NotFound {
            what: "tenant",
            key: id.to_string(),
        })
}

/// The tenant of site `id`, or NotFound.
fn site_tenant(tx: &Connection, id: SiteId) -> Result<TenantId, CatalogError> {
    tx.query_row("SELECT tenant_id FROM sites WHERE id = ?1", [id.0], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql("look up site"))?
    .map(TenantId)
    .ok_or_else(|| CatalogError::NotFound {
        what: "site",
        key: id.to_string(),
    })
}

/// The tenant of bucket `id`, or NotFound.
fn bucket_tenant(tx: &Connection, id: BucketId) -> Result<TenantId, CatalogError> {
    tx.query_row("SELECT tenant_id FROM buckets WHERE id = ?1", [id.0], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql("look up bucket"))?
    .map(TenantId)
    .ok_or_else(|| CatalogError::NotFound {
        what: "bucket",
        key: id.to_string(),
    })
}

fn check_pack_record(
    pack: &PackRecord,
    entries: &[(TenantId, PackEntry)],
) -> Result<i64, CatalogError> {
    if pack.name != hex::encode(pack.hash) {
        return Err(CatalogError::Invalid {
            field: "pack.name",
            reason: format!("{:?} is not the hex of the pack hash", pack.name),
        });
    }
    validate_name("pack.pool", &pack.pool)?;
    let size = to_i64("pack.size", pack.size)?;
    for (_, e) in entries {
        if e.offset
            .checked_add(u64::from(e.length))
            .is_none_or(|end| end > pack.size)
        {
            return Err(CatalogError::Invalid {
                field: "pack entry",
                reason: format!(
                    "blob {} at {}+{} lies outside pack {} of {} bytes",
                    e.id, e.offset, e.length, pack.name, pack.size
                ),
            });
        }
    }
    Ok(size)
}

impl Catalog for SqliteCatalog {
    fn create_tenant(&self, name: &str) -> Result<TenantId, CatalogError> {
        validate_name("tenant.name", name)?;
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let exists = tx
            .query_row("SELECT 1 FROM tenants WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map_err(sql("look up tenant"))?;
        if exists.is_some() {
            return Err(CatalogError::AlreadyExists {
                what: "tenant",
                name: name.to_owned(),
            });
        }
        tx.execute("INSERT INTO tenants (name) VALUES (?1)", [name])
            .map_err(sql("insert tenant"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql("commit tenant"))?;
        Ok(TenantId(id))
    }

    fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, CatalogError> {
        self.reader()
            .query_row(
                "SELECT id, name FROM tenants WHERE name = ?1",
                [name],
                |r| {
                    Ok(Tenant {
                        id: TenantId(r.get(0)?),
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql("look up tenant"))
    }

    fn create_site(
        &self,
        tenant: TenantId,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, CatalogError> {
        validate_name("site.name", name)?;
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        tenant_exists(&tx, tenant)?;
        let name_taken = tx
            .query_row(
                "SELECT 1 FROM sites WHERE tenant_id = ?1 AND name = ?2",
                params![tenant.0, name],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql("look up site"))?;
        if name_taken.is_some() {
            return Err(CatalogError::AlreadyExists {
                what: "site",
                name: name.to_owned(),
            });
        }
        let token_taken = tx
            .query_row(
                "SELECT 1 FROM sites WHERE token_hash = ?1",
                [&token_hash[..]],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql("look up site token"))?;
        if token_taken.is_some() {
            // Never echo the hash: name the site that was being created.
            return Err(CatalogError::AlreadyExists {
                what: "token for site",
                name: name.to_owned(),
            });
        }
        tx.execute(
            "INSERT INTO sites (tenant_id, name, token_hash) VALUES (?1, ?2, ?3)",
            params![tenant.0, name, &token_hash[..]],
        )
        .map_err(sql("insert site"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql("commit site"))?;
        Ok(SiteId(id))
    }

    fn site_by_token_hash(&self, token_hash: &[u8; 32]) -> Result<Option<Site>, CatalogError> {
        self.reader()
            .query_row(
                &format!("SELECT {SITE_COLUMNS} FROM sites WHERE token_hash = ?1"),
                [&token_hash[..]],
                site_row,
            )
            .optional()
            .map_err(sql("look up site by token"))
    }

    fn site(&self, id: SiteId) -> Result<Option<Site>, CatalogError> {
        self.reader()
            .query_row(
                &format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?1"),
                [id.0],
                site_row,
            )
            .optional()
            .map_err(sql("look up site"))
    }

    fn list_sites(&self, tenant: TenantId) -> Result<Vec<Site>, CatalogError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM sites WHERE tenant_id = ?1 ORDER BY name"
            ))
            .map_err(sql("list sites"))?;
        stmt.query_map([tenant.0], site_row)
            .map_err(sql("list sites"))?
            .collect::<Result<_, _>>()
            .map_err(sql("list sites"))
    }

    fn create_bucket(
        &self,
        tenant: TenantId,
        name: &str,
        source_site: SiteId,
    ) -> Result<BucketId, CatalogError> {
        validate_name("bucket.name", name)?;
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        tenant_exists(&tx, tenant)?;
        if site_tenant(&tx, source_site)? != tenant {
            return Err(CatalogError::Invalid {
                field: "bucket.source_site",
                reason: format!("site {source_site} belongs to another tenant"),
            });
        }
        let name_taken = tx
            .query_row(
                "SELECT 1 FROM buckets WHERE tenant_id = ?1 AND name = ?2",
                params![tenant.0, name],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql("look up bucket"))?;
        if name_taken.is_some() {
            return Err(CatalogError::AlreadyExists {
                what: "bucket",
                name: name.to_owned(),
            });
        }
        tx.execute(
            "INSERT INTO buckets (tenant_id, name, source_site_id) VALUES (?1, ?2, ?3)",
            params![tenant.0, name, source_site.0],
        )
        .map_err(sql("insert bucket"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql("commit bucket"))?;
        Ok(BucketId(id))
    }

    fn bucket_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Bucket>, CatalogError> {
        self.reader()
            .query_row(
                &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = ?1 AND name = ?2"),
                params![tenant.0, name],
                bucket_row,
            )
            .optional()
            .map_err(sql("look up bucket"))
    }

    fn bucket(&self, id: BucketId) -> Result<Option<Bucket>, CatalogError> {
        self.reader()
            .query_row(
                &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE id = ?1"),
                [id.0],
                bucket_row,
            )
            .optional()
            .map_err(sql("look up bucket"))
    }

    fn list_buckets(&self, tenant: TenantId) -> Result<Vec<Bucket>, CatalogError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = ?1 ORDER BY name"
            ))
            .map_err(sql("list buckets"))?;
        stmt.query_map([tenant.0], bucket_row)
            .map_err(sql("list buckets"))?
            .collect::<Result<_, _>>()
            .map_err(sql("list buckets"))
    }

    fn open_session(
        &self,
        site: SiteId,
        bucket: BucketId,
        header_id: &BlobId,
        lease_until_unix: i64,
    ) -> Result<SessionId, CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        if site_tenant(&tx, site)? != bucket_tenant(&tx, bucket)? {
            return Err(CatalogError::Invalid {
                field: "session.site",
                reason: format!("site {site} and bucket {bucket} belong to different tenants"),
            });
        }
        tx.execute(
            "INSERT INTO sessions (site_id, bucket_id, header_id, lease_until) VALUES (?1, ?2, ?3, ?4)",
            params![site.0, bucket.0, &header_id.0[..], lease_until_unix],
        )
        .map_err(sql("insert session"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql("commit session"))?;
        Ok(SessionId(id))
    }

    fn session(&self, id: SessionId) -> Result<Option<Session>, CatalogError> {
        let raw = self
            .reader()
            .query_row(
                "SELECT site_id, bucket_id, header_id, lease_until, closed FROM sessions WHERE id = ?1",
                [id.0],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("look up session"))?;
        raw.map(|(site, bucket, header, lease, closed)| {
            Ok(Session {
                id,
                site: SiteId(site),
                bucket: BucketId(bucket),
                header_id: blob_id("sessions.header_id", &header)?,
                lease_until_unix: lease,
                closed: closed != 0,
            })
        })
        .transpose()
    }

    fn renew_session(&self, id: SessionId, lease_until_unix: i64) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let closed: Option<i64> = tx
            .query_row("SELECT closed FROM sessions WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("look up session"))?;
        match closed {
            None => {
                return Err(CatalogError::NotFound {
                    what: "session",
                    key: id.to_string(),
                });
            }
            Some(c) if c != 0 => {
                return Err(CatalogError::Conflict {
                    what: "session",
                    key: id.to_string(),
                    reason: "closed; open a new session".to_owned(),
                });
            }
            Some(_) => {}
        }
        tx.execute(
            "UPDATE sessions SET lease_until = MAX(lease_until, ?2) WHERE id = ?1",
            params![id.0, lease_until_unix],
        )
        .map_err(sql("renew session"))?;
        tx.commit().map_err(sql("commit session renewal"))
    }

    fn close_session(&self, id: SessionId) -> Result<(), CatalogError> {
        let changed = self
            .conn()
            .execute("UPDATE sessions SET closed = 1 WHERE id = ?1", [id.0])
            .map_err(sql("close session"))?;
        if changed == 0 {
            return Err(CatalogError::NotFound {
                what: "session",
                key: id.to_string(),
            });
        }
        Ok(())
    }

    fn missing_blobs(&self, tenant: TenantId, ids: &[BlobId]) -> Result<Vec<BlobId>, CatalogError> {
        if ids.len() < SPLIT_CHECK_FROM {
            return self.missing_in_one_snapshot(tenant, ids);
        }
        // A commit's check, on both cores: each half in its own snapshot.
        // Blob rows are never deleted, so a blob found in either is stored.
        let (first, second) = ids.split_at(ids.len() / 2);
        let (first, second) = std::thread::scope(|scope| {
            let other = scope.spawn(|| self.missing_in_one_snapshot(tenant, second));
            let first = self.missing_in_one_snapshot(tenant, first);
            // A panic there is raised here, as it would be on one thread.
            let second = other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (first, second)
        });
        let mut missing = first?;
        // An id in both halves is listed once, where it first appears.
        let mut seen: HashSet<BlobId> = missing.iter().copied().collect();
        missing.extend(second?.into_iter().filter(|id| seen.insert(*id)));
        Ok(missing)
    }

    fn for_each_blob_id(
        &self,
        visit: &mut dyn FnMut(TenantId, &BlobId),
    ) -> Result<(), CatalogError> {
        let mut conn = Connection::open(&self.path).map_err(|source| CatalogError::Open {
            path: self.path.clone(),
            source,
        })?;
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        let mut stmt = tx
            .prepare("SELECT tenant_id, id FROM blobs")
            .map_err(sql("list blob ids"))?;
        let mut rows = stmt.query([]).map_err(sql("list blob ids"))?;
        while let Some(row) = rows.next().map_err(sql("list blob ids"))? {
            let tenant: i64 = row.get(0).map_err(sql("read blob tenant"))?;
            let raw: &[u8] = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(sql("read blob id"))?;
            visit(TenantId(tenant), &blob_id("blobs.id", raw)?);
        }
        Ok(())
    }

    fn blob_locations(
        &self,
        tenant: TenantId,
        ids: &[BlobId],
    ) -> Result<Vec<BlobLocation>, CatalogError> {
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        let mut found = HashMap::with_capacity(ids.len());
        for_each_found(
            &tx,
            "look up blob locations",
            "SELECT b.id, b.kind, b.flags, h.header_id, p.pool, p.name, b.pack_offset, b.length \
             FROM blobs b JOIN packs p ON p.id = b.pack_id JOIN headers h ON h.id = b.header \
             WHERE b.tenant_id = ?1 AND b.id",
            tenant,
            ids,
            |row| {
                let read = |source| CatalogError::Sqlite {
                    op: "read blob location",
                    source,
                };
                let raw_id: Vec<u8> = row.get(0).map_err(read)?;
                let kind: i64 = row.get(1).map_err(read)?;
                let flags: i64 = row.get(2).map_err(read)?;
                let header: Vec<u8> = row.get(3).map_err(read)?;
                let pool: String = row.get(4).map_err(read)?;
                let pack: String = row.get(5).map_err(read)?;
                let offset: i64 = row.get(6).map_err(read)?;
                let length: i64 = row.get(7).map_err(read)?;
                let id = blob_id("blobs.id", &raw_id)?;
                let kind = from_i64::<u8>("blobs.kind", kind)?;
                let loc = BlobLocation {
                    id,
                    kind: BlobKind::from_u8(kind).ok_or_else(|| CatalogError::Corrupt {
                        what: "blobs.kind",
                        detail: format!("unknown kind {kind} for blob {id}"),
                    })?,
                    flags: from_i64("blobs.flags", flags)?,
                    header_id: blob_id("headers.header_id", &header)?,
                    pool,
                    pack,
                    offset: from_i64("blobs.pack_offset", offset)?,
                    length: from_i64("blobs.length", length)?,
                };
                found.insert(id, loc);
                Ok(())
            },
        )?;
        // Input order, each id once: remove as we go.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn record_pack(
        &self,
        pack: &PackRecord,
        entries: &[(TenantId, PackEntry)],
    ) -> Result<usize, CatalogError> {
        let size = check_pack_record(pack, entries)?;
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let tenants: BTreeSet<TenantId> = entries.iter().map(|(t, _)| *t).collect();
        for tenant in tenants {
            tenant_exists(&tx, tenant)?;
        }
        let existing = tx
            .query_row(
                "SELECT id, pool, size, hash FROM packs WHERE name = ?1",
                [&pack.name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("look up pack"))?;
        let pack_id = match existing {
            Some((id, pool, stored_size, hash)) => {
                if pool != pack.pool || stored_size != size || hash != pack.hash {
                    return Err(CatalogError::Conflict {
                        what: "pack",
                        key: pack.name.clone(),
                        reason: format!(
                            "already recorded in pool {pool:?} with {stored_size} bytes; now {:?} with {} bytes",
                            pack.pool, pack.size
                        ),
                    });
                }
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO packs (name, pool, size, hash) VALUES (?1, ?2, ?3, ?4)",
                    params![pack.name, pack.pool, size, &pack.hash[..]],
                )
                .map_err(sql("insert pack"))?;
                tx.last_insert_rowid()
            }
        };
        let mut stored = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs \
                     (tenant_id, id, kind, flags, header, pack_id, pack_offset, length) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql("insert blob"))?;
            // A pack's blobs come from a few sessions, most often one.
            let mut headers: Vec<(BlobId, i64)> = Vec::new();
            // In key order: each insert then lands at or after the last one
            // instead of seeking from the root for a random id.
            let mut in_key_order: Vec<&(TenantId, PackEntry)> = entries.iter().collect();
            in_key_order.sort_unstable_by_key(|(tenant, e)| (tenant.0, e.id.0));
            for (tenant, e) in in_key_order {
                let header = match headers.iter().find(|(id, _)| *id == e.header_id) {
                    Some(&(_, number)) => number,
                    None => {
                        let number = header_number(&tx, &e.header_id)?;
                        headers.push((e.header_id, number));
                        number
                    }
                };
                stored += insert
                    .execute(params![
                        tenant.0,
                        &e.id.0[..],
                        e.kind as u8,
                        e.flags,
                        header,
                        pack_id,
                        to_i64("pack entry offset", e.offset)?,
                        e.length,
                    ])
                    .map_err(sql("insert blob"))?;
            }
        }
        tx.commit().map_err(sql("commit pack"))?;
        Ok(stored)
    }

    fn packs_per_pool(&self) -> Result<Vec<(String, u64)>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT pool, COUNT(*) FROM packs GROUP BY pool ORDER BY pool")
            .map_err(sql("count packs per pool"))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("count packs per pool"))?
            .map(|row| {
                row.map(|(pool, n)| (pool, u64::try_from(n).unwrap_or(0)))
                    .map_err(sql("count packs per pool"))
            })
            .collect()
    }

    fn list_packs(&self) -> Result<Vec<PackRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, pool, size, hash FROM packs ORDER BY name")
            .map_err(sql("list packs"))?;
        let raws = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(sql("list packs"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("list packs"))?;
        raws.into_iter()
            .map(|(name, pool, size, hash)| {
                Ok(PackRecord {
                    hash: <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                        CatalogError::Corrupt {
                            what: "packs.hash",
                            detail: format!("pack {name}: {} bytes, expected 32", hash.len()),
                        }
                    })?,
                    size: from_i64("packs.size", size)?,
                    name,
                    pool,
                })
            })
            .collect()
    }

    fn append_commit(&self, bucket: BucketId, commit: &NewCommit) -> Result<u64, CatalogError> {
        let files = to_i64("commit.files", commit.files)?;
        let bytes = to_i64("commit.bytes", commit.bytes)?;
        let manifest = manifest_bytes(&commit.manifest);
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let tenant = bucket_tenant(&tx, bucket)?;
        if site_tenant(&tx, commit.site)? != tenant {
            return Err(CatalogError::Invalid {
                field: "commit.site",
                reason: format!("site {} is not of bucket {bucket}'s tenant", commit.site),
            });
        }
        // Checked inside the write transaction, so no GC sweep or other
        // writer can slip between the check and the commit.
        let missing = missing_ids(&tx, tenant, &commit.manifest)?;
        if let Some(first) = missing.first() {
            return Err(CatalogError::MissingBlobs {
                count: missing.len(),
                first: *first,
            });
        }
        let last: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM commits WHERE bucket_id = ?1",
                [bucket.0],
                |r| r.get(0),
            )
            .map_err(sql("read journal head"))?;
        let seq = last.checked_add(1).ok_or_else(|| CatalogError::Corrupt {
            what: "commits.seq",
            detail: format!("bucket {bucket}: sequence exhausted"),
        })?;
        tx.execute(
            "INSERT INTO commits (bucket_id, seq, site_id, time_ms, kind, manifest, body, files, bytes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                bucket.0,
                seq,
                commit.site.0,
                commit.time_unix_ms,
                commit.kind.as_str(),
                manifest,
                commit.body,
                files,
                bytes
            ],
        )
        .map_err(sql("insert commit"))?;
        tx.commit().map_err(sql("commit journal append"))?;
        fold_wal(&conn);
        from_i64("commits.seq", seq)
    }

    fn commits(
        &self,
        bucket: BucketId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Commit>, CatalogError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        query_commits(
            &self.reader(),
            "list commits",
            "bucket_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![bucket.0, after, limit],
        )
    }

    fn commit(&self, bucket: BucketId, seq: u64) -> Result<Option<Commit>, CatalogError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let found = query_commits(
            &self.reader(),
            "read commit",
            "bucket_id = ?1 AND seq = ?2",
            params![bucket.0, seq],
        )?;
        Ok(found.into_iter().next())
    }

    fn latest_commit_at_or_before(
        &self,
        bucket: BucketId,
        time_unix_ms: i64,
    ) -> Result<Option<Commit>, CatalogError> {
        let found = query_commits(
            &self.reader(),
            "find commit by time",
            "bucket_id = ?1 AND time_ms <= ?2 ORDER BY seq DESC LIMIT 1",
            params![bucket.0, time_unix_ms],
        )?;
        Ok(found.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::conformance;
    use std::sync::Arc;

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
        let (tenant, _, _) = conformance::namespace(&*cat);
        let stored = BlobId(rand::random());
        conformance::store_blobs(&*cat, tenant, &[stored]);
        let pending = BlobId(rand::random());
        let (record, entries) = conformance::fake_pack(tenant, &[pending]);

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
            "INSERT INTO blobs (tenant_id, id, kind, flags, header, pack_id, pack_offset, length) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                tenant.0,
                &pending.0[..],
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
            std::thread::spawn(move || cat.missing_blobs(tenant, &[stored, pending]).unwrap())
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
            cat.missing_blobs(tenant, &[stored, pending])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_wal_stays_small_however_much_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = SqliteCatalog::open(&path).unwrap();
        let (tenant, _, _) = conformance::namespace(&cat);
        // 40,000 blob rows in 400 packs: each pack's transaction logs the
        // pages it touched, tens of megabytes of log in all.
        for _ in 0..400 {
            let ids: Vec<BlobId> = (0..100).map(|_| BlobId(rand::random())).collect();
            conformance::store_blobs(&cat, tenant, &ids);
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
        let ids: Vec<BlobId> = (0..3u8).map(|i| BlobId([i; 32])).collect();
        let found = cat.blob_locations(TenantId(1), &ids).unwrap();
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
        conformance::store_blobs(&cat, TenantId(1), &more);
        assert!(cat.missing_blobs(TenantId(1), &more).unwrap().is_empty());
    }

    #[test]
    fn a_committed_snapshot_leaves_the_log_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = SqliteCatalog::open(&path).unwrap();
        let (tenant, site, bucket) = conformance::namespace(&cat);
        let ids: Vec<BlobId> = (0..2000).map(|_| BlobId(rand::random())).collect();
        conformance::store_blobs(&cat, tenant, &ids);
        let wal = || {
            std::fs::metadata(dir.path().join("catalog.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        assert!(wal() > 0, "the pack's rows are in the log");
        cat.append_commit(bucket, &conformance::new_commit(site, 1, ids.clone()))
            .unwrap();
        assert_eq!(wal(), 0);
        // Everything is still there, read through a fresh connection.
        drop(cat);
        let cat = SqliteCatalog::open(&path).unwrap();
        assert!(cat.missing_blobs(tenant, &ids).unwrap().is_empty());
        assert_eq!(cat.commits(bucket, 0, 10).unwrap().len(), 1);
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
        let err = cat.commits(bucket, 0, 10).unwrap_err();
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
        let err = cat.blob_locations(populated.tenant, &ids).unwrap_err();
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
}
