//! The catalog: the hub's namespace, its index over the pools, and the
//! per-bucket journals.
//!
//! The trait is split by area ([`namespace`], [`sessions`], [`blobs`],
//! [`journal`], [`references`], [`replication`], [`policies`]), and each
//! engine implements each area in a file of its own:
//! [`sqlite::SqliteCatalog`] (the embedded default) and
//! [`postgres::PostgresCatalog`]. Every engine must pass
//! [`conformance::run_all`].
//!
//! Changes go through one unit of work: [`CatalogExt::write`] runs a closure
//! in one transaction, and everything it changes commits together or not at
//! all (a commit and the closing of its session are one transaction).
//! [`CatalogExt::read`] runs lookups against one consistent snapshot. The
//! blob index's bulk calls ([`BlobIndex`]) are transactions of their own.
//!
//! [`Catalog`] is synchronous: engines block, so async callers run it under
//! `tokio::task::spawn_blocking` (the PostgreSQL engine panics if called on
//! an async worker thread).
//!
//! # Contract
//!
//! - Names of tenants, sites, buckets and pools: 1 to 63 bytes of
//!   `[a-z0-9._-]` ([`validate_name`]).
//! - Blobs belong to a tenant and are keyed by (tenant, id): every blob
//!   query names the tenant, and one tenant's blobs are invisible to every
//!   other tenant. Deduplication is per tenant, so the same id stored by two
//!   tenants is two blobs. The hub never relies on chunk ids being keyed per
//!   tenant.
//! - A blob's location is fixed by the first pack recorded that holds it for
//!   its tenant; later packs holding the same (tenant, id) do not move it.
//! - Journal sequence numbers start at 1 per bucket and have no gaps, however
//!   many writers (threads or hub processes) append concurrently.
//! - A commit is accepted only if every blob it references is stored, so an
//!   acknowledged commit never points at missing data.
//! - A write closure may be run more than once (an engine retries a
//!   transaction that lost a serialization race); only the last run's
//!   changes are kept, so it must not have effects outside the catalog.

pub mod blobs;
pub mod conformance;
mod error;
pub mod journal;
mod model;
pub mod namespace;
pub mod policies;
pub mod postgres;
pub mod references;
pub mod replication;
pub mod sessions;
pub mod sqlite;

pub use crate::pack::PackEntry;
pub use blobs::BlobIndex;
pub use error::{CatalogError, EngineError, ErrorKind, from_i64, stored_ids};
pub use journal::{JournalRead, JournalWrite};
pub use model::*;
pub use namespace::{NamespaceRead, NamespaceWrite};
pub use policies::{PolicyFileText, PolicyRead, PolicyVersion, PolicyWrite};
pub use postgres::PostgresCatalog;
pub use references::{ReferenceRead, ReferenceWrite, Referenced};
pub use replication::{
    DeadCount, DeadLetter, DeadLetters, ReplicaCursor, ReplicaFailure, ReplicaHold, ReplicaTrouble,
    ReplicationPause, ReplicationRead, ReplicationWrite,
};
pub use sessions::{SessionRead, SessionWrite};
pub use sqlite::SqliteCatalog;

/// Everything that can be read inside one transaction.
pub trait ReadTx:
    NamespaceRead + SessionRead + JournalRead + ReferenceRead + ReplicationRead + PolicyRead
{
}
impl<
    T: NamespaceRead
        + SessionRead
        + JournalRead
        + ReferenceRead
        + ReplicationRead
        + PolicyRead
        + ?Sized,
> ReadTx for T
{
}

/// Everything that can be read or changed inside one transaction.
pub trait WriteTx:
    ReadTx
    + NamespaceWrite
    + SessionWrite
    + JournalWrite
    + ReferenceWrite
    + ReplicationWrite
    + PolicyWrite
{
}
impl<
    T: ReadTx
        + NamespaceWrite
        + SessionWrite
        + JournalWrite
        + ReferenceWrite
        + ReplicationWrite
        + PolicyWrite
        + ?Sized,
> WriteTx for T
{
}

/// A closure run inside a read transaction.
pub type ReadWork<'a> = dyn FnMut(&mut dyn ReadTx) -> Result<(), CatalogError> + 'a;
/// A closure run inside a write transaction.
pub type WriteWork<'a> = dyn FnMut(&mut dyn WriteTx) -> Result<(), CatalogError> + 'a;

/// The hub's namespace, pool index and journals. See the module docs for
/// the contract every engine keeps. Callers use [`CatalogExt`].
pub trait Catalog: BlobIndex + Send + Sync {
    /// The engine's name, for logs ("sqlite", "postgres").
    fn engine(&self) -> &'static str;

    /// Runs `work` in one read transaction: every read in it sees the same
    /// committed state.
    ///
    /// # Errors
    ///
    /// `work`'s error, or the engine's.
    fn read_dyn(&self, work: &mut ReadWork<'_>) -> Result<(), CatalogError>;

    /// Runs `work` in one write transaction, committed if it returns `Ok`
    /// and rolled back if it returns an error. The engine may run `work`
    /// again after a serialization failure.
    ///
    /// # Errors
    ///
    /// `work`'s error, or the engine's.
    fn write_dyn(&self, work: &mut WriteWork<'_>) -> Result<(), CatalogError>;
}

/// Typed front ends of [`Catalog::read_dyn`] and [`Catalog::write_dyn`].
pub trait CatalogExt: Catalog {
    /// Runs `work` in one read transaction and returns what it returns.
    ///
    /// # Errors
    ///
    /// `work`'s error, or the engine's.
    fn read<T>(
        &self,
        work: impl FnOnce(&mut dyn ReadTx) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut work = Some(work);
        let mut out = None;
        self.read_dyn(&mut |tx| {
            let work = work.take().ok_or_else(|| CatalogError::Corrupt {
                what: "catalog engine",
                detail: "ran a read transaction twice".to_owned(),
            })?;
            out = Some(work(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| CatalogError::Corrupt {
            what: "catalog engine",
            detail: "committed a read without running it".to_owned(),
        })
    }

    /// Runs `work` in one write transaction (a unit of work: all of its
    /// changes commit, or none) and returns what it returns.
    ///
    /// # Errors
    ///
    /// `work`'s error, or the engine's; nothing is changed then.
    fn write<T>(
        &self,
        mut work: impl FnMut(&mut dyn WriteTx) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut out = None;
        self.write_dyn(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| CatalogError::Corrupt {
            what: "catalog engine",
            detail: "committed a write without running it".to_owned(),
        })
    }
}

impl<C: Catalog + ?Sized> CatalogExt for C {}
