//! Group commit of uploaded blobs into packs.
//!
//! Uploads arrive as many small batches of blobs. One background task turns
//! them into packs: it takes a request, gathers whatever else arrives within
//! [`PackerConfig::max_wait`] (up to [`PackerConfig::max_pack_bytes`]), drops
//! blobs the catalog already holds, writes one pack to the pool and records
//! it in the catalog. Every request in the group is answered only then.
//!
//! Every request names the tenant its blobs belong to, and deduplication is
//! per tenant: a blob is skipped only if *its tenant* already holds that id.
//! One pack may hold blobs of several tenants (and the same id once per
//! tenant); the catalog keeps them apart.
//!
//! **Acknowledgement guarantee:** [`Packer::store`] returns `Ok` only once
//! every blob it was given is durable in a pool *and* indexed in the catalog
//! (either by this call or earlier). If writing or recording the pack fails,
//! every request in the group gets the error; the pool may then hold an
//! unreferenced pack, which is harmless (GC removes it) and never the reverse.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{BlobId, BlobKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::blobstore::{BlobStore, BlobStoreError};
use crate::catalog::{BlobLocation, Catalog, CatalogError, PackRecord, TenantId};
use crate::pack::{EncodedPack, PackBlob, PackError, encode_pack, pack_object_name};
use crate::stored_filter::{self, StoredFilter};

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

