//! The backup pipeline, in stages joined by bounded channels so memory stays
//! flat however large the source:
//!
//! 1. scan (a blocking thread): walk the source, reuse the chunk lists of
//!    unchanged files from the journal, read and chunk the rest, hash each
//!    chunk, and build the manifest as it goes;
//! 2. dedup: ask the hub in batches which chunk ids it lacks;
//! 3. seal (blocking threads, in parallel): compress and encrypt the missing ones;
//! 4. upload: batches of blobs on one gRPC stream, each acknowledged by the
//!    hub only once durable.
//!
//! The commit goes to the hub only after every batch is acknowledged, and
//! the journal takes the scan's results only after the commit: a crash at
//! any point leaves a state a rerun completes, resending nothing the hub has.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_crypto::{SealError, SessionSealer, TenantKeys};
use ferry_proto::chain::{CommitClaim, body_digest, manifest_digest};
use ferry_proto::manifest::{MANIFEST_MAGIC, encode_entry};
use ferry_proto::status::MISSING_CHUNKS;
use ferry_proto::v1::{
    BlobBatch, CheckReferencesRequest, CommitRequest, EntryType, FindMissingRequest, ManifestEntry,
    ObjectMeta, OpenSessionRequest,
};
use ferry_proto::{BlobId, BlobKind};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::blob_codec::{SealedBlob, seal_chunk};
use crate::chain::{self, ChainError, Head, KnownHeads};
use crate::chunker::{ChunkBuffer, ChunkReadError, ChunkerParams};
use crate::client::{HubCallError, HubClient};
use crate::journal::{FileStamp, Journal, JournalError, Keys};
use crate::prefetch::{Item, WalkError, walk_ahead};
use crate::progress::Progress;
use crate::source::dir::stamp_of;
use crate::source::{Content, EntryKind, Skipped, Source, SourceEntry, SourceError};

/// Bundles of chunks in flight between scan and dedup, and a bundle's bounds.
const CHUNK_QUEUE: usize = 8;
const BUNDLE_BYTES: usize = 1 << 20;
const BUNDLE_JOBS: usize = 256;
/// Sealed blobs in flight between seal and upload (also bounds sealing
/// parallelism: five keeps two cores busy). With eight, and dedup queries
/// of up to 8 MiB, the 1 GiB backup peaked at 125-151 MiB; now 122-141.
const SEALED_QUEUE: usize = 5;
/// Batches sent but not yet acknowledged, beyond those the hub is storing.
const BATCH_QUEUE: usize = 1;
/// Upper bounds of one dedup query.
const DEDUP_BATCH_IDS: usize = 4096;
const DEDUP_BATCH_BYTES: usize = 4 << 20;
/// Dedup queries asked before the oldest is answered.
const DEDUP_IN_FLIGHT: usize = 2;
/// How long a dedup query waits for more ids after the first.
const DEDUP_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(3);
/// Upper bounds of the chunks one sealing task takes.
const SEAL_GROUP_BYTES: usize = 1 << 20;
const SEAL_GROUP_CHUNKS: usize = 256;
/// Upper bounds of one upload batch.
const UPLOAD_BATCH_BLOBS: usize = 8192;
const UPLOAD_BATCH_BYTES: usize = 4 << 20;
/// How often a file that keeps changing while it is read is tried.
const READ_ATTEMPTS: usize = 3;
/// Ids per part of a commit's references (4 MiB): parts before the last go
/// to the hub in CheckReferences calls, so no message nears the 64 MiB limit
/// (two million ids) and the agent holds a part, not the whole list.
const REFERENCE_PART_IDS: usize = 1 << 17;
/// Past this many ids, the in-run duplicate filter starts over (the hub's
/// answer stays correct; only a few duplicates may be sealed twice). Far
/// more than are ever in flight; at 1 << 18 the set alone took up to 17 MiB.
const SEEN_LIMIT: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot start an encryption session: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Hub(#[from] HubCallError),
    #[error("the hub lacks chunks the journal says it has: {0}")]
    MissingChunks(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("internal task failed: {0}")]
    Task(String),
    /// A stage stopped because another one failed; never the root cause.
    #[error("backup aborted")]
    Aborted,
}

