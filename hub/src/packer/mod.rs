//! Group commit of uploaded blobs into packs.
//!
//! Uploads arrive as many small batches of blobs. One background task turns
//! them into packs: it takes a request, gathers whatever else arrives within
//! [`PackerConfig::max_wait`] (up to [`PackerConfig::max_pack_bytes`]), drops
//! blobs the catalog already holds, writes one pack to the pool and records
//! it in the catalog. Every request in the group is answered only then.
//!
//! Every request names the owner of its blobs (the tenant, and the site
//! that uploaded them), and deduplication is per owner: a blob is skipped
//! only if *its owner* already holds a copy of that id (see
//! [`crate::catalog::BlobOwner`]). A pack holds one owner's blobs and names
//! tenant and site, so a group with several owners' blobs is written as
//! several packs.
//!
//! **Acknowledgement guarantee:** [`Packer::store`] returns `Ok` only once
//! every blob it was given is durable in a pool *and* indexed in the catalog
//! (either by this call or earlier). If writing or recording the pack fails,
//! every request in the group gets the error; the pool may then hold an
//! unreferenced pack, which is harmless (GC removes it) and never the reverse.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{BlobId, BlobKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::blobstore::{BlobStore, BlobStoreError};
use crate::catalog::{BlobLocation, BlobOwner, Catalog, CatalogError};
use crate::pack::{PackBlob, PackError, pack_object_name};
use crate::stored_filter::StoredFilter;

/// How the packer groups uploads.
#[derive(Clone, Debug)]
pub struct PackerConfig {
    /// A group is closed once its blobs reach this many bytes. One request
    /// is never split, so a pack can exceed this by one request.
    pub max_pack_bytes: usize,
    /// How long to wait for more requests after the first of a group:
    /// added latency per upload, traded for fewer, larger packs.
    pub max_wait: Duration,
    /// Requests that may wait for the packer before `store` blocks
    /// (backpressure on uploads).
    pub queue_depth: usize,
    /// Bytes of blobs the packer holds at once, queued or being written;
    /// `store` waits beyond it. Without it the queue could hold
    /// `queue_depth` requests of 64 MiB: 4 GiB.
    pub queue_bytes: usize,
    /// Groups being written at once. Each pays fsync latency (pack, its
    /// directory, the catalog); overlapping them keeps the disk busy.
    pub concurrent_groups: usize,
}

impl Default for PackerConfig {
    fn default() -> Self {
        Self {
            max_pack_bytes: 16 << 20,
            max_wait: Duration::from_millis(2),
            queue_depth: 64,
            queue_bytes: 256 << 20,
            concurrent_groups: 3,
        }
    }
}

/// What happened to the blobs of one [`Packer::store`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Blobs written by this call.
    pub stored: usize,
    /// Blobs that were already stored (or appeared twice), so were skipped.
    pub already_present: usize,
}

/// Why storing or reading blobs failed. Cloneable because one failure is
/// reported to every request of its group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PackerError {
    #[error("blob {id}: {len} bytes exceeds the per-blob limit of {max} bytes")]
    BlobTooLarge { id: BlobId, len: usize, max: u32 },
    #[error("session header blob {id}: id is not the BLAKE3 of its bytes")]
    HeaderIdMismatch { id: BlobId },
    #[error("look up which blobs are stored: {source}")]
    Lookup {
        #[source]
        source: Arc<CatalogError>,
    },
    #[error("encode pack: {source}")]
    Encode {
        #[source]
        source: PackError,
    },
    #[error("write pack {object} to pool {pool}: {source}")]
    Put {
        pool: String,
        object: String,
        #[source]
        source: Arc<BlobStoreError>,
    },
    #[error("record pack {pack} in the catalog: {source}")]
    Record {
        pack: String,
        #[source]
        source: Arc<CatalogError>,
    },
    #[error("packer: {op}: blocking task failed: {detail}")]
    Task { op: &'static str, detail: String },
    #[error("the packer has shut down")]
    Closed,
    #[error("read blob {id} from pack {pack} in pool {pool}: {source}")]
    Read {
        id: BlobId,
        pool: String,
        pack: String,
        #[source]
        source: Arc<BlobStoreError>,
    },
    /// One failure reported for every blob of a read that failed whole.
    #[error(transparent)]
    Shared(Arc<PackerError>),
    #[error("pack {pack} is recorded in pool {pool}, which is not configured")]
    UnknownPool { pool: String, pack: String },
    #[error("blob {id} in pack {pack} in pool {pool}: bytes do not match its id")]
    CorruptBlob {
        id: BlobId,
        pool: String,
        pack: String,
    },
}

pub(crate) struct Request {
    owner: BlobOwner,
    blobs: Vec<PackBlob>,
    bytes: usize,
    reply: oneshot::Sender<Result<StoreOutcome, PackerError>>,
}

/// Handle to the packing task. Dropping every handle stops the task once the
/// queued requests are done.
#[derive(Debug)]
pub struct Packer {
    tx: mpsc::Sender<Request>,
    task: JoinHandle<()>,
    stored: Arc<StoredFilter>,
    /// KiB of blobs in the packer's hands ([`PackerConfig::queue_bytes`]).
    held: Arc<tokio::sync::Semaphore>,
    held_kib: usize,
}