struct Request {
    tenant: TenantId,
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
        };
        let task = tokio::spawn(worker.run(rx));
        Self { tx, task, stored }
    }

    /// The filter of stored ids this packer keeps up to date, for the dedup
    /// query (see [`stored_filter::missing_blobs`]).
    pub fn stored(&self) -> &Arc<StoredFilter> {
        &self.stored
    }

    /// Stores `blobs` for `tenant`, returning once all are durable and
    /// catalogued (see the module docs). Blobs `tenant` already stored are
    /// skipped, so retries are cheap; other tenants' blobs never count.
    ///
    /// # Errors
    ///
    /// `BlobTooLarge` or `HeaderIdMismatch` for a bad blob (nothing of the
    /// call is stored); `Lookup`, `Encode`, `Put`, `Record` or `Task` if the
    /// group failed; `Closed` if the packer is gone.
    pub async fn store(
        &self,
        tenant: TenantId,
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
        let bytes = blobs.iter().map(|b| b.data.len()).sum();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request {
                tenant,
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

struct Worker {
    store: Arc<dyn BlobStore>,
    catalog: Arc<dyn Catalog>,
    pool: String,
    config: PackerConfig,
    stored: Arc<StoredFilter>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let worker = Arc::new(self);
        let limit = worker.config.concurrent_groups.max(1);
        let mut writing = tokio::task::JoinSet::new();
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            let (group, next) = worker.gather(first, &mut rx).await;
            carried = next;
            while writing.len() >= limit {
                let _ = writing.join_next().await;
            }
            let worker = worker.clone();
            // A blob in two groups written at once is stored twice; the
            // catalog keeps the first location and the other copy is garbage.
            writing.spawn(async move { worker.commit_group(group).await });
        }
        while writing.join_next().await.is_some() {}
    }

    /// Collects requests after `first` until the group is full, `max_wait`
    /// has passed, or the channel is closed. Returns the group and a request
    /// that did not fit, to start the next group.
    async fn gather(
        &self,
        first: Request,
        rx: &mut mpsc::Receiver<Request>,
    ) -> (Vec<Request>, Option<Request>) {
        let deadline = Instant::now() + self.config.max_wait;
        let mut bytes = first.bytes;
        let mut group = vec![first];
        while bytes < self.config.max_pack_bytes {
            let next = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(r)) => r,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            if bytes.saturating_add(next.bytes) > self.config.max_pack_bytes {
                return (group, Some(next));
            }
            bytes += next.bytes;
            group.push(next);
        }
        (group, None)
    }

    /// Writes one group and answers every request in it.
    async fn commit_group(&self, mut group: Vec<Request>) {
        let blobs: Vec<(TenantId, Vec<PackBlob>)> = group
            .iter_mut()
            .map(|r| (r.tenant, std::mem::take(&mut r.blobs)))
            .collect();
        match self.write(blobs).await {
            Ok(outcomes) => {
                for (req, outcome) in group.into_iter().zip(outcomes) {
                    // The caller may have gone away; its blobs are stored anyway.
                    let _ = req.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = group.len(), "storing a pack failed");
                for req in group {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Stores the new blobs of a group as one pack; returns one outcome per
    /// request.
    async fn write(
        &self,
        requests: Vec<(TenantId, Vec<PackBlob>)>,
    ) -> Result<Vec<StoreOutcome>, PackerError> {
        // The distinct ids of each tenant in the group.
        let mut asked: BTreeMap<TenantId, Vec<BlobId>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (tenant, blobs) in &requests {
            for blob in blobs {
                if seen.insert((*tenant, blob.id)) {
                    asked.entry(*tenant).or_default().push(blob.id);
                }
            }
        }
        let (catalog, stored) = (Arc::clone(&self.catalog), Arc::clone(&self.stored));
        let missing: HashSet<(TenantId, BlobId)> = blocking("look up blobs", move || {
            let mut missing = HashSet::new();
            for (tenant, ids) in asked {
                missing.extend(
                    stored_filter::missing_blobs(&*catalog, &stored, tenant, &ids)?
                        .into_iter()
                        .map(|id| (tenant, id)),
                );
            }
            Ok(missing)
        })
        .await?
        .map_err(|e: CatalogError| PackerError::Lookup {
            source: Arc::new(e),
        })?;

        // Keep the first copy of each missing (tenant, id); count the rest as
        // present.
        let mut chosen = HashSet::new();
        let mut pack_blobs = Vec::new();
        let mut tenants = Vec::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        for (tenant, blobs) in requests {
            let mut outcome = StoreOutcome::default();
            for blob in blobs {
                let key = (tenant, blob.id);
                if missing.contains(&key) && chosen.insert(key) {
                    outcome.stored += 1;
                    pack_blobs.push(blob);
                    tenants.push(tenant);
                } else {
                    outcome.already_present += 1;
                }
            }
            outcomes.push(outcome);
        }
        if pack_blobs.is_empty() {
            return Ok(outcomes);
        }

        // Encoding copies and hashes up to max_pack_bytes: keep it off the
        // async workers.
        let EncodedPack {
            bytes,
            entries,
            hash,
        } = blocking("encode pack", move || encode_pack(&pack_blobs))
            .await?
            .map_err(|source| PackerError::Encode { source })?;

        let record = PackRecord {
            name: hex::encode(hash),
            pool: self.pool.clone(),
            size: bytes.len() as u64,
            hash,
        };
        let object = pack_object_name(&record.name);
        self.store
            .put(&object, bytes)
            .await
            .map_err(|e| PackerError::Put {
                pool: self.pool.clone(),
                object: object.clone(),
                source: Arc::new(e),
            })?;

        // encode_pack returns one entry per blob, in order.
        let entries: Vec<(TenantId, _)> = tenants.into_iter().zip(entries).collect();
        let (catalog, stored) = (Arc::clone(&self.catalog), Arc::clone(&self.stored));
        let (name, blob_count) = (record.name.clone(), entries.len());
        let newly = blocking("record pack", move || {
            let newly = catalog.record_pack(&record, &entries)?;
            for (tenant, entry) in &entries {
                stored.insert(*tenant, [&entry.id]);
            }
            Ok(newly)
        })
        .await?
        .map_err(|e| PackerError::Record {
            pack: name.clone(),
            source: Arc::new(e),
        })?;
        tracing::debug!(pack = %name, pool = %self.pool, blobs = blob_count, newly, "pack stored");
        Ok(outcomes)
    }
}

/// Runs `f` on Tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PackerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PackerError::Task {
            op,
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobstore::{BoxFuture, LocalDirStore};
    use crate::catalog::{CatalogExt, SqliteCatalog};
    use crate::pack::parse_pack;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn BlobStore>,
        catalog: Arc<dyn Catalog>,
        /// Two tenants.
        a: TenantId,
        b: TenantId,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalDirStore::open(dir.path().join("pool")).unwrap());
        let catalog = Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
        let a = catalog.write(|w| w.create_tenant("tenant-a")).unwrap();
        let b = catalog.write(|w| w.create_tenant("tenant-b")).unwrap();
        Fixture {
            _dir: dir,
            store,
            catalog,
            a,
            b,
        }
    }

    fn packer(f: &Fixture, config: PackerConfig) -> Packer {
        Packer::start(
            Arc::clone(&f.store),
            Arc::clone(&f.catalog),
            "pool-1".to_owned(),
            config,
        )
    }

    fn blob(seed: u8, len: usize) -> PackBlob {
        PackBlob {
            id: BlobId([seed; 32]),
            kind: BlobKind::Data,
            flags: 0,
            header_id: BlobId([0xAA; 32]),
            data: vec![seed; len].into(),
        }
    }

    fn ids(blobs: &[PackBlob]) -> Vec<BlobId> {
        blobs.iter().map(|b| b.id).collect()
    }

    #[tokio::test]
    async fn the_stored_filter_learns_what_is_recorded_and_answers_as_the_catalog() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let stored = p.stored().clone();
        for _ in 0..500 {
            if stored.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(stored.is_ready(), "filter not built within 5 s");
        let (old, new) = (blob(7, 10), blob(8, 10));
        assert!(stored.absent(f.a, &old.id));
        p.store(f.a, vec![old.clone()]).await.unwrap();
        assert!(
            !stored.absent(f.a, &old.id),
            "recorded, so not surely absent"
        );
        assert!(stored.absent(f.a, &new.id));
        let asked = [new.id, old.id, new.id];
        assert_eq!(
            stored_filter::missing_blobs(&*f.catalog, &stored, f.a, &asked).unwrap(),
            f.catalog.missing_blobs(f.a, &asked).unwrap()
        );
        assert_eq!(
            stored_filter::missing_blobs(&*f.catalog, &stored, f.a, &asked).unwrap(),
            vec![new.id]
        );
    }

    #[tokio::test]
    async fn concurrent_stores_share_one_pack() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let (a, b) = (vec![blob(1, 100), blob(2, 50)], vec![blob(3, 10)]);
        let (ra, rb) = tokio::join!(p.store(f.a, a.clone()), p.store(f.a, b.clone()));
        assert_eq!(
            ra.unwrap(),
            StoreOutcome {
                stored: 2,
                already_present: 0
            }
        );
        assert_eq!(
            rb.unwrap(),
            StoreOutcome {
                stored: 1,
                already_present: 0
            }
        );
        assert_eq!(f.catalog.list_packs().unwrap().len(), 1);
        let all: Vec<BlobId> = ids(&a).into_iter().chain(ids(&b)).collect();
        assert!(f.catalog.missing_blobs(f.a, &all).unwrap().is_empty());
    }

    #[tokio::test]
    async fn storing_twice_stores_nothing_new() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        // A duplicate inside one call is stored once.
        let blobs = vec![blob(1, 10), blob(2, 20), blob(1, 10)];
        assert_eq!(
            p.store(f.a, blobs.clone()).await.unwrap(),
            StoreOutcome {
                stored: 2,
                already_present: 1
            }
        );
        assert_eq!(
            p.store(f.a, blobs).await.unwrap(),
            StoreOutcome {
                stored: 0,
                already_present: 3
            }
        );
        let mixed = vec![blob(2, 20), blob(9, 5)];
        assert_eq!(
            p.store(f.a, mixed).await.unwrap(),
            StoreOutcome {
                stored: 1,
                already_present: 1
            }
        );
        assert_eq!(f.catalog.list_packs().unwrap().len(), 2);
        assert_eq!(f.store.list("packs/").await.unwrap().len(), 2);
        assert_eq!(
            p.store(f.a, Vec::new()).await.unwrap(),
            StoreOutcome::default()
        );
    }

    #[tokio::test]
    async fn stored_blobs_read_back_and_the_pack_parses() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let header_bytes = b"age-encryption.org/v1 header bytes".to_vec();
        let header = PackBlob {
            id: BlobId::of_public(&header_bytes),
            kind: BlobKind::SessionHeader,
            flags: 0,
            header_id: BlobId::of_public(&header_bytes),
            data: header_bytes.into(),
        };
        let blobs = vec![header, blob(4, 1000), blob(5, 0)];
        p.store(f.a, blobs.clone()).await.unwrap();

        let locs = f.catalog.blob_locations(f.a, &ids(&blobs)).unwrap();
        assert_eq!(locs.len(), blobs.len());
        for (b, loc) in blobs.iter().zip(&locs) {
            assert_eq!((loc.pool.as_str(), loc.kind), ("pool-1", b.kind));
            assert_eq!(read_blob(f.store.as_ref(), loc).await.unwrap(), b.data);
        }

        let pack = f.catalog.list_packs().unwrap().remove(0);
        let bytes = f.store.get(&pack_object_name(&pack.name)).await.unwrap();
        assert_eq!(
            (bytes.len() as u64, *blake3::hash(&bytes).as_bytes()),
            (pack.size, pack.hash)
        );
        let entries = parse_pack(&bytes).unwrap();
        assert_eq!(
            ids(&blobs),
            entries.iter().map(|e| e.id).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn concurrent_duplicates_of_one_tenant_store_once() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let (ra, rb) = tokio::join!(
            p.store(f.a, vec![blob(1, 10), blob(2, 10)]),
            p.store(f.a, vec![blob(2, 10)])
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.stored + rb.stored, 2);
        assert_eq!(ra.already_present + rb.already_present, 1);
        let pack = f.catalog.list_packs().unwrap().remove(0);
        let bytes = f.store.get(&pack_object_name(&pack.name)).await.unwrap();
        assert_eq!(parse_pack(&bytes).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dedup_is_per_tenant() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let stored = |n| StoreOutcome {
            stored: n,
            already_present: 0,
        };
        // The same id for two tenants in one group: one copy each, one pack.
        let mut b_copy = blob(1, 10);
        b_copy.data = vec![0xB1; 12].into();
        let (ra, rb) = tokio::join!(
            p.store(f.a, vec![blob(1, 10)]),
            p.store(f.b, vec![b_copy.clone()])
        );
        assert_eq!((ra.unwrap(), rb.unwrap()), (stored(1), stored(1)));
        assert_eq!(f.catalog.list_packs().unwrap().len(), 1);
        let id = [blob(1, 10).id];
        let loc_a = f.catalog.blob_locations(f.a, &id).unwrap().remove(0);
        let loc_b = f.catalog.blob_locations(f.b, &id).unwrap().remove(0);
        assert_eq!(loc_a.pack, loc_b.pack);
        assert_ne!(loc_a.offset, loc_b.offset);
        assert_eq!(
            read_blob(f.store.as_ref(), &loc_a).await.unwrap(),
            blob(1, 10).data
        );
        assert_eq!(
            read_blob(f.store.as_ref(), &loc_b).await.unwrap(),
            b_copy.data
        );

        // B uploading under an id first (say, to poison A's dedup) does not
        // make it present for A: A stores its own copy and reads it back.
        let mut poison = blob(2, 20);
        poison.data = bytes::Bytes::from_static(b"not what A will upload");
        assert_eq!(p.store(f.b, vec![poison.clone()]).await.unwrap(), stored(1));
        let id = [poison.id];
        assert_eq!(f.catalog.missing_blobs(f.a, &id).unwrap(), id);
        let loc_b = f.catalog.blob_locations(f.b, &id).unwrap();
        assert_eq!(p.store(f.a, vec![blob(2, 20)]).await.unwrap(), stored(1));
        let loc_a = f.catalog.blob_locations(f.a, &id).unwrap().remove(0);
        assert_ne!(loc_a.pack, loc_b[0].pack);
        assert_eq!(
            read_blob(f.store.as_ref(), &loc_a).await.unwrap(),
            blob(2, 20).data
        );
        assert_eq!(f.catalog.blob_locations(f.b, &id).unwrap(), loc_b);
        // Now each tenant's copy dedups against itself.
        for t in [f.a, f.b] {
            assert_eq!(
                p.store(t, vec![blob(2, 20)]).await.unwrap(),
                StoreOutcome {
                    stored: 0,
                    already_present: 1
                }
            );
        }
        assert_eq!(f.catalog.list_packs().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn small_max_pack_bytes_splits_groups() {
        let f = fixture();
        let config = PackerConfig {
            max_pack_bytes: 100,
            ..PackerConfig::default()
        };
        let p = packer(&f, config);
        let (r1, r2, r3) = tokio::join!(
            p.store(f.a, vec![blob(1, 60)]),
            p.store(f.a, vec![blob(2, 60)]),
            p.store(f.a, vec![blob(3, 30)])
        );
        for r in [r1, r2, r3] {
            assert_eq!(r.unwrap().stored, 1);
        }
        assert_eq!(f.catalog.list_packs().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_session_header_is_refused() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        let mut bad = blob(7, 10);
        bad.kind = BlobKind::SessionHeader;
        let err = p.store(f.a, vec![blob(8, 1), bad]).await.unwrap_err();
        assert!(
            matches!(err, PackerError::HeaderIdMismatch { .. }),
            "{err:?}"
        );
        assert!(f.catalog.list_packs().unwrap().is_empty());
    }

    /// A pool whose writes always fail.
    struct FailingStore;

    impl BlobStore for FailingStore {
        fn put<'a>(
            &'a self,
            name: &'a str,
            _data: Vec<u8>,
        ) -> BoxFuture<'a, Result<(), BlobStoreError>> {
            Box::pin(async move {
                Err(BlobStoreError::Backend {
                    op: "put",
                    name: name.to_owned(),
                    source: "disk full".into(),
                })
            })
        }
        fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
            Box::pin(async move {
                Err(BlobStoreError::NotFound {
                    name: name.to_owned(),
                })
            })
        }
        fn get_range<'a>(
            &'a self,
            name: &'a str,
            _: u64,
            _: u64,
        ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
            self.get(name)
        }
        fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>> {
            Box::pin(async move {
                Err(BlobStoreError::NotFound {
                    name: name.to_owned(),
                })
            })
        }
    }

    #[tokio::test]
    async fn failed_write_fails_every_request_and_records_nothing() {
        let f = fixture();
        let p = Packer::start(
            Arc::new(FailingStore),
            Arc::clone(&f.catalog),
            "pool-1".to_owned(),
            PackerConfig::default(),
        );
        let (a, b) = (vec![blob(1, 10)], vec![blob(2, 10)]);
        let (ra, rb) = tokio::join!(p.store(f.a, a.clone()), p.store(f.a, b.clone()));
        for r in [ra, rb] {
            let err = r.unwrap_err();
            assert!(matches!(err, PackerError::Put { .. }), "{err:?}");
        }
        let all: Vec<BlobId> = ids(&a).into_iter().chain(ids(&b)).collect();
        assert_eq!(f.catalog.missing_blobs(f.a, &all).unwrap(), all);
        assert!(f.catalog.list_packs().unwrap().is_empty());
        // The packer keeps serving after a failure.
        assert!(p.store(f.a, vec![blob(3, 1)]).await.is_err());
        p.shutdown().await;
    }

    #[tokio::test]
    async fn read_blob_reports_missing_pack() {
        let f = fixture();
        let loc = BlobLocation {
            id: BlobId([1; 32]),
            kind: BlobKind::Data,
            flags: 0,
            header_id: BlobId([2; 32]),
            pool: "pool-1".to_owned(),
            pack: "ab".repeat(32),
            offset: 8,
            length: 4,
        };
        let err = read_blob(f.store.as_ref(), &loc).await.unwrap_err();
        assert!(
            matches!(&err, PackerError::Read { source, .. } if source.is_not_found()),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn store_after_shutdown_of_task_is_closed() {
        let f = fixture();
        let p = packer(&f, PackerConfig::default());
        // Queued requests die with the task: their callers see Closed.
        p.task.abort();
        let err = p.store(f.a, vec![blob(1, 1)]).await.unwrap_err();
        assert!(matches!(err, PackerError::Closed), "{err:?}");
    }
}