/// What a backup did, for the operator and for `--json`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BackupReport {
    pub bucket: String,
    pub seq: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Named pipes and device nodes.
    pub specials: u64,
    /// Sockets met and not kept (their process makes them anew).
    pub sockets_not_kept: u64,
    /// Entries kept without their extended attributes, which could not be
    /// read (see the log).
    pub xattrs_unreadable: u64,
    /// Logical size of all files in the snapshot.
    pub bytes: u64,
    pub files_read: u64,
    pub bytes_read: u64,
    pub chunks_sent: u64,
    pub chunks_deduplicated: u64,
    /// Ciphertext bytes uploaded.
    pub bytes_sent: u64,
    pub manifest_chunks: u64,
    pub skipped: Vec<SkippedReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedReport {
    pub path: String,
    pub reason: String,
}

impl From<Skipped> for SkippedReport {
    fn from(s: Skipped) -> Self {
        Self {
            path: String::from_utf8_lossy(&s.path).into_owned(),
            reason: s.reason,
        }
    }
}

/// A chunk found by the scan, on its way to dedup.
struct ChunkJob {
    id: BlobId,
    kind: BlobKind,
    data: Vec<u8>,
}

pub struct BackupJob {
    pub client: HubClient,
    pub keys: Arc<TenantKeys>,
    pub source: Arc<dyn Source>,
    pub journal_path: PathBuf,
    /// The heads this site has seen of its buckets ([`crate::chain`]).
    pub heads_path: PathBuf,
    pub bucket: String,
    pub progress: Progress,
    /// Reuse the journal's chunk lists for unchanged files. Off after the hub
    /// refused a commit for missing chunks: then every file is read again.
    pub trust_journal: bool,
}

/// Runs a backup that trusts the journal for unchanged files; if the hub
/// refuses the commit because it lacks chunks the journal says it holds (a
/// hub restored from an older state, say), runs it again reading everything:
/// the hub is the truth. `job(trust_journal)` makes each attempt's job.
///
/// # Errors
/// As [`run_backup`].
pub async fn run_backup_rechecked(
    job: impl Fn(bool) -> BackupJob,
) -> Result<BackupReport, BackupError> {
    match run_backup(job(true)).await {
        Err(BackupError::MissingChunks(reason)) => {
            tracing::warn!(%reason, "hub lacks chunks of unchanged files; reading every file again");
            run_backup(job(false)).await
        }
        other => other,
    }
}

