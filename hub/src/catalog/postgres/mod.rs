//! The catalog on a PostgreSQL server: what several hub processes share
//! when they serve one namespace.
//!
//! A small pool of connections, each used by one transaction at a time.
//! Writes run at READ COMMITTED with explicit row locks where order matters
//! (a bucket's row is locked while its next sequence number is taken), so
//! appends from any number of hubs stay gapless; reads run in REPEATABLE
//! READ, READ ONLY transactions, one snapshot each. A transaction that loses
//! a serialization race or a deadlock is run again, a few times.
//!
//! The `postgres` client drives its own small runtime, so every call must
//! come from a thread that is not an async worker (`spawn_blocking`).

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

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use super::{Catalog, CatalogError, ReadWork, WriteWork};

/// Connections kept open at most; more are opened while all are busy and
/// closed when returned beyond this.
const POOL: usize = 8;
/// Runs of one transaction before a serialization failure is returned.
const ATTEMPTS: usize = 5;
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Catalog`] in a PostgreSQL database.
pub struct PostgresCatalog {
    config: postgres::Config,
    /// The server and database, for messages (never the password).
    target: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalog")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// One transaction: what the area files implement the area traits for.
pub(crate) struct Tx<'a, 'c> {
    tx: &'a mut Transaction<'c>,
}

/// The synchronous client closes its connection with a `block_on` of its
/// own, which panics on a thread that drives a tokio runtime; a hub drops
/// its catalog there as it stops. There, the idle connections are closed
/// on a plain thread instead.
impl Drop for PostgresCatalog {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}

impl PostgresCatalog {
    /// Connects to the database `url` (a `postgresql://` URL or a
    /// `key=value` string; it must not hold the password), with `password`
    /// read from a file or the environment by the caller, and brings the
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// `Invalid` for a malformed URL or one with a password in it, `Open`
    /// if the server cannot be reached or refuses the login,
    /// `SchemaTooNew` if a newer hub migrated the database.
    pub fn connect(url: &str, password: Option<&str>) -> Result<Self, CatalogError> {
        let mut config: postgres::Config = url.parse().map_err(|e| CatalogError::Invalid {
            field: "catalog.url",
            reason: format!("not a PostgreSQL connection string: {e}"),
        })?;
        if config.get_password().is_some() {
            return Err(CatalogError::Invalid {
                field: "catalog.url",
                reason: "holds a password; give it in password-file or FERRY_CATALOG_PASSWORD"
                    .to_owned(),
            });
        }
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("ferry-hub");
        let target = describe(&config);
        let catalog = Self {
            config,
            target,
            idle: Mutex::new(Vec::new()),
        };
        let mut client = catalog.open_client()?;
        schema::migrate(&mut client)?;
        catalog.give_back(client);
        Ok(catalog)
    }

    /// The server and database, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn open_client(&self) -> Result<Client, CatalogError> {
        self.config
            .connect(NoTls)
            .map_err(|source| CatalogError::Open {
                target: self.target.clone(),
                source: source.into(),
            })
    }

    fn client(&self) -> Result<Client, CatalogError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.open_client(),
        }
    }

    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL {
            idle.push(client);
        }
    }

    /// Runs `run` on a pooled connection, again after a serialization
    /// failure or deadlock (up to [`ATTEMPTS`] times).
    fn with_retries<T>(
        &self,
        mut run: impl FnMut(&mut Client) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut client = self.client()?;
        let mut attempt = 1;
        loop {
            let result = run(&mut client);
            let retry = matches!(&result, Err(e) if is_serialization_failure(e));
            if !retry || attempt == ATTEMPTS {
                // A connection that just failed may be dead before the
                // client notices (`is_closed` still false): never pool it,
                // or the next call fails on it too.
                let engine_failed = matches!(&result, Err(e) if !retry && e.kind() == super::ErrorKind::Unavailable);
                if !engine_failed {
                    self.give_back(client);
                }
                return result;
            }
            attempt += 1;
            tracing::debug!(
                attempt,
                "catalog: transaction lost a race; running it again"
            );
        }
    }
}

/// "host:port/dbname" of a config.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{db}")
}

fn is_serialization_failure(e: &CatalogError) -> bool {
    let CatalogError::Unavailable { source, .. } = e else {
        return false;
    };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// Maps a client error during `op` to the catalog's own.
fn pg(op: &'static str) -> impl FnOnce(postgres::Error) -> CatalogError {
    move |source| CatalogError::unavailable(op, source)
}

impl Catalog for PostgresCatalog {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn read_dyn(&self, work: &mut ReadWork<'_>) -> Result<(), CatalogError> {
        self.with_retries(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(pg("begin read transaction"))?;
            work(&mut Tx { tx: &mut tx })?;
            tx.commit().map_err(pg("end read transaction"))
        })
    }

    fn write_dyn(&self, work: &mut WriteWork<'_>) -> Result<(), CatalogError> {
        self.with_retries(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(pg("begin write transaction"))?;
            // An error drops `tx`, which rolls everything back.
            work(&mut Tx { tx: &mut tx })?;
            tx.commit().map_err(pg("commit"))
        })
    }
}
