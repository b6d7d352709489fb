//! The gRPC services agents call: `Ingest` and `Journal`. Every call is
//! authenticated by a site token; a site writes only to buckets it is the
//! source of.
//!
//! Blobs are per tenant: every blob lookup, upload and fetch is made for the
//! calling site's tenant, so a site can neither learn of, read, nor
//! pre-empt (by uploading under the same id) another tenant's blobs,
//! whatever ids it sends.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_proto::BlobId;
use ferry_proto::ID_LEN;
use ferry_proto::auth::{AUTHORIZATION, parse_bearer, token_hash};
use ferry_proto::status::MISSING_CHUNKS;
use tonic::{Request, Status};

mod ingest;
mod journal;
#[cfg(test)]
mod tests;

pub use ingest::IngestService;
pub use journal::JournalService;

use crate::blobstore::Pools;
use crate::catalog::{
    Bucket, Catalog, CatalogError, CatalogExt, CommitKind, ErrorKind, NewCommit, Session, Site,
    TenantId,
};
use crate::pack::PackBlob;
use crate::packer::Packer;
use crate::records::RecordWriter;

/// How long an upload session's lease lasts; renewed by activity.
const LEASE_SECS: i64 = 3600;
/// Largest age header accepted.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// Largest blob accepted: a 4 MiB chunk plus encryption overhead.
const MAX_BLOB_BYTES: usize = (4 << 20) + (64 << 10);
/// Most ids in one FindMissing or FetchBlobs call.
const MAX_IDS_PER_CALL: usize = 10_000;
/// Batches of one upload stream being stored at once (they group into one pack).
const STORES_PER_STREAM: usize = 3;

pub struct HubState {
    pub catalog: Arc<dyn Catalog>,
    pub pools: Arc<Pools>,
    pub packer: Packer,
    /// Where journal segments and reference parts go: the newest pool.
    records: RecordWriter,
    /// Set once the hub is stopping: streams finish what they hold and end
    /// with UNAVAILABLE instead of taking more.
    drain: tokio::sync::watch::Sender<bool>,
    /// Upload and fetch streams still running.
    streams: std::sync::atomic::AtomicUsize,
}

