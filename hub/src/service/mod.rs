//! The gRPC services agents call: `Ingest`, `Journal`, `Replication` and
//! `Policy`. Every call is authenticated by a site token before its body
//! is read (see `gate`); a site writes only to buckets it is the source of.
//!
//! Blobs are per tenant: every blob lookup, upload and fetch is made for the
//! calling site's tenant, so a site can neither learn of, read, nor
//! pre-empt (by uploading under the same id) another tenant's blobs,
//! whatever ids it sends.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_proto::BlobId;
use ferry_proto::ID_LEN;
use ferry_proto::status::MISSING_CHUNKS;
use ferry_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, MAX_MESSAGE_BYTES, STREAM_WINDOW};
use ferry_proto::v1::ingest_server::IngestServer;
use ferry_proto::v1::journal_server::JournalServer;
use ferry_proto::v1::policy_server::PolicyServer;
use ferry_proto::v1::replication_server::ReplicationServer;
use tonic::Status;

mod gate;
// A hub for fuzzing its handlers (fuzz/ turns the feature on); never in a
// release build.
#[cfg(any(test, feature = "harness"))]
pub mod harness;
mod ingest;
mod journal;
mod policy;
mod replication;
#[cfg(test)]
mod tests;

pub use gate::GateLayer;
pub use ingest::IngestService;
pub use journal::JournalService;
pub use policy::PolicyService;
pub use replication::ReplicationService;

/// How often the hub pings an idle connection, and how long it waits for
/// the answer before it drops a peer that has gone away.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The hub's gRPC server: both services behind the gate, with the data
/// path's window sizes, at most `max_streams` calls per connection.
pub fn router(
    state: Arc<HubState>,
    max_streams: u32,
) -> tonic::transport::server::Router<tower_layer::Stack<GateLayer, tower_layer::Identity>> {
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(max_streams)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(GateLayer(state.clone()))
        .add_service(
            IngestServer::new(IngestService(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            JournalServer::new(JournalService(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(PolicyServer::new(PolicyService(state.clone())))
        .add_service(
            ReplicationServer::new(ReplicationService(state))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
}

use crate::blobstore::Pools;
use crate::catalog::{
    BlobOwner, Bucket, Catalog, CatalogError, CatalogExt, CommitKind, ErrorKind, NewCommit,
    Session, Site,
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
/// Largest commit body (opaque to the hub; the agent's sends none today).
const MAX_COMMIT_BODY_BYTES: usize = 64 << 10;
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
    /// Bumped after every commit this process appends: what following
    /// replicas wait on (they also look every few seconds, for commits
    /// another hub process sharing the catalog appended).
    commits: tokio::sync::watch::Sender<u64>,
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
            commits: tokio::sync::watch::Sender::new(0),
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

    /// Refuses (FAILED_PRECONDITION, [`MISSING_CHUNKS`]) unless `owner`
    /// holds a copy of every blob of `manifest` and of `packed` (32-byte ids
    /// back to back, from the request's `field`). Checked a slice at a time, so no
    /// second copy of a long list is made.
    async fn refuse_missing(
        &self,
        owner: BlobOwner,
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
                let mut missing = c.missing_blobs(owner, &manifest)?;
                for part in packed.chunks(MAX_IDS_PER_CALL * ID_LEN) {
                    missing.extend(c.missing_blobs(owner, &ids_of(part))?);
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

    /// The bucket `name` if `site` may read it: its source or a replica.
    async fn bucket_for_read(&self, site: &Site, name: &str) -> Result<Bucket, Status> {
        let bucket = self.bucket(site, name).await?;
        if !bucket.readable_by(site.id) {
            return Err(Status::permission_denied(format!(
                "site {} is neither the source nor a replica of bucket {name}",
                site.name
            )));
        }
        Ok(bucket)
    }

    /// The bucket `name` if `site` is one of its replicas.
    async fn bucket_for_replica(&self, site: &Site, name: &str) -> Result<Bucket, Status> {
        let bucket = self.bucket(site, name).await?;
        if !bucket.replicas.contains(&site.id) {
            return Err(Status::permission_denied(format!(
                "site {} is not a replica of bucket {name}",
                site.name
            )));
        }
        Ok(bucket)
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
#[derive(Clone)]
pub(crate) struct Principal {
    pub site: Site,
    pub tenant_name: String,
}

impl Principal {
    /// Whose copies this site's uploads are, and which it dedups against.
    pub fn owner(&self) -> BlobOwner {
        BlobOwner {
            tenant: self.site.tenant,
            site: self.site.id,
        }
    }
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
