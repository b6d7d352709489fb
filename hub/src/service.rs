//! The gRPC services agents call: `Ingest` and `Journal`. Every call is
//! authenticated by a site token; a site writes only to buckets it is the
//! source of.
//!
//! Blobs are per tenant: every blob lookup, upload and fetch is made for the
//! calling site's tenant, so a site can neither learn of, read, nor
//! pre-empt (by uploading under the same id) another tenant's blobs,
//! whatever ids it sends.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_proto::auth::{AUTHORIZATION, parse_bearer, token_hash};
use ferry_proto::status::MISSING_CHUNKS;
use ferry_proto::v1::ingest_server::Ingest;
use ferry_proto::v1::journal_server::Journal;
use ferry_proto::v1::{
    BlobBatch, BlobBatchAck, CheckReferencesRequest, CheckReferencesResponse, CommitInfo,
    CommitRequest, CommitResponse, FetchBlobsRequest, FetchedBlob, FindMissingRequest,
    FindMissingResponse, ListCommitsRequest, ListCommitsResponse, OpenSessionRequest,
    OpenSessionResponse,
};
use ferry_proto::{BlobId, BlobKind, FLAG_ZSTD, ID_LEN};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::blobstore::Pools;
use crate::catalog::{
    Bucket, Catalog, CatalogError, CatalogExt, CommitKind, ErrorKind, NewCommit, Session, Site,
    TenantId,
};
use crate::fetch;
use crate::pack::PackBlob;
use crate::packer::Packer;

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
    tokens: RwLock<HashMap<[u8; 32], Site>>,
}

