//! Stage 4 of the backup: batches of sealed blobs on one gRPC stream,
//! each acknowledged by the hub only once durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::v1::ingest_client::IngestClient;
use tokio::time::Instant;

use super::*;
use crate::client::{Authed, STALL_LIMIT};

pub(super) struct Uploaded {
    pub(super) blobs: u64,
    pub(super) bytes: u64,
}

/// Stage 4: batches sealed blobs onto the upload stream and checks that
/// every batch comes back acknowledged.
pub(super) async fn upload_stage(
    mut sealed: mpsc::Receiver<JoinHandle<Result<Vec<SealedBlob>, SealError>>>,
    client: HubClient,
    session_id: u64,
    progress: Progress,
) -> Result<Uploaded, BackupError> {
    let ingest = client.bulk;
    let (batch_tx, batch_rx) = mpsc::channel::<BlobBatch>(BATCH_QUEUE);
    // Batches sent and not yet acknowledged, for the stall watchdog.
    let outstanding = Arc::new(AtomicU64::new(0));
    let acks = tokio::spawn(read_acks(ingest, batch_rx, outstanding.clone()));
    let mut sent = Uploaded { blobs: 0, bytes: 0 };
    let mut batches = 0u64;
    let mut current: Vec<ferry_proto::v1::Blob> = Vec::new();
    let mut current_bytes = 0usize;
    let mut stream_broken = false;
    loop {
        let next = sealed.recv().await;
        let flush = match &next {
            None => !current.is_empty(),
            Some(_) => current.len() >= UPLOAD_BATCH_BLOBS || current_bytes >= UPLOAD_BATCH_BYTES,
        };
        if flush {
            let batch = BlobBatch {
                session_id,
                batch: batches,
                blobs: std::mem::take(&mut current),
            };
            outstanding.fetch_add(1, Ordering::SeqCst);
            if batch_tx.send(batch).await.is_err() {
                stream_broken = true;
                break;
            }
            progress.add_sent(current_bytes as u64);
            batches += 1;
            current_bytes = 0;
        }
        let Some(task) = next else { break };
        for blob in task.await.map_err(|e| BackupError::Task(e.to_string()))?? {
            sent.blobs += 1;
            sent.bytes += blob.data.len() as u64;
            current_bytes += blob.data.len();
            current.push(ferry_proto::v1::Blob {
                id: blob.id.0.to_vec(),
                kind: blob.kind as u32,
                flags: u32::from(blob.flags),
                data: blob.data.into(),
            });
        }
    }
    drop(batch_tx);
    let acked = flatten(acks.await)?;
    if stream_broken {
        return Err(BackupError::Hub(HubCallError::Protocol {
            call: "UploadBlobs",
            reason: "the hub closed the upload stream early".into(),
        }));
    }
    let mut acked_sorted = acked.clone();
    acked_sorted.sort_unstable();
    acked_sorted.dedup();
    if acked_sorted.len() != acked.len() || acked_sorted != (0..batches).collect::<Vec<_>>() {
        return Err(BackupError::Hub(HubCallError::Protocol {
            call: "UploadBlobs",
            reason: format!("sent {batches} batches, acknowledged {acked:?}"),
        }));
    }
    Ok(sent)
}

/// Opens the upload stream and collects its acknowledgements, failing it
/// when batches are outstanding and none is acknowledged for
/// [`STALL_LIMIT`]: a hub that is alive but stuck would otherwise hold the
/// backup forever (a dead one is caught sooner, by keepalive).
async fn read_acks(
    mut ingest: IngestClient<Authed>,
    batches: mpsc::Receiver<BlobBatch>,
    outstanding: Arc<AtomicU64>,
) -> Result<Vec<u64>, BackupError> {
    let mut stream = ingest
        .upload_blobs(ReceiverStream::new(batches))
        .await
        .map_err(HubCallError::failed("UploadBlobs"))?
        .into_inner();
    let mut acked = Vec::new();
    let mut waiting_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            // Streaming::message keeps its state in the stream: cancel-safe.
            ack = stream.message() => {
                let Some(ack) = ack.map_err(HubCallError::failed("UploadBlobs"))? else { break };
                tracing::debug!(batch = ack.batch, stored = ack.stored, "batch acknowledged");
                let _ = outstanding.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(1))
                });
                acked.push(ack.batch);
                waiting_since = None;
            }
            _ = tick.tick() => {
                if outstanding.load(Ordering::SeqCst) == 0 {
                    waiting_since = None;
                } else if waiting_since.get_or_insert_with(Instant::now).elapsed() >= STALL_LIMIT {
                    return Err(BackupError::Hub(HubCallError::Stalled {
                        call: "UploadBlobs",
                        seconds: STALL_LIMIT.as_secs(),
                    }));
                }
            }
        }
    }
    Ok(acked)
}