pub async fn run_backup(job: BackupJob) -> Result<BackupReport, BackupError> {
    let sealer = Arc::new(job.keys.sealer()?);
    let opened = job
        .client
        .ingest
        .clone()
        .open_session(OpenSessionRequest {
            bucket: job.bucket.clone(),
            header: sealer.header().to_vec(),
        })
        .await
        .map_err(HubCallError::failed("OpenSession"))?
        .into_inner();
    let session_id = opened.session_id;
    tracing::info!(bucket = %job.bucket, session_id, "upload session opened");
    // Before anything is sent: the journal this commit will extend must be
    // the one this site last saw, grown perhaps, never cut or forked.
    let head = checked_head(&job, opened.head_seq, &opened.head_mac).await?;

    let (chunk_tx, chunk_rx) = mpsc::channel(CHUNK_QUEUE);
    let (sealed_tx, sealed_rx) = mpsc::channel(SEALED_QUEUE);

    let scan = {
        let keys = job.keys.clone();
        let source = job.source.clone();
        let journal_path = job.journal_path.clone();
        let progress = job.progress.clone();
        let trust_journal = job.trust_journal;
        tokio::task::spawn_blocking(move || {
            let mut journal = Journal::open(&journal_path, Keys::of(&*source))?;
            journal.begin_scan()?;
            // The walker reads the journal (through its own connection) only
            // when it is trusted; otherwise every file counts as changed.
            let walker_journal = trust_journal.then(|| journal_path.clone());
            let scanned = scan_source(
                source,
                walker_journal,
                &keys,
                &journal,
                &chunk_tx,
                &progress,
            )?;
            journal.end_scan()?;
            Ok::<_, BackupError>((scanned, journal))
        })
    };
    let dedup = tokio::spawn(dedup_stage(
        chunk_rx,
        job.client.clone(),
        session_id,
        sealer.clone(),
        sealed_tx,
    ));
    let upload = tokio::spawn(upload_stage(
        sealed_rx,
        job.client.clone(),
        session_id,
        job.progress.clone(),
    ));

    let scan = flatten(scan.await);
    let dedup = flatten(dedup.await);
    let upload = flatten(upload.await);
    // Report the root cause: a stage that failed on its own, not one that
    // stopped because its neighbour went away.
    let ((scanned, journal), deduplicated, uploaded) = match (scan, dedup, upload) {
        (Ok(s), Ok(d), Ok(u)) => (s, d, u),
        (s, d, u) => {
            let errors = [s.err(), d.err(), u.err()];
            let root = errors
                .into_iter()
                .flatten()
                .find(|e| !matches!(e, BackupError::Aborted))
                .unwrap_or(BackupError::Aborted);
            return Err(root);
        }
    };

    let mut report = scanned.report;
    report.bucket = job.bucket.clone();
    report.chunks_deduplicated = deduplicated;
    report.chunks_sent = uploaded.blobs;
    report.bytes_sent = uploaded.bytes;
    report.manifest_chunks = scanned.manifest.len() as u64;
    let references = {
        let (client, runtime) = (job.client.clone(), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || {
            // The pipeline's buffers are all freed by now; give them back
            // before the id lists are built, so the two do not stack on
            // memory malloc kept (see ferry_malloc).
            ferry_malloc::release_free_memory();
            let mut parts = Vec::new();
            let last = hold_back_last(
                |each| journal.pending_chunk_id_parts(REFERENCE_PART_IDS, each),
                |part| -> Result<(), BackupError> {
                    parts.push(runtime.block_on(check_references(&client, session_id, part))?);
                    Ok(())
                },
            )?;
            Ok::<_, BackupError>((journal, last, parts))
        })
    };
    let (mut journal, data_chunk_ids, reference_parts) = references
        .await
        .map_err(|e| BackupError::Task(e.to_string()))??;
    let (kind, body) = ("snapshot", Vec::new());
    let seq = head.map_or(1, |h| h.seq + 1);
    let claim = CommitClaim {
        bucket: &job.bucket,
        seq,
        parent: Head::parent_of_next(head.as_ref()),
        kind,
        manifest_digest: manifest_digest(&scanned.manifest),
        body_digest: body_digest(&body),
        files: report.files,
        bytes: report.bytes,
    };
    let mac = job.keys.commit_mac(&claim.encode());
    let committed = job
        .client
        .ingest
        .clone()
        .commit(CommitRequest {
            session_id,
            kind: kind.into(),
            manifest: scanned.manifest.iter().map(|id| id.0.to_vec()).collect(),
            body,
            files: report.files,
            bytes: report.bytes,
            data_chunk_ids: data_chunk_ids.into(),
            reference_parts,
            seq,
            mac: mac.to_vec(),
        })
        .await
        .map_err(refused("Commit"))?
        .into_inner();
    if committed.seq != seq {
        return Err(BackupError::Hub(HubCallError::Protocol {
            call: "Commit",
            reason: format!("asked for commit {seq}, the hub made {}", committed.seq),
        }));
    }
    KnownHeads::open(&job.heads_path)?.advance(&job.bucket, Head { seq, mac })?;
    report.seq = committed.seq;
    tokio::task::spawn_blocking(move || journal.promote())
        .await
        .map_err(|e| BackupError::Task(e.to_string()))??;
    job.progress.finish();
    tracing::info!(bucket = %job.bucket, seq = report.seq, "snapshot committed");
    Ok(report)
}