/// Counts a stream as running while it lives.
pub(crate) struct StreamGuard(Arc<HubState>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What a stream that was ended by a stopping hub answers: retryable.
pub(crate) fn shutting_down() -> Status {
    Status::unavailable("the hub is shutting down; every batch acknowledged is stored; retry")
}

impl HubState {
    pub fn new(catalog: Arc<dyn Catalog>, pools: Arc<Pools>, packer: Packer) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            records: RecordWriter::new(&pools),
            pools,
            packer,
            drain: tokio::sync::watch::Sender::new(false),
            streams: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Marks a stream running until the guard drops.
    pub(crate) fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.streams
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        StreamGuard(self.clone())
    }

    /// Drains the hub: every new call is answered UNAVAILABLE ("shutting
    /// down", which agents retry) while the running streams store and
    /// acknowledge what they hold and end. Returns once none is left, or
    /// after `limit`. Connections stay open meanwhile, so a client mid-way
    /// through a backup reads a clear answer, not a closed connection.
    pub async fn drain(&self, limit: std::time::Duration) {
        self.start_draining();
        let until = tokio::time::Instant::now() + limit;
        while self.streams.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= until {
                tracing::warn!(
                    streams = self.streams.load(std::sync::atomic::Ordering::SeqCst),
                    "streams still running at the drain limit"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Tells every stream to finish what it holds and end.
    pub fn start_draining(&self) {
        self.drain.send_replace(true);
    }

    /// Whether [`Self::start_draining`] was called, as a receiver to wait on.
    fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Runs a catalog call on a blocking thread.
    async fn catalog<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Catalog) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, Status> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || op(&*catalog))
            .await
            .map_err(|e| Status::internal(format!("catalog task: {e}")))?
            .map_err(catalog_status)
    }

    /// Refuses (FAILED_PRECONDITION, [`MISSING_CHUNKS`]) unless the tenant
    /// holds every blob of `manifest` and of `packed` (32-byte ids back to
    /// back, from the request's `field`). Checked a slice at a time, so no
    /// second copy of a long list is made.
    async fn refuse_missing(
        &self,
        tenant: TenantId,
        field: &'static str,
        manifest: Vec<BlobId>,
        packed: bytes::Bytes,
    ) -> Result<(), Status> {
        if !packed.len().is_multiple_of(ID_LEN) {
            return Err(Status::invalid_argument(format!(
                "{field}: {} bytes is not a whole number of {ID_LEN}-byte ids",
                packed.len()
            )));
        }
        let missing = self
            .catalog(move |c| {
                let mut missing = c.missing_blobs(tenant, &manifest)?;
                for part in packed.chunks(MAX_IDS_PER_CALL * ID_LEN) {
                    missing.extend(c.missing_blobs(tenant, &ids_of(part))?);
                }
                Ok(missing)
            })
            .await?;
        match missing.first() {
            Some(id) => Err(Status::failed_precondition(format!(
                "{MISSING_CHUNKS}: {} referenced chunks are not stored, e.g. {id}",
                missing.len()
            ))),
            None => Ok(()),
        }
    }

    /// Refuses (FAILED_PRECONDITION) a commit listing a reference part no
    /// pool holds: its segment would name chunks nobody can find.
    async fn refuse_unstored_parts(&self, tenant: &str, parts: &[[u8; 32]]) -> Result<(), Status> {
        'parts: for part in parts {
            let name = crate::records::refs::object_name(tenant, part);
            for (pool, store) in self.pools.newest_first() {
                match store.size(&name).await {
                    Ok(_) => continue 'parts,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        return Err(Status::unavailable(format!(
                            "pool {pool}: looking up reference part {name}: {e}"
                        )));
                    }
                }
            }
            return Err(Status::failed_precondition(format!(
                "CommitRequest.reference_parts: part {} is not stored; check the references again",
                hex::encode(part)
            )));
        }
        Ok(())
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        // A stopping hub starts nothing new.
        if *self.drain.borrow() {
            return Err(shutting_down());
        }
        let token = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer)
            .ok_or_else(|| {
                tracing::warn!(peer = ?request.remote_addr(), "request without a site token");
                Status::unauthenticated("missing `authorization: Bearer <site token>`")
            })?;
        let hash = token_hash(token);
        // Asked of the catalog on every call, not cached: a revoked or
        // rotated token is refused at once, by every hub sharing the
        // catalog. It is one indexed lookup on a reader.
        let found = self
            .catalog(move |c| {
                c.read(|r| {
                    let Some(site) = r.site_by_token_hash(&hash)? else {
                        return Ok(None);
                    };
                    let tenant = r
                        .tenant(site.tenant)?
                        .ok_or_else(|| CatalogError::Corrupt {
                            what: "sites.tenant",
                            detail: format!("site {} names a tenant that does not exist", site.id),
                        })?;
                    Ok(Some(Principal {
                        site,
                        tenant_name: tenant.name,
                    }))
                })
            })
            .await?;
        match found {
            Some(principal) => Ok(principal),
            None => {
                tracing::warn!(peer = ?request.remote_addr(), "authentication failed: unknown or revoked site token");
                Err(Status::unauthenticated("unknown or revoked site token"))
            }
        }
    }

    /// The bucket named "tenant/bucket", if it belongs to the site's tenant.
    async fn bucket(&self, site: &Site, name: &str) -> Result<Bucket, Status> {
        let (tenant_name, bucket_name) = name.split_once('/').ok_or_else(|| {
            Status::invalid_argument(format!("bucket {name:?}: expected \"tenant/bucket\""))
        })?;
        let (tenant_name, bucket_name) = (tenant_name.to_string(), bucket_name.to_string());
        let tenant_id = site.tenant;
        let bucket = self
            .catalog(move |c| {
                c.read(|r| {
                    let Some(tenant) = r.tenant_by_name(&tenant_name)? else {
                        return Ok(None);
                    };
                    if tenant.id != tenant_id {
                        return Ok(None);
                    }
                    r.bucket_by_name(tenant.id, &bucket_name)
                })
            })
            .await?;
        // The same answer for "absent" and "another tenant's": no probing.
        bucket.ok_or_else(|| {
            Status::not_found(format!("bucket {name}: no such bucket for this site"))
        })
    }

    async fn bucket_for_write(&self, site: &Site, name: &str) -> Result<Bucket, Status> {
        let bucket = self.bucket(site, name).await?;
        if bucket.source_site != site.id {
            return Err(Status::permission_denied(format!(
                "site {} is not the source of bucket {name}",
                site.name
            )));
        }
        Ok(bucket)
    }

    async fn bucket_for_read(&self, site: &Site, name: &str) -> Result<Bucket, Status> {
        // Replica placements come with replication; until then only the source reads.
        self.bucket_for_write(site, name).await
    }

    /// The open session `id` of this site, with its lease renewed.
    async fn session(&self, site: &Site, id: u64) -> Result<Session, Status> {
        let sid = crate::catalog::SessionId(
            i64::try_from(id).map_err(|_| Status::invalid_argument("session_id out of range"))?,
        );
        let session = self
            .catalog(move |c| c.read(|r| r.session(sid)))
            .await?
            .ok_or_else(|| Status::not_found(format!("upload session {id}: unknown or closed")))?;
        if session.site != site.id {
            return Err(Status::permission_denied(format!(
                "upload session {id} belongs to another site"
            )));
        }
        if session.closed {
            return Err(Status::failed_precondition(format!(
                "upload session {id} is closed"
            )));
        }
        let now = unix_now();
        if session.lease_until_unix < now {
            return Err(Status::failed_precondition(format!(
                "upload session {id}: lease expired"
            )));
        }
        if session.lease_until_unix < now + LEASE_SECS / 2 {
            self.catalog(move |c| c.write(|w| w.renew_session(sid, now + LEASE_SECS)))
                .await?;
        }
        Ok(session)
    }
}

