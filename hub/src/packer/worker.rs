//! The packing task: gathers requests into groups and writes each group
//! as packs, one per owner (tenant and uploading site).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_proto::BlobId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{PackerConfig, PackerError, Request, StoreOutcome};
use crate::blobstore::BlobStore;
use crate::catalog::{BlobOwner, Catalog, CatalogError, CatalogExt, PackRecord};
use crate::pack::{EncodedPack, PackBlob, encode_pack, pack_object_name};
use crate::stored_filter::{self, StoredFilter};

pub(super) struct Worker {
    pub(super) store: Arc<dyn BlobStore>,
    pub(super) catalog: Arc<dyn Catalog>,
    pub(super) pool: String,
    pub(super) config: PackerConfig,
    pub(super) stored: Arc<StoredFilter>,
    /// Tenant and site names by owner, for the packs' indexes (neither is
    /// ever renamed).
    pub(super) owner_names: Mutex<HashMap<BlobOwner, (String, String)>>,
}

impl Worker {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Request>) {
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
        let blobs: Vec<(BlobOwner, Vec<PackBlob>)> = group
            .iter_mut()
            .map(|r| (r.owner, std::mem::take(&mut r.blobs)))
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
        requests: Vec<(BlobOwner, Vec<PackBlob>)>,
    ) -> Result<Vec<StoreOutcome>, PackerError> {
        // The distinct ids of each owner in the group.
        let mut asked: BTreeMap<BlobOwner, Vec<BlobId>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (owner, blobs) in &requests {
            for blob in blobs {
                if seen.insert((*owner, blob.id)) {
                    asked.entry(*owner).or_default().push(blob.id);
                }
            }
        }
        let (catalog, stored) = (Arc::clone(&self.catalog), Arc::clone(&self.stored));
        let missing: HashSet<(BlobOwner, BlobId)> = blocking("look up blobs", move || {
            let mut missing = HashSet::new();
            for (owner, ids) in asked {
                missing.extend(
                    stored_filter::missing_blobs(&*catalog, &stored, owner, &ids)?
                        .into_iter()
                        .map(|id| (owner, id)),
                );
            }
            Ok(missing)
        })
        .await?
        .map_err(|e: CatalogError| PackerError::Lookup {
            source: Arc::new(e),
        })?;

        // Keep the first copy of each missing (owner, id); count the rest as
        // present.
        let mut chosen = HashSet::new();
        let mut per_owner: BTreeMap<BlobOwner, Vec<PackBlob>> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        for (owner, blobs) in requests {
            let mut outcome = StoreOutcome::default();
            for blob in blobs {
                let key = (owner, blob.id);
                if missing.contains(&key) && chosen.insert(key) {
                    outcome.stored += 1;
                    per_owner.entry(owner).or_default().push(blob);
                } else {
                    outcome.already_present += 1;
                }
            }
            outcomes.push(outcome);
        }
        // A pack holds one owner's blobs (it names tenant and site, for
        // recovery): a group of several owners becomes several packs,
        // written at once.
        let writes = per_owner
            .into_iter()
            .map(|(owner, blobs)| self.write_pack(owner, blobs));
        for written in futures_util::future::join_all(writes).await {
            written?;
        }
        Ok(outcomes)
    }

    /// The tenant's and site's names of `owner`, from the catalog the
    /// first time.
    async fn owner_names(&self, owner: BlobOwner) -> Result<(String, String), PackerError> {
        if let Some(names) = self.lock_names().get(&owner) {
            return Ok(names.clone());
        }
        let catalog = Arc::clone(&self.catalog);
        let found = blocking("look up tenant and site", move || {
            catalog.read(|r| Ok((r.tenant(owner.tenant)?, r.site(owner.site)?)))
        })
        .await?
        .map_err(|e| PackerError::Lookup {
            source: Arc::new(e),
        })?;
        let not_found = |what, key: i64| PackerError::Lookup {
            source: Arc::new(CatalogError::NotFound {
                what,
                key: key.to_string(),
            }),
        };
        let names = match found {
            (Some(tenant), Some(site)) if site.tenant == owner.tenant => (tenant.name, site.name),
            (None, _) => return Err(not_found("tenant", owner.tenant.0)),
            (Some(_), _) => return Err(not_found("site of the tenant", owner.site.0)),
        };
        self.lock_names().insert(owner, names.clone());
        Ok(names)
    }

    fn lock_names(&self) -> std::sync::MutexGuard<'_, HashMap<BlobOwner, (String, String)>> {
        // The map is only a cache; a poisoned one is still right.
        self.owner_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `blobs` of `owner` as one pack and records it.
    async fn write_pack(&self, owner: BlobOwner, blobs: Vec<PackBlob>) -> Result<(), PackerError> {
        let (tenant_name, site_name) = self.owner_names(owner).await?;
        // Encoding copies and hashes up to max_pack_bytes: keep it off the
        // async workers.
        let EncodedPack {
            bytes,
            entries,
            hash,
        } = blocking("encode pack", move || {
            encode_pack(&tenant_name, &site_name, &blobs)
        })
        .await?
        .map_err(|source| PackerError::Encode { source })?;

        let record = PackRecord {
            name: hex::encode(hash),
            pool: self.pool.clone(),
            size: bytes.len() as u64,
            hash,
        };
        let object = pack_object_name(&record.name);
        // Timed for the debug line below: where a pack's latency goes.
        let started = std::time::Instant::now();
        self.store
            .put(&object, bytes)
            .await
            .map_err(|e| PackerError::Put {
                pool: self.pool.clone(),
                object: object.clone(),
                source: Arc::new(e),
            })?;

        let entries: Vec<(BlobOwner, _)> = entries.into_iter().map(|e| (owner, e)).collect();
        let (catalog, stored) = (Arc::clone(&self.catalog), Arc::clone(&self.stored));
        let (name, blob_count) = (record.name.clone(), entries.len());
        let put_ms = started.elapsed().as_millis() as u64;
        let newly = blocking("record pack", move || {
            let newly = catalog.record_pack(&record, &entries)?;
            stored.insert(owner, entries.iter().map(|(_, e)| &e.id));
            Ok(newly)
        })
        .await?
        .map_err(|e| PackerError::Record {
            pack: name.clone(),
            source: Arc::new(e),
        })?;
        let record_ms = started.elapsed().as_millis() as u64 - put_ms;
        tracing::debug!(pack = %name, pool = %self.pool, tenant = owner.tenant.0, site = owner.site.0, blobs = blob_count, newly, put_ms, record_ms, "pack stored");
        Ok(())
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