/// The bucket's head as the hub gave it at session open, checked: against
/// the head this site last saw when it has one (the chain after it
/// verified), else the whole chain from the first commit.
async fn checked_head(
    job: &BackupJob,
    head_seq: u64,
    head_mac: &[u8],
) -> Result<Option<Head>, BackupError> {
    let heads = KnownHeads::open(&job.heads_path)?;
    let known = heads.get(&job.bucket)?;
    let unsigned_upto = heads.unsigned_upto(&job.bucket)?;
    let bucket = job.bucket.as_str();
    if let Some(known) = known
        && head_seq <= known.seq
    {
        let at_known = (head_seq == known.seq).then_some(head_mac);
        chain::check_known(bucket, Some(known), head_seq, at_known)?;
        return Ok(Some(known));
    }
    let head = chain::walk(&job.client, &job.keys, bucket, known, unsigned_upto, |_| {}).await?;
    let agrees = match head {
        None => head_seq == 0,
        Some(h) => h.seq == head_seq && chain::mac_or_genesis(head_mac) == Some(h.mac),
    };
    if !agrees {
        return Err(BackupError::Hub(HubCallError::Protocol {
            call: "OpenSession",
            reason: format!(
                "bucket {bucket}: the session's head is not the journal's newest commit"
            ),
        }));
    }
    if let Some(head) = head {
        heads.advance(bucket, head)?;
    }
    Ok(head)
}

fn flatten<T>(
    joined: Result<Result<T, BackupError>, tokio::task::JoinError>,
) -> Result<T, BackupError> {
    joined.map_err(|e| BackupError::Task(e.to_string()))?
}

/// Hands every part but the last to `earlier`, in order, and returns the
/// last (empty when there is none): a commit carries its final part of
/// references itself, so a backup whose ids fit one part makes no extra call.
fn hold_back_last<E>(
    parts: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<(), E>) -> Result<(), E>,
    mut earlier: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut held = None;
    parts(&mut |part| match held.replace(part) {
        Some(before) => earlier(before),
        None => Ok(()),
    })?;
    Ok(held.unwrap_or_default())
}

/// Asks the hub whether it holds one part of the commit's references;
/// returns the hash the hub stored the part under, for the commit.
async fn check_references(
    client: &HubClient,
    session_id: u64,
    part: Vec<u8>,
) -> Result<Vec<u8>, BackupError> {
    client
        .ingest
        .clone()
        .check_references(CheckReferencesRequest {
            session_id,
            data_chunk_ids: part.into(),
        })
        .await
        .map(|answer| answer.into_inner().part)
        .map_err(refused("CheckReferences"))
}

/// A refusal of `call`; "missing chunks" means the journal claimed chunks
/// the hub lacks, which the caller answers by reading every file again.
fn refused(call: &'static str) -> impl FnOnce(tonic::Status) -> BackupError {
    move |status| {
        if status.code() == tonic::Code::FailedPrecondition
            && status.message().starts_with(MISSING_CHUNKS)
        {
            BackupError::MissingChunks(status.message().to_string())
        } else {
            BackupError::Hub(HubCallError::Failed { call, status })
        }
    }
}

pub(crate) mod scan;
mod upload;

use scan::scan_source;
use upload::upload_stage;

/// Stage 2: batched "which ids are missing", then sealing of the missing
/// chunks on blocking threads; hands the seal tasks to the uploader in order.
async fn dedup_stage(
    mut chunks: mpsc::Receiver<Vec<ChunkJob>>,
    client: HubClient,
    session_id: u64,
    sealer: Arc<SessionSealer>,
    sealed: mpsc::Sender<JoinHandle<Result<Vec<SealedBlob>, SealError>>>,
) -> Result<u64, BackupError> {
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut deduplicated = 0u64;
    // Queries asked and not yet answered, oldest first: answers are used in
    // order, so the upload order follows the scan order.
    let mut asked: VecDeque<(Vec<ChunkJob>, DedupQuery)> = VecDeque::new();
    let mut input_open = true;
    while input_open || !asked.is_empty() {
        let can_ask = input_open && asked.len() < DEDUP_IN_FLIGHT;
        tokio::select! {
            // Prefer handing out an answer to asking again.
            biased;
            answer = async {
                match asked.front_mut() {
                    Some((_, query)) => query.await,
                    None => std::future::pending().await,
                }
            }, if !asked.is_empty() => {
                let missing = flatten(answer)?;
                if let Some((batch, _)) = asked.pop_front() {
                    deduplicated += seal_missing(batch, &missing, &sealer, &sealed).await?;
                }
            }
            first = chunks.recv(), if can_ask => {
                let Some(first) = first else {
                    input_open = false;
                    continue;
                };
                let mut batch = gather(first, &mut chunks).await;
                if seen.len() > SEEN_LIMIT {
                    seen.clear();
                }
                let before = batch.len();
                batch.retain(|job| seen.insert(job.id));
                deduplicated += (before - batch.len()) as u64;
                if batch.is_empty() {
                    continue;
                }
                let mut ingest = client.ingest.clone();
                let ids = batch.iter().map(|j| j.id.0.to_vec()).collect();
                let query = tokio::spawn(async move {
                    Ok(ingest
                        .find_missing(FindMissingRequest { session_id, ids })
                        .await
                        .map_err(HubCallError::failed("FindMissing"))?
                        .into_inner()
                        .missing)
                });
                asked.push_back((batch, query));
            }
        }
    }
    Ok(deduplicated)
}