impl Packer {
    /// Starts the packing task, writing new packs to `store` (the pool named
    /// `pool_name`) and recording them in `catalog`.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    pub fn start(
        store: Arc<dyn BlobStore>,
        catalog: Arc<dyn Catalog>,
        pool_name: String,
        config: PackerConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let held_kib = (config.queue_bytes / 1024).clamp(1, u32::MAX as usize);
        let stored = Arc::new(StoredFilter::default());
        let (filter, reader) = (stored.clone(), catalog.clone());
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match filter.build(&*reader) {
                Ok(count) => tracing::info!(
                    blobs = count,
                    ms = started.elapsed().as_millis() as u64,
                    "stored-blob filter loaded"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "stored-blob filter not loaded; every dedup lookup asks the catalog")
                }
            }
        });
        let worker = Worker {
            store,
            catalog,
            pool: pool_name,
            config,
            stored: stored.clone(),
            owner_names: Default::default(),
        };
        let task = tokio::spawn(worker.run(rx));
        Self {
            tx,
            task,
            stored,
            held: Arc::new(tokio::sync::Semaphore::new(held_kib)),
            held_kib,
        }
    }

    /// The filter of stored ids this packer keeps up to date, for the dedup
    /// query (see [`stored_filter::missing_blobs`]).
    pub fn stored(&self) -> &Arc<StoredFilter> {
        &self.stored
    }

    /// Stores `blobs` for `owner`, returning once all are durable and
    /// catalogued (see the module docs). Blobs `owner` already holds a copy
    /// of are skipped, so retries are cheap; other owners' copies never
    /// count.
    ///
    /// # Errors
    ///
    /// `BlobTooLarge` or `HeaderIdMismatch` for a bad blob (nothing of the
    /// call is stored); `Lookup`, `Encode`, `Put`, `Record` or `Task` if the
    /// group failed; `Closed` if the packer is gone.
    pub async fn store(
        &self,
        owner: BlobOwner,
        blobs: Vec<PackBlob>,
    ) -> Result<StoreOutcome, PackerError> {
        if blobs.is_empty() {
            return Ok(StoreOutcome::default());
        }
        // Checked here, not in the task, so one bad upload cannot fail the
        // others grouped with it.
        for blob in &blobs {
            if u32::try_from(blob.data.len()).is_err() {
                return Err(PackerError::BlobTooLarge {
                    id: blob.id,
                    len: blob.data.len(),
                    max: u32::MAX,
                });
            }
            if blob.kind == BlobKind::SessionHeader && BlobId::of_public(&blob.data) != blob.id {
                return Err(PackerError::HeaderIdMismatch { id: blob.id });
            }
        }
        let bytes: usize = blobs.iter().map(|b| b.data.len()).sum();
        // Held until the answer: a request larger than the whole bound
        // takes all of it and goes alone.
        let kib = bytes.div_ceil(1024).clamp(1, self.held_kib);
        let _held = self
            .held
            .acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
            .await
            .map_err(|_| PackerError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request {
                owner,
                blobs,
                bytes,
                reply,
            })
            .await
            .map_err(|_| PackerError::Closed)?;
        answer.await.map_err(|_| PackerError::Closed)?
    }

    /// Stops accepting requests and waits for the queued ones to finish.
    pub async fn shutdown(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "packer task ended abnormally");
        }
    }
}

/// Reads one blob from `store` at `loc` with a ranged read of its pack,
/// checked with [`check_blob`] (restores read through [`crate::fetch`]).
///
/// # Errors
///
/// `Read` if the pool cannot return the range, `CorruptBlob` from the check.
pub async fn read_blob(store: &dyn BlobStore, loc: &BlobLocation) -> Result<Vec<u8>, PackerError> {
    let object = pack_object_name(&loc.pack);
    let data = store
        .get_range(&object, loc.offset, u64::from(loc.length))
        .await
        .map_err(|e| PackerError::Read {
            id: loc.id,
            pool: loc.pool.clone(),
            pack: loc.pack.clone(),
            source: Arc::new(e),
        })?;
    check_blob(loc, &data)?;
    Ok(data)
}

/// Checks blob bytes read at `loc`: a session header, whose id is the plain
/// BLAKE3 of its bytes, must match it; other blobs are keyed hashes the hub
/// cannot check (the agent does); every blob must have its recorded length.
///
/// # Errors
///
/// `CorruptBlob` naming the blob, pack and pool.
pub fn check_blob(loc: &BlobLocation, data: &[u8]) -> Result<(), PackerError> {
    let corrupt = data.len() != loc.length as usize
        || (loc.kind == BlobKind::SessionHeader && BlobId::of_public(data) != loc.id);
    match corrupt {
        true => Err(PackerError::CorruptBlob {
            id: loc.id,
            pool: loc.pool.clone(),
            pack: loc.pack.clone(),
        }),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests;
mod worker;

use worker::Worker;
