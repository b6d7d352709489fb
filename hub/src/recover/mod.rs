//! `ferry-hub recover`: rebuilds the catalog from the pools alone.
//!
//! Three passes, each reading only: the namespace records (tenants, sites
//! with their token hashes, buckets), then every pack's index (the blob
//! index, per the tenant each pack names), then every journal segment (the
//! commits, at their own sequence numbers). A damaged or unreadable object
//! is named in the [`Report`] and skipped; the rest is recovered. Every
//! step adds only what the catalog lacks, so a rerun (after fixing a pool,
//! or over a half-finished run) is safe. Nothing is ever written to a pool.

mod journal;
mod namespace;
mod packs;
mod references;

pub use references::{Backfill, backfill_references};

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use crate::blobstore::{BlobStoreError, Pools};
use crate::catalog::{Catalog, CatalogError};

/// How to recover.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Read every pack whole and check its BLAKE3 against its name, not
    /// only its index: finds bit rot in the blob area too, at the cost of
    /// reading every byte.
    pub verify_packs: bool,
}

/// What a recovery did and what it could not do.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub tenants_added: usize,
    pub sites_added: usize,
    pub buckets_added: usize,
    pub namespace_records: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    /// Blob locations newly put in the index.
    pub blobs_added: u64,
    pub commits_added: usize,
    /// Commits the catalog already had (a rerun).
    pub commits_present: usize,
    /// Segments left over by appends that never committed (another segment
    /// of the same number is later).
    pub superseded_segments: usize,
    /// Objects that could not be read or decoded, or not applied.
    pub damaged: Vec<Damage>,
    /// Commits that are recovered but reference chunks no readable pack
    /// holds (restoring them fails for those files), or that are lost.
    pub affected: Vec<Affected>,
}

impl Report {
    /// True if every object was read and applied.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.affected.is_empty()
    }

    fn damaged(&mut self, pool: &str, object: &str, error: impl ToString) {
        let error = error.to_string();
        tracing::warn!(pool, object, %error, "damaged object");
        self.damaged.push(Damage {
            pool: pool.to_owned(),
            object: object.to_owned(),
            error,
        });
    }
}

/// An object recover could not use.
#[derive(Debug, Serialize)]
pub struct Damage {
    pub pool: String,
    pub object: String,
    pub error: String,
}

/// A commit hurt by damage.
#[derive(Debug, Serialize)]
pub struct Affected {
    /// "tenant/bucket".
    pub bucket: String,
    pub seq: u64,
    /// What is wrong: chunks missing, or the segment unreadable.
    pub problem: String,
}

/// Why a recovery stopped before its end (damage does not stop it).
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("listing pool {pool}: {source}")]
    List {
        pool: String,
        #[source]
        source: BlobStoreError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("recover: blocking task failed: {0}")]
    Task(String),
}

/// Rebuilds `catalog` from `pools` (see the module docs).
///
/// # Errors
///
/// A pool that cannot be listed or a catalog that fails: nothing would be
/// right after that. A damaged object is not an error; it is reported.
pub async fn recover(
    catalog: Arc<dyn Catalog>,
    pools: &Pools,
    options: Options,
) -> Result<Report, RecoverError> {
    let mut report = Report::default();
    let started = std::time::Instant::now();
    namespace::replay(&catalog, pools, &mut report).await?;
    tracing::info!(
        records = report.namespace_records,
        ms = started.elapsed().as_millis() as u64,
        "namespace recovered"
    );
    packs::index(&catalog, pools, options, &HashSet::new(), &mut report).await?;
    tracing::info!(
        packs = report.packs,
        blobs = report.blobs_added,
        ms = started.elapsed().as_millis() as u64,
        "blob index recovered"
    );
    journal::restore(&catalog, pools, &mut report).await?;
    tracing::info!(
        commits = report.commits_added,
        ms = started.elapsed().as_millis() as u64,
        "journals recovered"
    );
    Ok(report)
}

/// Indexes only the packs the catalog lacks (see `server`): what a hub
/// that stopped between putting a pack and recording it left behind.
///
/// # Errors
///
/// As [`recover`]'s.
pub async fn adopt_unrecorded_packs(
    catalog: Arc<dyn Catalog>,
    pools: &Pools,
) -> Result<Report, RecoverError> {
    let known: HashSet<String> = blocking(&catalog, |c| c.list_packs())
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut report = Report::default();
    packs::index(&catalog, pools, Options::default(), &known, &mut report).await?;
    Ok(report)
}

/// Every object under `prefix` in every pool, as (pool, name), oldest pool
/// first, each pool's sorted.
async fn list_all(pools: &Pools, prefix: &str) -> Result<Vec<(String, String)>, RecoverError> {
    let mut all = Vec::new();
    let mut newest_first: Vec<_> = pools.newest_first().collect();
    newest_first.reverse();
    for (pool, store) in newest_first {
        let names = store
            .list(prefix)
            .await
            .map_err(|source| RecoverError::List {
                pool: pool.to_owned(),
                source,
            })?;
        all.extend(names.into_iter().map(|n| (pool.to_owned(), n)));
    }
    Ok(all)
}

/// Runs a catalog call on a blocking thread.
async fn blocking<T: Send + 'static>(
    catalog: &Arc<dyn Catalog>,
    op: impl FnOnce(&dyn Catalog) -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, RecoverError> {
    let catalog = catalog.clone();
    Ok(tokio::task::spawn_blocking(move || op(&*catalog))
        .await
        .map_err(|e| RecoverError::Task(e.to_string()))??)
}
