//! The `Ingest` service: upload sessions, the dedup query, blob upload
//! streams (each batch acknowledged once durable), reference checks and
//! commits.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use ferry_proto::chain::MAC_LEN;
use ferry_proto::v1::ingest_server::Ingest;
use ferry_proto::v1::{
    BlobBatch, BlobBatchAck, CheckReferencesRequest, CheckReferencesResponse, CommitRequest,
    CommitResponse, FindMissingRequest, FindMissingResponse, OpenSessionRequest,
    OpenSessionResponse,
};
use ferry_proto::{BlobId, BlobKind, FLAG_ZSTD};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::records::{Segment, refs};

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
pub(super) fn own_small_blobs(blobs: &mut [PackBlob]) {
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
pub(super) const OWN_BUFFER_BELOW: usize = 64 << 10;

#[derive(Clone)]
pub struct IngestService(pub Arc<HubState>);

type AckStream = Pin<Box<dyn Stream<Item = Result<BlobBatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn open_session(
        &self,
        request: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
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
                site.owner(),
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
        let (session, head) = hub
            .catalog(move |c| {
                c.write(|w| {
                    let session = w.open_session(site_id, bucket.id, &header_id, lease_until)?;
                    Ok((session, w.last_commit(bucket.id)?))
                })
            })
            .await?;
        tracing::info!(site = %site.name, bucket = %req.bucket, session = session.0, "session opened");
        Ok(Response::new(OpenSessionResponse {
            session_id: session.0 as u64,
            lease_until_unix: lease_until,
            header_id: header_id.0.to_vec(),
            head_seq: head.as_ref().map_or(0, |c| c.seq),
            head_mac: head
                .and_then(|c| c.mac)
                .map(|m| m.to_vec())
                .unwrap_or_default(),
        }))
    }

    async fn find_missing(
        &self,
        request: Request<FindMissingRequest>,
    ) -> Result<Response<FindMissingResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        hub.session(&site, req.session_id).await?;
        let ids = ids_from("FindMissingRequest.ids", &req.ids, MAX_IDS_PER_CALL)?;
        let (owner, asked) = (site.owner(), ids.clone());
        let stored = hub.packer.stored().clone();
        let missing: std::collections::HashSet<BlobId> = hub
            .catalog(move |c| crate::stored_filter::missing_blobs(c, &stored, owner, &asked))
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
        let site = super::gate::principal(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STORES_PER_STREAM);
        let running = hub.stream_guard();
        tokio::spawn(async move {
            let _running = running;
            let mut sessions: HashMap<u64, BlobId> = HashMap::new();
            let mut storing = JoinSet::new();
            let mut draining = hub.draining();
            let result: Result<(), Status> = async {
                let mut drained = *draining.borrow_and_update();
                let mut inbound_done = drained;
                loop {
                    tokio::select! {
                        // A stopping hub takes no more batches; those it
                        // holds are stored and acknowledged first. (The
                        // flag only ever turns on, so any change is it.)
                        _ = draining.changed(), if !inbound_done => {
                            inbound_done = true;
                            drained = true;
                        }
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
                            let (number, owner) = (batch.batch, site.owner());
                            storing.spawn(async move {
                                let outcome = hub.packer.store(owner, blobs).await.map_err(|e| {
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
                match drained {
                    true => Err(shutting_down()),
                    false => Ok(()),
                }
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
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.session(&site, req.session_id).await?.bucket;
        let ids = req.data_chunk_ids;
        hub.refuse_missing(
            site.owner(),
            "CheckReferencesRequest.data_chunk_ids",
            Vec::new(),
            ids.clone(),
        )
        .await?;
        // Checked, the part is kept for the commit's segment to list.
        let checked = ids_of(&ids);
        let (hash, bytes) = refs::encode(&checked)
            .map_err(|e| Status::invalid_argument(format!("CheckReferencesRequest: {e}")))?;
        hub.records
            .put(refs::object_name(&site.tenant_name, &hash), bytes)
            .await
            .map_err(|e| Status::unavailable(format!("storing the reference part: {e}")))?;
        // Readable through the bucket from now on (see catalog::references).
        hub.catalog(move |c| c.write(|w| w.add_reference_part(bucket, &hash, &checked)))
            .await?;
        Ok(Response::new(CheckReferencesResponse {
            part: hash.to_vec(),
        }))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let session = hub.session(&site, req.session_id).await?;
        if req.kind != "snapshot" {
            return Err(Status::invalid_argument(format!(
                "commit kind {:?} not supported",
                req.kind
            )));
        }
        // Every listing of the bucket carries the body: one huge body would
        // make the whole journal unlistable.
        if req.body.len() > MAX_COMMIT_BODY_BYTES {
            return Err(Status::invalid_argument(format!(
                "CommitRequest.body: {} bytes, at most {MAX_COMMIT_BODY_BYTES}",
                req.body.len()
            )));
        }
        // The hub cannot check a MAC, only that there is one: an agent
        // checks the chain when it reads the journal back.
        let mac = <[u8; MAC_LEN]>::try_from(req.mac.as_slice()).map_err(|_| {
            Status::invalid_argument(format!(
                "CommitRequest.mac: {} bytes, {MAC_LEN} expected",
                req.mac.len()
            ))
        })?;
        if req.seq == 0 {
            return Err(Status::invalid_argument(
                "CommitRequest.seq: 0 (the session's head_seq + 1 expected)",
            ));
        }
        let manifest = ids_from("CommitRequest.manifest", &req.manifest, MAX_IDS_PER_CALL)?;
        let parts = hashes_from("CommitRequest.reference_parts", &req.reference_parts)?;
        hub.refuse_unstored_parts(&site.tenant_name, &parts).await?;
        // Never journal a commit that points at blobs the hub does not hold.
        let references = req.data_chunk_ids;
        hub.refuse_missing(
            site.owner(),
            "CommitRequest.data_chunk_ids",
            manifest.clone(),
            references.clone(),
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
            seq: Some(req.seq),
            mac: Some(mac),
        };
        let bucket = session.bucket;
        let sid = session.id;
        let mut segment = Segment {
            tenant: site.tenant_name.clone(),
            bucket: String::new(),
            site: site.name.clone(),
            seq: 0,
            time_unix_ms,
            kind: commit.kind,
            files: commit.files,
            bytes: commit.bytes,
            manifest: commit.manifest.clone(),
            reference_parts: parts,
            references: ids_of(&references),
            body: commit.body.clone(),
            mac: commit.mac,
            parent_mac: None,
        };
        let (records, runtime) = (hub.records.clone(), tokio::runtime::Handle::current());
        let seq = hub
            .catalog(move |c| {
                // One unit of work: the commit, its segment in the newest
                // pool and the closing of its session. The segment is
                // durable before the transaction commits, so the pools
                // hold every commit the catalog does (a failed commit may
                // leave a segment, which the next append at that number
                // supersedes: see records::segment).
                c.write(|w| {
                    // In the same transaction as the append: the commit it
                    // follows (recover tells committed segments by it).
                    segment.parent_mac = w.last_commit(bucket)?.and_then(|c| c.mac);
                    let seq = w.append_commit(bucket, &commit)?;
                    w.add_references(bucket, &commit.manifest)?;
                    w.add_references(bucket, &segment.references)?;
                    segment.seq = seq;
                    segment.bucket = w
                        .bucket(bucket)?
                        .ok_or_else(|| CatalogError::NotFound {
                            what: "bucket",
                            key: bucket.to_string(),
                        })?
                        .name;
                    records.put_blocking(&runtime, segment.encode()?)?;
                    w.close_session(sid)?;
                    Ok(seq)
                })
            })
            .await?;
        // Wakes the replicas following the bucket (service::replication).
        hub.commits.send_modify(|n| *n += 1);
        tracing::info!(site = %site.name, bucket = bucket.0, seq, "commit appended");
        Ok(Response::new(CommitResponse { seq, time_unix_ms }))
    }
}
