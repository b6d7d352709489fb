//! Restore: pick a commit, stream its manifest, fetch and verify every chunk,
//! and write the tree into an empty directory.
//!
//! Three stages joined by bounded channels: a planner decodes the manifest
//! and queues the chunk ids each file needs; a fetcher streams those blobs
//! from the hub and decrypts them on blocking threads, keeping order; a
//! writer creates the entries and pours the plaintexts into the files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_crypto::{OpenError, SessionOpener, TenantKeys};
use ferry_proto::manifest::{Layout, ManifestDecoder, ManifestError};
use ferry_proto::v1::{CommitInfo, FetchBlobsRequest, ManifestEntry, ReportBadBlobsRequest};
use ferry_proto::verified::Copy;
use ferry_proto::{BadId, BlobId, BlobKind};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::blob_codec::{OpenChunkError, open_chunk};
use crate::chain::{self, ChainError};
use crate::client::{HubCallError, HubClient};
use crate::progress::Progress;
use crate::restore_bucket::{BucketTarget, write_bucket};
use crate::restore_dir::{prepare_target, write_tree};
use crate::verified;

/// Chunk ids asked for in one FetchBlobs call.
const FETCH_BATCH: usize = 256;
/// Blobs of a call still to read when the next call is asked for.
const ASK_AHEAD: usize = 16;
/// Decrypted chunks waiting for the writer (also bounds decrypt parallelism).
const PLAIN_QUEUE: usize = 8;
const ID_QUEUE: usize = 4096;
const ENTRY_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("this key file is write-only (no identity): it can back up but not restore")]
    WriteOnlyKey,
    #[error(transparent)]
    Hub(#[from] HubCallError),
    #[error("bucket {bucket}: {reason}")]
    NoSuchSnapshot { bucket: String, reason: String },
    #[error(transparent)]
    Chunk(#[from] OpenChunkError),
    #[error(
        "{source}; {}",
        if *reported {
            "the hub was told, and the bucket's source site uploads it again at its next backup"
        } else {
            "telling the hub failed"
        }
    )]
    BadChunk {
        source: OpenChunkError,
        reported: bool,
    },
    #[error("session header {id}: {source}")]
    Header {
        id: BlobId,
        #[source]
        source: OpenError,
    },
    #[error("{0}")]
    BadId(#[from] BadId),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("restore target {path}: {reason}")]
    Target { path: PathBuf, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Flushing the target's file system failed: nothing written since the
    /// last flush is known to be durable, so the restore stops.
    #[error("flushing {path}: {source}")]
    Flush {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a sparse file's chunks: {0}")]
    Sparse(#[from] crate::sparse::Overflow),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("restore aborted")]
    Aborted,
}

/// Which commit to restore.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    Latest,
    Seq(u64),
    /// The newest commit at or before this time (Unix milliseconds).
    At(i64),
}

/// Chooses the commit to restore from a journal walked oldest first,
/// keeping only the best so far.
pub struct Pick {
    which: Which,
    chosen: Option<CommitInfo>,
}

impl Pick {
    pub fn new(which: Which) -> Self {
        Self {
            which,
            chosen: None,
        }
    }

    /// Considers the next commit in sequence order.
    pub fn offer(&mut self, c: CommitInfo) {
        if c.kind != "snapshot" {
            return;
        }
        let wanted = match self.which {
            Which::Latest => true,
            Which::Seq(seq) => c.seq == seq,
            // The newest at or before: later ones replace earlier ones.
            Which::At(ms) => c.time_unix_ms <= ms,
        };
        if wanted {
            self.chosen = Some(c);
        }
    }

    /// The chosen commit.
    ///
    /// # Errors
    ///
    /// `NoSuchSnapshot` saying why none was.
    pub fn finish(self, bucket: &str) -> Result<CommitInfo, RestoreError> {
        self.chosen.ok_or_else(|| RestoreError::NoSuchSnapshot {
            bucket: bucket.to_string(),
            reason: match self.which {
                Which::Latest => "has no snapshots".into(),
                Which::Seq(seq) => format!("has no snapshot {seq}"),
                Which::At(_) => "has no snapshot at or before that time".into(),
            },
        })
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RestoreReport {
    pub bucket: String,
    pub seq: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Named pipes and device nodes.
    pub specials: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// Entries with no form in the target (directories or links restored into a bucket).
    pub skipped: u64,
    /// Chunk copies this restore verified that the hub newly marked
    /// verified (they now count for every site's dedup; see [`verified`]).
    pub copies_verified: u64,
    /// Files a resumed restore found already written and kept (counted in
    /// `files` too).
    pub already_present: u64,
    /// Entries that could not be written; the restore went on without them.
    pub not_restored: u64,
    /// The first of those (up to a thousand), each with its reason.
    pub not_restored_entries: Vec<NotRestored>,
    /// The first files written (up to a thousand; not those found
    /// present): what a replica's apply changed.
    #[serde(skip)]
    pub written_entries: Vec<String>,
}

/// Entries a report lists by name (it counts the rest).
pub(crate) const LISTED_ENTRIES: usize = 1000;

impl RestoreReport {
    /// Notes a file written under `path` (relative to the target).
    pub(crate) fn wrote(&mut self, path: &[u8]) {
        if self.written_entries.len() < LISTED_ENTRIES {
            self.written_entries
                .push(String::from_utf8_lossy(path).into_owned());
        }
    }
}

/// An entry a restore could not write.
#[derive(Debug, Clone, Serialize)]
pub struct NotRestored {
    /// Relative to the target.
    pub path: String,
    pub reason: String,
}

/// A manifest entry on its way to a writer.
pub struct Planned {
    pub entry: ManifestEntry,
    /// A resumed restore found it written already: none of its chunks were
    /// asked for.
    pub present: bool,
}

/// Whether a resumed restore's target holds an entry as the snapshot has
/// it already (its chunks are then not fetched).
pub type Present = Arc<dyn Fn(&ManifestEntry) -> bool + Send + Sync>;

/// Where a restore writes.
pub enum RestoreTarget {
    /// A new or empty directory; with `resume`, one an earlier restore of
    /// the same snapshot left unfinished, where only what is missing or
    /// different is written.
    /// Owners are given by name where this system knows the names, unless
    /// `numeric_owner`. `durable`: every file is on disk before it gets its
    /// name, and everything is when the restore returns (a replica
    /// acknowledges an apply only then).
    Dir {
        path: PathBuf,
        resume: bool,
        numeric_owner: bool,
        durable: bool,
    },
    /// An S3 bucket, empty under its prefix unless opened to overwrite.
    Bucket(Arc<BucketTarget>),
    /// Nowhere: every chunk is fetched and checked, nothing written
    /// (`ferry-agent verify`).
    Check,
}

/// A chunk's plaintext being opened, as the writers receive it in order.
pub(crate) type Plain = JoinHandle<Result<Vec<u8>, RestoreError>>;

/// The next chunk's plaintext, waited for on a writer's blocking thread.
pub(crate) fn next_plain(
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<u8>, RestoreError> {
    let task = plains.blocking_recv().ok_or(RestoreError::Aborted)?;
    runtime
        .block_on(task)
        .map_err(|e| RestoreError::Task(e.to_string()))?
}

/// Why a file's chunks do not make the size its manifest entry gives, if
/// they do not: every writer refuses such a file.
pub(crate) fn size_mismatch(entry: &ManifestEntry, held: u64) -> Option<String> {
    // A sparse file's chunks hold its data, not its holes.
    let data = Layout::of(entry).map_or(entry.size, |l| l.data_bytes());
    (held != data).then(|| match data == entry.size {
        true => format!("manifest says {} bytes, chunks hold {held}", entry.size),
        false => format!(
            "manifest says {data} bytes of data (of {} with holes), chunks hold {held}",
            entry.size
        ),
    })
}

/// Fetches blobs by id and turns them into verified plaintexts.
#[derive(Clone)]
struct Fetcher {
    client: HubClient,
    bucket: String,
    keys: Arc<TenantKeys>,
    openers: Arc<std::sync::Mutex<HashMap<BlobId, Arc<SessionOpener>>>>,
    /// Where copies that opened to their ids, not yet verified, go to be
    /// reported.
    verified: mpsc::Sender<Copy>,
}

impl Fetcher {
    async fn opener(&self, header_id: BlobId) -> Result<Arc<SessionOpener>, RestoreError> {
        if let Some(o) = self
            .openers
            .lock()
            .map_err(|e| RestoreError::Task(e.to_string()))?
            .get(&header_id)
        {
            return Ok(o.clone());
        }
        let blob = self.fetch(&[header_id]).await?.expect(header_id).await?;
        if BlobId::of_public(&blob.data) != header_id || blob.kind != BlobKind::SessionHeader as u32
        {
            return Err(RestoreError::Hub(HubCallError::Protocol {
                call: "FetchBlobs",
                reason: format!("session header {header_id} does not match its id"),
            }));
        }
        let opener =
            Arc::new(
                self.keys
                    .opener(&blob.data)
                    .map_err(|source| RestoreError::Header {
                        id: header_id,
                        source,
                    })?,
            );
        self.openers
            .lock()
            .map_err(|e| RestoreError::Task(e.to_string()))?
            .insert(header_id, opener.clone());
        Ok(opener)
    }

    async fn fetch(&self, ids: &[BlobId]) -> Result<FetchStream, RestoreError> {
        let stream = self
            .client
            .journal
            .clone()
            .fetch_blobs(FetchBlobsRequest {
                bucket: self.bucket.clone(),
                ids: ids.iter().map(|id| id.0.to_vec()).collect(),
            })
            .await
            .map_err(HubCallError::failed("FetchBlobs"))?
            .into_inner();
        Ok(FetchStream(stream))
    }

    /// Streams `ids` from the hub; sends one decrypt task per id, in order.
    async fn fetch_into(
        &self,
        ids: Vec<BlobId>,
        out: &mpsc::Sender<Plain>,
    ) -> Result<(), RestoreError> {
        let mut stream = self.fetch(&ids).await?;
        for id in ids {
            self.deliver(id, &mut stream, out).await?;
        }
        Ok(())
    }

    /// Reads blob `id` from `stream`; sends the task that decrypts it.
    async fn deliver(
        &self,
        id: BlobId,
        stream: &mut FetchStream,
        out: &mpsc::Sender<Plain>,
    ) -> Result<(), RestoreError> {
        let blob = stream.expect(id).await?;
        let header_id = BlobId::from_slice("FetchedBlob.header_id", &blob.header_id)?;
        let opener = self.opener(header_id).await?;
        let keys = self.keys.clone();
        let flags = u8::try_from(blob.flags).unwrap_or(u8::MAX);
        let report = (!blob.verified).then(|| {
            let copy = Copy {
                id,
                site: blob.copy_site,
            };
            (self.verified.clone(), copy)
        });
        let task = tokio::task::spawn_blocking(move || {
            let plain = open_chunk(&keys, &opener, id, flags, &blob.data)?;
            if let Some((to, copy)) = report {
                // Gone only if the reporter gave up: then nothing to tell.
                let _ = to.blocking_send(copy);
            }
            Ok(plain)
        });
        out.send(task).await.map_err(|_| RestoreError::Aborted)
    }
}

/// The hub's answer to one FetchBlobs call, read blob by blob.
struct FetchStream(tonic::Streaming<ferry_proto::v1::FetchedBlob>);

impl FetchStream {
    /// The next blob, which must be `want`.
    async fn expect(&mut self, want: BlobId) -> Result<ferry_proto::v1::FetchedBlob, RestoreError> {
        let protocol = |reason| {
            RestoreError::Hub(HubCallError::Protocol {
                call: "FetchBlobs",
                reason,
            })
        };
        let blob = tokio::time::timeout(crate::client::STALL_LIMIT, self.0.message())
            .await
            .map_err(|_| {
                RestoreError::Hub(HubCallError::Stalled {
                    call: "FetchBlobs",
                    seconds: crate::client::STALL_LIMIT.as_secs(),
                })
            })?
            .map_err(HubCallError::failed("FetchBlobs"))?
            .ok_or_else(|| protocol(format!("stream ended before blob {want}")))?;
        let id = BlobId::from_slice("FetchedBlob.id", &blob.id)?;
        if id != want {
            return Err(protocol(format!("asked for {want}, got {id}")));
        }
        Ok(blob)
    }
}

pub struct RestoreJob {
    pub client: HubClient,
    pub keys: Arc<TenantKeys>,
    /// The heads this site has seen of its buckets ([`crate::chain`]).
    pub heads_path: PathBuf,
    pub bucket: String,
    pub which: Which,
    pub target: RestoreTarget,
    pub progress: Progress,
}

pub async fn run_restore(job: RestoreJob) -> Result<RestoreReport, RestoreError> {
    if !job.keys.can_decrypt() {
        return Err(RestoreError::WriteOnlyKey);
    }
    if let RestoreTarget::Dir { path, resume, .. } = &job.target {
        prepare_target(path, *resume)?;
    }
    // The chain is checked as it is walked; only the chosen commit is kept.
    let mut pick = Pick::new(job.which);
    chain::walk_verified(&job.client, &job.keys, &job.bucket, &job.heads_path, |c| {
        pick.offer(c)
    })
    .await?;
    let commit = pick.finish(&job.bucket)?;
    let manifest = chain::manifest_of(&job.client, &job.bucket, &commit).await?;
    tracing::info!(bucket = %job.bucket, seq = commit.seq, "restoring snapshot");
    let (verified_tx, verified_rx) = mpsc::channel(verified::QUEUE);
    let reporter = tokio::spawn(verified::report(
        job.client.clone(),
        job.keys.clone(),
        job.bucket.clone(),
        verified_rx,
    ));
    let fetcher = Fetcher {
        client: job.client.clone(),
        bucket: job.bucket.clone(),
        keys: job.keys.clone(),
        openers: Arc::default(),
        verified: verified_tx,
    };

    let (entry_tx, entry_rx) = mpsc::channel::<Planned>(ENTRY_QUEUE);
    let (id_tx, id_rx) = mpsc::channel::<BlobId>(ID_QUEUE);
    let (plain_tx, plain_rx) = mpsc::channel(PLAIN_QUEUE);
    let present: Option<Present> = match &job.target {
        RestoreTarget::Dir {
            path, resume: true, ..
        } => {
            let path = path.clone();
            Some(Arc::new(move |entry: &ManifestEntry| {
                entry.r#type == ferry_proto::v1::EntryType::File as i32
                    && entry.hardlink_to.is_empty()
                    && crate::restore_dir::already_restored(&path, entry)
            }))
        }
        RestoreTarget::Bucket(bucket) => bucket.present.clone(),
        _ => None,
    };
    let planner = tokio::spawn(plan(fetcher.clone(), manifest, present, entry_tx, id_tx));
    let fetch = tokio::spawn(fetch_stage(fetcher, id_rx, plain_tx));
    let writer = {
        let runtime = tokio::runtime::Handle::current();
        let progress = job.progress.clone();
        match job.target {
            RestoreTarget::Dir {
                path,
                resume,
                numeric_owner,
                durable,
            } => tokio::task::spawn_blocking(move || {
                write_tree(
                    &path,
                    resume,
                    numeric_owner,
                    durable,
                    entry_rx,
                    plain_rx,
                    &runtime,
                    &progress,
                )
            }),
            RestoreTarget::Bucket(bucket) => tokio::task::spawn_blocking(move || {
                write_bucket(&bucket, entry_rx, plain_rx, &runtime, &progress)
            }),
            RestoreTarget::Check => tokio::task::spawn_blocking(move || {
                crate::restore_check::check_tree(entry_rx, plain_rx, &runtime, &progress)
            }),
        }
    };
    let planned = flatten(planner.await);
    let fetched = flatten(fetch.await);
    let written = flatten(writer.await);
    let mut report = match (planned, fetched, written) {
        (Ok(()), Ok(()), Ok(report)) => report,
        (p, f, w) => {
            // The root cause, not a stage that stopped because a neighbour went away.
            let errors = [p.err(), f.err(), w.err()];
            let root = errors
                .into_iter()
                .flatten()
                .find(|e| !matches!(e, RestoreError::Aborted))
                .unwrap_or(RestoreError::Aborted);
            return Err(report_bad_chunk(&job.client, &job.bucket, root).await);
        }
    };
    // Every sender is gone with the stages: the reporter sends its last
    // report and ends. Its failure is logged, never the restore's.
    report.copies_verified = reporter.await.unwrap_or_default();
    job.progress.finish();
    report.bucket = job.bucket;
    report.seq = commit.seq;
    Ok(report)
}

/// A chunk that did not open to its id is damaged or forged where the hub
/// keeps it: told so, the hub marks that copy bad, and the bucket's source
/// site uploads the chunk again at its next backup that needs it.
async fn report_bad_chunk(client: &HubClient, bucket: &str, error: RestoreError) -> RestoreError {
    let RestoreError::Chunk(source) = error else {
        return error;
    };
    let id = source.id();
    let reported = client
        .journal
        .clone()
        .report_bad_blobs(ReportBadBlobsRequest {
            bucket: bucket.to_owned(),
            ids: id.0.to_vec(),
        })
        .await;
    let reported = match reported {
        Ok(answer) => {
            tracing::warn!(bucket, chunk = %id, marked = answer.into_inner().marked, "bad chunk reported to the hub");
            true
        }
        Err(status) => {
            tracing::warn!(bucket, chunk = %id, %status, "could not report a bad chunk");
            false
        }
    };
    RestoreError::BadChunk { source, reported }
}

fn flatten<T>(
    joined: Result<Result<T, RestoreError>, tokio::task::JoinError>,
) -> Result<T, RestoreError> {
    joined.map_err(|e| RestoreError::Task(e.to_string()))?
}

/// Decodes the manifest; queues each file's chunk ids before the entry itself,
/// so the writer never waits for a chunk nobody asked for. An entry
/// `present` says the target holds already is passed on without its chunks.
async fn plan(
    fetcher: Fetcher,
    manifest: Vec<BlobId>,
    present: Option<Present>,
    entries: mpsc::Sender<Planned>,
    ids: mpsc::Sender<BlobId>,
) -> Result<(), RestoreError> {
    let mut decoder = ManifestDecoder::new();
    let (tx, mut rx) = mpsc::channel(PLAIN_QUEUE);
    let pieces = tokio::spawn({
        let fetcher = fetcher.clone();
        async move {
            for window in manifest.chunks(16) {
                fetcher.fetch_into(window.to_vec(), &tx).await?;
            }
            Ok::<_, RestoreError>(())
        }
    });
    while let Some(task) = rx.recv().await {
        let piece = task
            .await
            .map_err(|e| RestoreError::Task(e.to_string()))??;
        decoder.push(&piece);
        while let Some(entry) = decoder.next_entry()? {
            let present = present.as_ref().is_some_and(|present| present(&entry));
            if !present {
                for chunk in &entry.chunks {
                    let id = BlobId::from_slice("ManifestEntry.chunks", chunk)?;
                    ids.send(id).await.map_err(|_| RestoreError::Aborted)?;
                }
            }
            entries
                .send(Planned { entry, present })
                .await
                .map_err(|_| RestoreError::Aborted)?;
        }
    }
    flatten(pieces.await)?;
    decoder.finish()?;
    Ok(())
}

/// Each entry of the manifest `manifest` (its blob ids) of `bucket`, in
/// its order, fetched, opened and decoded a piece at a time: what a replica
/// prunes its copy against before it writes the snapshot.
///
/// # Errors
/// A piece that cannot be fetched or opened, a manifest that does not
/// decode, or `f`'s error.
pub async fn for_each_entry(
    client: &HubClient,
    keys: &Arc<TenantKeys>,
    bucket: &str,
    manifest: Vec<BlobId>,
    mut f: impl FnMut(ferry_proto::v1::ManifestEntry) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    // Copies found good are reported by the restore that follows, not here.
    let (verified, _) = mpsc::channel(1);
    let fetcher = Fetcher {
        client: client.clone(),
        bucket: bucket.to_owned(),
        keys: keys.clone(),
        openers: Arc::default(),
        verified,
    };
    let mut decoder = ManifestDecoder::new();
    const WINDOW: usize = 16;
    for window in manifest.chunks(WINDOW) {
        // Room for the whole window: its tasks are queued before any is read.
        let (tx, mut rx) = mpsc::channel(WINDOW);
        fetcher.fetch_into(window.to_vec(), &tx).await?;
        drop(tx);
        while let Some(task) = rx.recv().await {
            let piece = task
                .await
                .map_err(|e| RestoreError::Task(e.to_string()))??;
            decoder.push(&piece);
            while let Some(entry) = decoder.next_entry()? {
                f(entry)?;
            }
        }
    }
    decoder.finish()?;
    Ok(())
}

async fn fetch_stage(
    fetcher: Fetcher,
    mut ids: mpsc::Receiver<BlobId>,
    out: mpsc::Sender<Plain>,
) -> Result<(), RestoreError> {
    // The next call is asked for while the last few blobs of the current
    // one are read: the hub starts on its packs meanwhile, so no call waits
    // a round trip and a first pack read of its own. Not earlier: the hub
    // would then hold both calls' reads in memory at once.
    let mut next: Option<(Vec<BlobId>, FetchStream)> = None;
    loop {
        let (batch, mut stream) = match next.take() {
            Some(asked) => asked,
            None => {
                let Some(first) = ids.recv().await else {
                    return Ok(());
                };
                let batch = gather_ready(first, &mut ids);
                let stream = fetcher.fetch(&batch).await?;
                (batch, stream)
            }
        };
        let count = batch.len();
        for (read, id) in batch.into_iter().enumerate() {
            if next.is_none()
                && count - read <= ASK_AHEAD
                && let Ok(first) = ids.try_recv()
            {
                let following = gather_ready(first, &mut ids);
                let stream = fetcher.fetch(&following).await?;
                next = Some((following, stream));
            }
            fetcher.deliver(id, &mut stream, &out).await?;
        }
    }
}

/// `first` and the ids already waiting, up to one call's worth.
fn gather_ready(first: BlobId, ids: &mut mpsc::Receiver<BlobId>) -> Vec<BlobId> {
    let mut batch = vec![first];
    while batch.len() < FETCH_BATCH {
        match ids.try_recv() {
            Ok(id) => batch.push(id),
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_pick_keeps_the_wanted_snapshot_of_a_walked_journal() {
        let commit = |seq: u64, kind: &str, time_unix_ms: i64| CommitInfo {
            seq,
            kind: kind.into(),
            time_unix_ms,
            ..Default::default()
        };
        let journal = [
            commit(1, "snapshot", 100),
            commit(2, "batch", 150),
            commit(3, "snapshot", 200),
            commit(4, "snapshot", 300),
            commit(5, "batch", 400),
        ];
        let picked = |which| {
            let mut pick = Pick::new(which);
            journal.iter().cloned().for_each(|c| pick.offer(c));
            pick.finish("acme/docs").map(|c| c.seq)
        };
        assert_eq!(picked(Which::Latest).unwrap(), 4);
        assert_eq!(picked(Which::Seq(3)).unwrap(), 3);
        assert_eq!(picked(Which::At(250)).unwrap(), 3);
        assert_eq!(picked(Which::At(i64::MAX)).unwrap(), 4);
        for which in [Which::Seq(2), Which::Seq(9), Which::At(99)] {
            let err = picked(which).unwrap_err();
            assert!(matches!(err, RestoreError::NoSuchSnapshot { .. }), "{err}");
        }
        let empty = Pick::new(Which::Latest).finish("acme/docs").unwrap_err();
        assert!(empty.to_string().contains("has no snapshots"), "{empty}");
    }
}
