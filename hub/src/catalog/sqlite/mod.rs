//! The embedded catalog: one SQLite file in WAL mode.
//!
//! One writing connection behind a mutex: SQLite allows one writer at a
//! time anyway, and the hub's catalog work is short index lookups. Writes
//! run in `BEGIN IMMEDIATE` transactions, so they also serialise correctly
//! against other processes (the CLI) opening the same file.
//! `synchronous=FULL` makes a committed transaction durable, which the hub's
//! acknowledgements rely on. Lookups run on read-only connections of their
//! own, so in WAL mode they never wait behind a pack's insert and its fsync.

mod blobs;
mod journal;
mod namespace;
mod policies;
mod references;
mod replication;
mod schema;
mod sessions;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::{Catalog, CatalogError, ReadWork, WriteWork};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache per connection (negative: KiB), 16 MiB.
const CACHE_SIZE: i64 = -16384;
/// Log pages (4 KiB each) after which a commit checkpoints the WAL: about
/// SQLite's default. Blob ids are random, so each pack's rows touch pages
/// all over the table; checkpointing every 1 MiB instead wrote the same
/// pages out again and again (4 % of the hub's CPU on 50,000 small files).
const WAL_CHECKPOINT_PAGES: i64 = 1024;
/// Bytes the WAL file is cut back to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 << 20;
/// One reader per core of the machine this is built for: two lookups run
/// side by side, and a long reference check is split across both.
const READERS: usize = 2;

/// A [`Catalog`] in a SQLite database file.
#[derive(Debug)]
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
    readers: [Mutex<Connection>; READERS],
    path: PathBuf,
}

/// One transaction on one connection: what the area files implement the
/// area traits for.
pub(crate) struct Tx<'c> {
    conn: &'c Connection,
    /// A commit was appended: fold the log once the transaction commits.
    appended: bool,
}

impl Tx<'_> {
    /// At most one row of `query`, decoded by `decode`.
    fn opt<T>(
        &self,
        op: &'static str,
        query: &str,
        params: impl rusqlite::Params,
        decode: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, CatalogError> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached(query)
            .and_then(|mut s| s.query_row(params, decode).optional())
            .map_err(sql(op))
    }

    /// Every row of `query`, decoded by `decode`.
    fn all<T>(
        &self,
        op: &'static str,
        query: &str,
        params: impl rusqlite::Params,
        decode: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, CatalogError> {
        self.conn
            .prepare_cached(query)
            .and_then(|mut s| s.query_map(params, decode)?.collect())
            .map_err(sql(op))
    }
}

/// Takes group and other permissions off the database and its WAL files.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

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
        let open_err = |source: rusqlite::Error| CatalogError::Open {
            target: path.display().to_string(),
            source: source.into(),
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        // The catalog names every site and holds their token hashes: the
        // hub's alone. Before WAL mode, whose files copy the database's mode.
        owner_only(&path).map_err(|source| CatalogError::Open {
            target: path.display().to_string(),
            source: source.into(),
        })?;
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
        // Cut the log file back after a checkpoint, so the WAL beside the
        // catalog stays small on disk instead of keeping its high-water mark.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
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
}

impl Catalog for SqliteCatalog {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn read_dyn(&self, work: &mut ReadWork<'_>) -> Result<(), CatalogError> {
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        work(&mut Tx {
            conn: &tx,
            appended: false,
        })?;
        tx.commit().map_err(sql("end read transaction"))
    }

    fn write_dyn(&self, work: &mut WriteWork<'_>) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let mut unit = Tx {
            conn: &tx,
            appended: false,
        };
        // An error drops `tx`, which rolls everything back.
        work(&mut unit)?;
        let appended = unit.appended;
        tx.commit().map_err(sql("commit"))?;
        if appended {
            fold_wal(&conn);
        }
        Ok(())
    }
}

/// Starts a write transaction that takes the write lock up front, so the
/// reads inside it (uniqueness checks, the next sequence number) cannot race
/// another writer.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, CatalogError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin write transaction"))
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> CatalogError {
    move |source| CatalogError::unavailable(op, source)
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