impl HubState {
    pub fn new(catalog: Arc<dyn Catalog>, pools: Arc<Pools>, packer: Packer) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            pools,
            packer,
            tokens: RwLock::default(),
        })
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
                    let ids: Vec<BlobId> = part
                        .chunks_exact(ID_LEN)
                        .filter_map(|id| <[u8; ID_LEN]>::try_from(id).ok().map(BlobId))
                        .collect();
                    missing.extend(c.missing_blobs(tenant, &ids)?);
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

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Site, Status> {
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
        if let Some(site) = self.tokens.read().ok().and_then(|t| t.get(&hash).cloned()) {
            return Ok(site);
        }
        match self
            .catalog(move |c| c.read(|r| r.site_by_token_hash(&hash)))
            .await?
        {
            Some(site) => {
                if let Ok(mut cache) = self.tokens.write() {
                    cache.insert(hash, site.clone());
                }
                Ok(site)
            }
            None => {
                tracing::warn!(peer = ?request.remote_addr(), "authentication failed: unknown site token");
                Err(Status::unauthenticated("unknown site token"))
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

/// Checks one uploaded blob and turns it into what the packer stores.
fn pack_blob(blob: ferry_proto::v1::Blob, header_id: BlobId) -> Result<PackBlob, Status> {
    let id = BlobId::from_slice("Blob.id", &blob.id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let kind = match u8::try_from(blob.kind).ok().and_then(BlobKind::from_u8) {
        Some(k @ (BlobKind::Data | BlobKind::Manifest)) => k,
        _ => {
            return Err(Status::invalid_argument(format!(
                "blob {id}: kind {} not accepted",
                blob.kind
            )));
        }
    };
    let flags = match u8::try_from(blob.flags) {
        Ok(f) if f & !FLAG_ZSTD == 0 => f,
        _ => {
            return Err(Status::invalid_argument(format!(
                "blob {id}: unknown flags {:#x}",
                blob.flags
            )));
        }
    };
    if blob.data.len() > MAX_BLOB_BYTES {
        return Err(Status::invalid_argument(format!(
            "blob {id}: {} bytes, at most {MAX_BLOB_BYTES}",
            blob.data.len()
        )));
    }
    Ok(PackBlob {
        id,
        kind,
        flags,
        header_id,
        data: blob.data,
    })
}

/// Copies a batch's small blobs out of the frame they came in, all into one
/// buffer. A large blob stays a slice of the frame. A slice keeps the whole
/// frame alive until its pack is written, and a million tiny blobs pinned
/// frames worth 30 MiB more; one buffer per batch, not one per blob, spares
/// the allocator 50,000 allocations and frees on as many small files.
fn own_small_blobs(blobs: &mut [PackBlob]) {
    let small = |b: &PackBlob| b.data.len() < OWN_BUFFER_BELOW;
    let total: usize = blobs
        .iter()
        .filter(|b| small(b))
        .map(|b| b.data.len())
        .sum();
    if total == 0 {
        return;
    }
    let mut buffer = Vec::with_capacity(total);
    for blob in blobs.iter().filter(|b| small(b)) {
        buffer.extend_from_slice(&blob.data);
    }
    let buffer = bytes::Bytes::from(buffer);
    let mut at = 0;
    for blob in blobs.iter_mut().filter(|b| small(b)) {
        let end = at + blob.data.len();
        blob.data = buffer.slice(at..end);
        at = end;
    }
}

/// Blobs below this size are copied out of the received frame.
const OWN_BUFFER_BELOW: usize = 64 << 10;

#[derive(Clone)]
pub struct IngestService(pub Arc<HubState>);

type AckStream = Pin<Box<dyn Stream<Item = Result<BlobBatchAck, Status>> + Send>>;
type BlobStream = Pin<Box<dyn Stream<Item = Result<FetchedBlob, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn open_session(
        &self,
        request: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let hub = &self.0;
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_write(&site, &req.bucket).await?;
        if req.header.len() > MAX_HEADER_BYTES
            || !req.header.starts_with(b"age-encryption.org/v1\n")
        {
            return Err(Status::invalid_argument(
                "header: not an age v1 header, or too large",
            ));
        }
        let header_id = BlobId::of_public(&req.header);
        hub.packer
            .store(
                site.tenant,
                vec![PackBlob {
                    id: header_id,
                    kind: BlobKind::SessionHeader,
                    flags: 0,
                    header_id: BlobId::default(),
                    data: req.header.into(),
                }],
            )
            .await
            .map_err(|e| Status::unavailable(format!("storing the session header: {e}")))?;
        let lease_until = unix_now() + LEASE_SECS;
        let site_id = site.id;
        let session = hub
            .catalog(move |c| {
                c.write(|w| w.open_session(site_id, bucket.id, &header_id, lease_until))
            })
            .await?;
        tracing::info!(site = %site.name, bucket = %req.bucket, session = session.0, "session opened");
        Ok(Response::new(OpenSessionResponse {
            session_id: session.0 as u64,
            lease_until_unix: lease_until,
            header_id: header_id.0.to_vec(),
        }))
    }

    async fn find_missing(
        &self,
        request: Request<FindMissingRequest>,
    ) -> Result<Response<FindMissingResponse>, Status> {
        let hub = &self.0;
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        hub.session(&site, req.session_id).await?;
        let ids = ids_from("FindMissingRequest.ids", &req.ids, MAX_IDS_PER_CALL)?;
        let (tenant, asked) = (site.tenant, ids.clone());
        let stored = hub.packer.stored().clone();
        let missing: std::collections::HashSet<BlobId> = hub
            .catalog(move |c| crate::stored_filter::missing_blobs(c, &stored, tenant, &asked))
            .await?
            .into_iter()
            .collect();
        let missing = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| missing.contains(id))
            .map(|(i, _)| i as u32)
            .collect();
        Ok(Response::new(FindMissingResponse { missing }))
    }

    type UploadBlobsStream = AckStream;

    async fn upload_blobs(
        &self,
        request: Request<Streaming<BlobBatch>>,
    ) -> Result<Response<Self::UploadBlobsStream>, Status> {
        let hub = self.0.clone();
        let site = hub.authenticate(&request).await?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STORES_PER_STREAM);
        tokio::spawn(async move {
            let mut sessions: HashMap<u64, BlobId> = HashMap::new();
            let mut storing = JoinSet::new();
            let result: Result<(), Status> = async {
                let mut inbound_done = false;
                loop {
                    tokio::select! {
                        // Acknowledge each batch as soon as it is durable.
                        Some(done) = storing.join_next(), if !storing.is_empty() => {
                            let ack = done.map_err(|e| Status::internal(e.to_string()))??;
                            tx.send(Ok(ack)).await.map_err(|_| Status::cancelled("client went away"))?;
                        }
                        // Take more only while fewer than STORES_PER_STREAM are being stored.
                        message = inbound.message(), if !inbound_done && storing.len() < STORES_PER_STREAM => {
                            let Some(batch) = message? else {
                                inbound_done = true;
                                continue;
                            };
                            let header_id = match sessions.get(&batch.session_id) {
                                Some(h) => *h,
                                None => {
                                    let s = hub.session(&site, batch.session_id).await?;
                                    sessions.insert(batch.session_id, s.header_id);
                                    s.header_id
                                }
                            };
                            let mut blobs = batch
                                .blobs
                                .into_iter()
                                .map(|b| pack_blob(b, header_id))
                                .collect::<Result<Vec<_>, _>>()?;
                            own_small_blobs(&mut blobs);
                            let hub = hub.clone();
                            let (number, tenant) = (batch.batch, site.tenant);
                            storing.spawn(async move {
                                let outcome = hub.packer.store(tenant, blobs).await.map_err(|e| {
                                    Status::unavailable(format!("storing batch {number}: {e}"))
                                })?;
                                Ok::<_, Status>(BlobBatchAck {
                                    batch: number,
                                    stored: outcome.stored as u32,
                                    already_present: outcome.already_present as u32,
                                })
                            });
                        }
                        else => break,
                    }
                }
                Ok(())
            }
            .await;
            if let Err(status) = result {
                tracing::warn!(site = %site.name, %status, "upload stream failed");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn check_references(
        &self,
        request: Request<CheckReferencesRequest>,
    ) -> Result<Response<CheckReferencesResponse>, Status> {
        let hub = &self.0;
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        hub.session(&site, req.session_id).await?;
        hub.refuse_missing(
            site.tenant,
            "CheckReferencesRequest.data_chunk_ids",
            Vec::new(),
            req.data_chunk_ids,
        )
        .await?;
        Ok(Response::new(CheckReferencesResponse {}))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let hub = &self.0;
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        let session = hub.session(&site, req.session_id).await?;
        if req.kind != "snapshot" {
            return Err(Status::invalid_argument(format!(
                "commit kind {:?} not supported",
                req.kind
            )));
        }
        let manifest = ids_from("CommitRequest.manifest", &req.manifest, MAX_IDS_PER_CALL)?;
        // Never journal a commit that points at blobs the hub does not hold.
        hub.refuse_missing(
            site.tenant,
            "CommitRequest.data_chunk_ids",
            manifest.clone(),
            req.data_chunk_ids,
        )
        .await?;
        let time_unix_ms = unix_now_ms();
        let commit = NewCommit {
            site: site.id,
            time_unix_ms,
            kind: CommitKind::Snapshot,
            manifest,
            body: req.body,
            files: req.files,
            bytes: req.bytes,
        };
        let bucket = session.bucket;
        let sid = session.id;
        let seq = hub
            .catalog(move |c| {
                // One unit of work: the commit and the closing of its
                // session land together or not at all.
                c.write(|w| {
                    let seq = w.append_commit(bucket, &commit)?;
                    w.close_session(sid)?;
                    Ok(seq)
                })
            })
            .await?;
        tracing::info!(site = %site.name, bucket = bucket.0, seq, "commit appended");
        Ok(Response::new(CommitResponse { seq, time_unix_ms }))
    }
}

#[derive(Clone)]
pub struct JournalService(pub Arc<HubState>);

#[tonic::async_trait]
impl Journal for JournalService {
    async fn list_commits(
        &self,
        request: Request<ListCommitsRequest>,
    ) -> Result<Response<ListCommitsResponse>, Status> {
        let hub = &self.0;
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_read(&site, &req.bucket).await?;
        let limit = match req.limit {
            0 => 1000,
            n => n.min(1000) as usize,
        };
        let (bucket_id, tenant, after) = (bucket.id, site.tenant, req.after_seq);
        let (commits, sites) = hub
            .catalog(move |c| {
                c.read(|r| Ok((r.commits(bucket_id, after, limit)?, r.list_sites(tenant)?)))
            })
            .await?;
        let names: HashMap<_, _> = sites.into_iter().map(|s| (s.id, s.name)).collect();
        let commits = commits
            .into_iter()
            .map(|c| CommitInfo {
                seq: c.seq,
                site: names.get(&c.site).cloned().unwrap_or_default(),
                time_unix_ms: c.time_unix_ms,
                kind: c.kind.as_str().to_string(),
                manifest: c.manifest.iter().map(|id| id.0.to_vec()).collect(),
                body: c.body,
                files: c.files,
                bytes: c.bytes,
            })
            .collect();
        Ok(Response::new(ListCommitsResponse { commits }))
    }

    type FetchBlobsStream = BlobStream;

    async fn fetch_blobs(
        &self,
        request: Request<FetchBlobsRequest>,
    ) -> Result<Response<Self::FetchBlobsStream>, Status> {
        let hub = self.0.clone();
        let site = hub.authenticate(&request).await?;
        let req = request.into_inner();
        hub.bucket_for_read(&site, &req.bucket).await?;
        let ids = ids_from("FetchBlobsRequest.ids", &req.ids, MAX_IDS_PER_CALL)?;
        let (tenant, asked) = (site.tenant, ids.clone());
        let locations: HashMap<BlobId, _> = hub
            .catalog(move |c| c.blob_locations(tenant, &asked))
            .await?
            .into_iter()
            .map(|l| (l.id, l))
            .collect();
        let planned = fetch::plan(ids.into_iter().map(|id| (id, locations.get(&id).cloned())));
        let (tx, rx) = mpsc::channel(4);
        let pools = hub.pools.clone();
        tokio::spawn(fetch::run(pools, planned, async move |fetched| {
            let item = match fetched {
                Ok((loc, data)) => Ok(FetchedBlob {
                    id: loc.id.0.to_vec(),
                    kind: loc.kind as u32,
                    flags: u32::from(loc.flags),
                    header_id: loc.header_id.0.to_vec(),
                    data,
                }),
                Err((id, fetch::FetchError::Missing)) => {
                    Err(Status::not_found(format!("blob {id} is not stored")))
                }
                Err((id, e)) => {
                    tracing::error!(blob = %id, error = %e, "reading blob");
                    Err(Status::data_loss(format!("blob {id}: {e}")))
                }
            };
            tx.send(item).await.is_ok()
        }));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    //! Tenant isolation of the blob RPCs, through a real gRPC server on a
    //! loopback port.

    use super::*;
    use crate::blobstore::{BlobStore, LocalDirStore};
    use crate::catalog::{CatalogExt, SqliteCatalog};
    use crate::packer::PackerConfig;
    use ferry_proto::v1::Blob;
    use ferry_proto::v1::ingest_client::IngestClient;
    use ferry_proto::v1::ingest_server::IngestServer;
    use ferry_proto::v1::journal_client::JournalClient;
    use ferry_proto::v1::journal_server::JournalServer;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::Channel;

    /// Small blobs leave the frame (one new buffer for all of them) with
    /// their bytes unchanged; a large one stays a slice of the frame.
    #[test]
    fn small_blobs_leave_the_frame_and_keep_their_bytes() {
        let sizes = [10, OWN_BUFFER_BELOW, 0, 3000];
        let frame: bytes::Bytes = (0..sizes.iter().sum::<usize>())
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let mut at = 0;
        let mut blobs: Vec<PackBlob> = (0u8..)
            .zip(sizes)
            .map(|(n, len)| {
                let data = frame.slice(at..at + len);
                at += len;
                PackBlob {
                    id: BlobId([n; 32]),
                    kind: BlobKind::Data,
                    flags: 0,
                    header_id: BlobId([9; 32]),
                    data,
                }
            })
            .collect();
        let before: Vec<Vec<u8>> = blobs.iter().map(|b| b.data.to_vec()).collect();
        own_small_blobs(&mut blobs);
        let after: Vec<Vec<u8>> = blobs.iter().map(|b| b.data.to_vec()).collect();
        assert_eq!(after, before);
        let in_frame = |b: &PackBlob| {
            let (start, p) = (frame.as_ptr() as usize, b.data.as_ptr() as usize);
            (start..start + frame.len()).contains(&p)
        };
        assert!(in_frame(&blobs[1]), "the large blob was copied");
        assert!(
            !in_frame(&blobs[0]) && !in_frame(&blobs[3]),
            "a small blob still pins the frame"
        );
        // The small ones share one buffer, back to back.
        let (first, last) = (
            blobs[0].data.as_ptr() as usize,
            blobs[3].data.as_ptr() as usize,
        );
        assert_eq!(last, first + sizes[0]);
    }

    struct Hub {
        _dir: tempfile::TempDir,
        ingest: IngestClient<Channel>,
        journal: JournalClient<Channel>,
    }

    /// A hub with tenants "alpha" and "beta", each with one site (token
    /// `<tenant>-token`) and a bucket "data" it is the source of.
    async fn hub() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let catalog: Arc<dyn Catalog> =
            Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
        for tenant in ["alpha", "beta"] {
            let t = catalog.write(|w| w.create_tenant(tenant)).unwrap();
            let site = catalog
                .write(|w| w.create_site(t, "site", &token_hash(&format!("{tenant}-token"))))
                .unwrap();
            catalog.write(|w| w.create_bucket(t, "data", site)).unwrap();
        }
        let store: Arc<dyn BlobStore> =
            Arc::new(LocalDirStore::open(dir.path().join("pool")).unwrap());
        let packer = Packer::start(
            store.clone(),
            catalog.clone(),
            "local".to_owned(),
            PackerConfig::default(),
        );
        let state = HubState::new(catalog, Arc::new(Pools::one("local", store)), packer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IngestServer::new(IngestService(state.clone())))
                .add_service(JournalServer::new(JournalService(state)))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Hub {
            _dir: dir,
            ingest: IngestClient::new(channel.clone()),
            journal: JournalClient::new(channel),
        }
    }

    fn authed<T>(tenant: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            AUTHORIZATION,
            format!("Bearer {tenant}-token").parse().unwrap(),
        );
        request
    }

    fn id(seed: u8) -> BlobId {
        BlobId([seed; 32])
    }

    impl Hub {
        async fn open(&mut self, tenant: &str) -> u64 {
            let header = format!("age-encryption.org/v1\n{tenant} header\n").into_bytes();
            self.ingest
                .open_session(authed(
                    tenant,
                    OpenSessionRequest {
                        bucket: format!("{tenant}/data"),
                        header,
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .session_id
        }

        async fn find_missing(&mut self, tenant: &str, session: u64, ids: &[BlobId]) -> Vec<u32> {
            self.ingest
                .find_missing(authed(
                    tenant,
                    FindMissingRequest {
                        session_id: session,
                        ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .missing
        }

        async fn upload(
            &mut self,
            tenant: &str,
            session: u64,
            blobs: &[(BlobId, &[u8])],
        ) -> BlobBatchAck {
            let batch = BlobBatch {
                session_id: session,
                batch: 1,
                blobs: blobs
                    .iter()
                    .map(|(id, data)| Blob {
                        id: id.0.to_vec(),
                        kind: BlobKind::Data as u32,
                        flags: 0,
                        data: data.to_vec().into(),
                    })
                    .collect(),
            };
            let mut acks = self
                .ingest
                .upload_blobs(authed(tenant, tokio_stream::iter(vec![batch])))
                .await
                .unwrap()
                .into_inner();
            let ack = acks.next().await.unwrap().unwrap();
            assert!(acks.next().await.is_none());
            ack
        }

        /// The data of each id, or the status of the first failure.
        async fn fetch(&mut self, tenant: &str, ids: &[BlobId]) -> Result<Vec<Vec<u8>>, Status> {
            let mut stream = self
                .journal
                .fetch_blobs(authed(
                    tenant,
                    FetchBlobsRequest {
                        bucket: format!("{tenant}/data"),
                        ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                    },
                ))
                .await?
                .into_inner();
            let mut out = Vec::new();
            while let Some(blob) = stream.next().await {
                out.push(blob?.data.to_vec());
            }
            Ok(out)
        }

        async fn commit(
            &mut self,
            tenant: &str,
            session: u64,
            chunks: &[BlobId],
        ) -> Result<u64, Status> {
            self.ingest
                .commit(authed(
                    tenant,
                    CommitRequest {
                        session_id: session,
                        kind: "snapshot".to_owned(),
                        manifest: Vec::new(),
                        body: b"body".to_vec(),
                        files: 1,
                        bytes: 1,
                        data_chunk_ids: chunks.iter().flat_map(|i| i.0).collect(),
                    },
                ))
                .await
                .map(|r| r.into_inner().seq)
        }
    }

    #[tokio::test]
    async fn another_tenant_cannot_see_fetch_or_reference_blobs() {
        let mut hub = hub().await;
        let sa = hub.open("alpha").await;
        let (x, y) = (id(1), id(2));
        let ack = hub
            .upload("alpha", sa, &[(x, b"alpha x"), (y, b"alpha y")])
            .await;
        assert_eq!((ack.stored, ack.already_present), (2, 0));
        assert!(hub.find_missing("alpha", sa, &[x, y]).await.is_empty());

        let sb = hub.open("beta").await;
        // (a) FindMissing does not reveal that alpha holds x and y.
        assert_eq!(
            hub.find_missing("beta", sb, &[x, id(3), y]).await,
            [0, 1, 2]
        );
        // (b) nor does FetchBlobs hand them out.
        let err = hub.fetch("beta", &[x]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
        // A commit cannot reference them either.
        let err = hub.commit("beta", sb, &[x]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains(MISSING_CHUNKS), "{err:?}");

        // Beta uploading the same id stores beta's own copy.
        let ack = hub.upload("beta", sb, &[(x, b"beta x")]).await;
        assert_eq!((ack.stored, ack.already_present), (1, 0));
        assert_eq!(hub.fetch("beta", &[x]).await.unwrap(), [b"beta x".to_vec()]);
        assert_eq!(
            hub.fetch("alpha", &[x, y]).await.unwrap(),
            [b"alpha x".to_vec(), b"alpha y".to_vec()]
        );
        assert_eq!(hub.commit("beta", sb, &[x]).await.unwrap(), 1);
        assert_eq!(hub.commit("alpha", sa, &[x, y]).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn another_tenant_cannot_poison_dedup() {
        let mut hub = hub().await;
        let (sa, sb) = (hub.open("alpha").await, hub.open("beta").await);
        let w = id(9);
        // (c) beta uploads under an id alpha will use later...
        let ack = hub.upload("beta", sb, &[(w, b"poison")]).await;
        assert_eq!((ack.stored, ack.already_present), (1, 0));
        // ...but for alpha the id is still missing, and alpha's upload of it
        // is stored, not deduplicated against beta's.
        assert_eq!(hub.find_missing("alpha", sa, &[w]).await, [0]);
        let ack = hub.upload("alpha", sa, &[(w, b"the real data")]).await;
        assert_eq!((ack.stored, ack.already_present), (1, 0));
        assert_eq!(
            hub.fetch("alpha", &[w]).await.unwrap(),
            [b"the real data".to_vec()]
        );
        assert_eq!(hub.fetch("beta", &[w]).await.unwrap(), [b"poison".to_vec()]);
        // Within a tenant dedup still works.
        let ack = hub.upload("alpha", sa, &[(w, b"the real data")]).await;
        assert_eq!((ack.stored, ack.already_present), (0, 1));
    }

    #[tokio::test]
    async fn references_are_checked_in_parts_before_the_commit() {
        let mut hub = hub().await;
        let session = hub.open("alpha").await;
        let (x, y) = (id(1), id(2));
        hub.upload("alpha", session, &[(x, b"x"), (y, b"y")]).await;
        let check = |ids: Vec<u8>| {
            let mut ingest = hub.ingest.clone();
            async move {
                ingest
                    .check_references(authed(
                        "alpha",
                        CheckReferencesRequest {
                            session_id: session,
                            data_chunk_ids: ids.into(),
                        },
                    ))
                    .await
            }
        };
        check([x.0, y.0].concat()).await.unwrap();
        // Not stored (or another tenant's): refused as a commit would be.
        let refused = check([x.0, id(7).0].concat()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains(MISSING_CHUNKS), "{refused:?}");
        let torn = check(vec![1; 33]).await.unwrap_err();
        assert_eq!(torn.code(), tonic::Code::InvalidArgument);
        assert!(
            torn.message()
                .contains("CheckReferencesRequest.data_chunk_ids"),
            "{torn:?}"
        );
        // A site checks only within its own sessions.
        let err = hub
            .ingest
            .check_references(authed(
                "beta",
                CheckReferencesRequest {
                    session_id: session,
                    data_chunk_ids: x.0.to_vec().into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        // The commit then lists only the last part.
        assert_eq!(hub.commit("alpha", session, &[y]).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_commit_with_a_torn_id_list_is_refused_and_journals_nothing() {
        let mut hub = hub().await;
        let session = hub.open("alpha").await;
        let stored = id(3);
        hub.upload("alpha", session, &[(stored, b"data")]).await;
        let mut torn: Vec<u8> = stored.0.to_vec();
        torn.push(0);
        let refused = hub
            .ingest
            .commit(authed(
                "alpha",
                CommitRequest {
                    session_id: session,
                    kind: "snapshot".to_owned(),
                    data_chunk_ids: torn.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("data_chunk_ids"),
            "{}",
            refused.message()
        );
        // The same session then commits properly, as sequence 1.
        assert_eq!(hub.commit("alpha", session, &[stored]).await.unwrap(), 1);
    }
}