/// Who is calling: the site a request authenticated as, and its tenant's
/// name (records in the pools name tenants, not catalog ids).
pub(crate) struct Principal {
    pub site: Site,
    pub tenant_name: String,
}

impl std::ops::Deref for Principal {
    type Target = Site;

    fn deref(&self) -> &Site {
        &self.site
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn catalog_status(e: CatalogError) -> Status {
    match e.kind() {
        ErrorKind::NotFound => Status::not_found(e.to_string()),
        ErrorKind::Invalid => Status::invalid_argument(e.to_string()),
        ErrorKind::AlreadyExists => Status::already_exists(e.to_string()),
        ErrorKind::Conflict => Status::failed_precondition(e.to_string()),
        // Retryable: the agent backs off and tries again.
        ErrorKind::Unavailable => {
            tracing::error!(error = %e, "catalog unavailable");
            Status::unavailable(e.to_string())
        }
        ErrorKind::Corrupt => {
            tracing::error!(error = %e, "catalog corrupt");
            Status::internal(e.to_string())
        }
    }
}

/// 32-byte ids back to back, as the requests carry them (the length was
/// checked by [`HubState::refuse_missing`]).
fn ids_of(packed: &[u8]) -> Vec<BlobId> {
    packed
        .chunks_exact(ID_LEN)
        .filter_map(|id| <[u8; ID_LEN]>::try_from(id).ok().map(BlobId))
        .collect()
}

/// A list of 32-byte hashes from the request's `field`.
fn hashes_from(field: &'static str, raw: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, Status> {
    if raw.len() > MAX_IDS_PER_CALL {
        return Err(Status::invalid_argument(format!(
            "{field}: {} hashes, at most {MAX_IDS_PER_CALL}",
            raw.len()
        )));
    }
    raw.iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                Status::invalid_argument(format!("{field}: a hash of {} bytes, not 32", h.len()))
            })
        })
        .collect()
}

fn ids_from(field: &'static str, raw: &[Vec<u8>], limit: usize) -> Result<Vec<BlobId>, Status> {
    if raw.len() > limit {
        return Err(Status::invalid_argument(format!(
            "{field}: {} ids, at most {limit}",
            raw.len()
        )));
    }
    raw.iter()
        .map(|id| {
            BlobId::from_slice(field, id).map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}