/// A FindMissing call in flight: the indices of the ids the hub lacks.
type DedupQuery = JoinHandle<Result<Vec<u32>, BackupError>>;

/// `first` and whatever more arrives within [`DEDUP_BATCH_WAIT`], up to
/// one query's bounds: a query per tiny file would cost a round trip each.
async fn gather(first: Vec<ChunkJob>, chunks: &mut mpsc::Receiver<Vec<ChunkJob>>) -> Vec<ChunkJob> {
    let bytes_of = |jobs: &[ChunkJob]| jobs.iter().map(|j| j.data.len()).sum::<usize>();
    let mut batch = first;
    let mut bytes = bytes_of(&batch);
    let deadline = tokio::time::Instant::now() + DEDUP_BATCH_WAIT;
    while batch.len() < DEDUP_BATCH_IDS && bytes < DEDUP_BATCH_BYTES {
        match tokio::time::timeout_at(deadline, chunks.recv()).await {
            Ok(Some(more)) => {
                bytes += bytes_of(&more);
                batch.extend(more);
            }
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Seals the chunks of `batch` the hub said it lacks (by index); returns
/// how many it already had.
async fn seal_missing(
    batch: Vec<ChunkJob>,
    missing: &[u32],
    sealer: &Arc<SessionSealer>,
    sealed: &mpsc::Sender<JoinHandle<Result<Vec<SealedBlob>, SealError>>>,
) -> Result<u64, BackupError> {
    let mut wanted = vec![false; batch.len()];
    for &index in missing {
        let slot = wanted.get_mut(index as usize).ok_or_else(|| {
            BackupError::Hub(HubCallError::Protocol {
                call: "FindMissing",
                reason: format!("index {index} out of range for {} ids", batch.len()),
            })
        })?;
        *slot = true;
    }
    // Small chunks are sealed in groups, so a task's overhead is paid per
    // megabyte, not per tiny file.
    let mut present = 0;
    let mut group: Vec<ChunkJob> = Vec::new();
    let mut group_bytes = 0;
    for (job, wanted) in batch.into_iter().zip(wanted) {
        if !wanted {
            present += 1;
            continue;
        }
        group_bytes += job.data.len();
        group.push(job);
        if group_bytes >= SEAL_GROUP_BYTES || group.len() >= SEAL_GROUP_CHUNKS {
            seal_group(sealer, std::mem::take(&mut group), sealed).await?;
            group_bytes = 0;
        }
    }
    if !group.is_empty() {
        seal_group(sealer, group, sealed).await?;
    }
    Ok(present)
}

async fn seal_group(
    sealer: &Arc<SessionSealer>,
    group: Vec<ChunkJob>,
    sealed: &mpsc::Sender<JoinHandle<Result<Vec<SealedBlob>, SealError>>>,
) -> Result<(), BackupError> {
    let sealer = sealer.clone();
    let task = tokio::task::spawn_blocking(move || {
        group
            .iter()
            .map(|job| seal_chunk(&sealer, job.id, job.kind, &job.data))
            .collect()
    });
    sealed.send(task).await.map_err(|_| BackupError::Aborted)
}

#[cfg(test)]
mod tests;
