//! Replicas: this site's copies of buckets other sites write. `ferry-agent
//! run` follows each `[[replica]]` bucket's journal from the cursor the
//! hub holds for this site, applies each commit to the copy, and then
//! acknowledges it, so a restart resumes where the last acknowledgement
//! left off and a commit applied twice changes nothing the second time.

pub mod bucket;
pub mod prune;
pub mod tombstones;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_crypto::TenantKeys;
use ferry_proto::BlobId;
use ferry_proto::v1::{
    AckRequest, CommitInfo, CursorRequest, DeadLetter, DeadLetterList, FollowRequest, HoldRequest,
    ReportRequest,
};
use tokio::sync::{OnceCell, watch};
use tracing::Instrument;

use crate::client::HubClient;
use crate::config::replica::{CopyAt, ReplicaConfig};
use crate::progress::Progress;
use crate::restore::{
    NotRestored, RestoreError, RestoreJob, RestoreTarget, Which, for_each_entry, run_restore,
};

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The kind of commit a replica applies: the whole bucket at a position.
const SNAPSHOT: &str = "snapshot";
/// How often a replica holding a commit back asks whether it is confirmed.
const CONFIRM_POLL: Duration = Duration::from_secs(1);
/// Applies of one commit that leave entries unwritten before those entries
/// become dead letters and the commit is acknowledged without them.
const MAX_ATTEMPTS: u32 = 3;
/// Dead letters listed to the hub (it counts the rest).
const LISTED_DEAD_LETTERS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("hub: {0}")]
    Hub(#[from] tonic::Status),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("replica directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("commit {seq}: {reason}")]
    Commit { seq: u64, reason: String },
    #[error(
        "commit {seq}: {total} entries not written, e.g. {}",
        entries.first().map(|e| format!("{}: {}", e.path, e.reason)).unwrap_or_default()
    )]
    NotWritten {
        seq: u64,
        /// The first of them (a restore lists at most 1,000).
        entries: Vec<NotRestored>,
        total: u64,
    },
    #[error("internal task failed: {0}")]
    Task(String),
}

/// What applying one commit did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Applied {
    pub seq: u64,
    /// Entries deleted because the snapshot no longer holds them (a
    /// directory deleted whole counts once).
    pub removed: u64,
    /// Files written (new or changed).
    pub written: u64,
    /// Files found as the snapshot has them already.
    pub unchanged: u64,
    /// The first of those removed and written, up to a thousand each.
    pub removed_paths: Vec<String>,
    pub written_paths: Vec<String>,
}

/// What one replica needs from the daemon.
pub struct Replica {
    pub client: HubClient,
    pub keys: Arc<TenantKeys>,
    pub heads_path: PathBuf,
    /// Where a bucket copy keeps its index.
    pub state_dir: PathBuf,
    pub config: ReplicaConfig,
    copy: OnceCell<Copy>,
    /// The commit whose applies left entries unwritten, and how many times.
    attempts: std::sync::Mutex<(u64, u32)>,
}

/// The copy, made ready at the first apply.
enum Copy {
    Dir(PathBuf),
    Bucket(bucket::BucketCopy),
}

impl Replica {
    pub fn new(
        client: HubClient,
        keys: Arc<TenantKeys>,
        heads_path: PathBuf,
        state_dir: PathBuf,
        config: ReplicaConfig,
    ) -> Self {
        Self {
            client,
            keys,
            heads_path,
            state_dir,
            config,
            copy: OnceCell::new(),
            attempts: std::sync::Mutex::new((0, 0)),
        }
    }

    /// The copy: its directory, or its bucket reached and its index opened.
    async fn copy(&self) -> Result<&Copy, ReplicaError> {
        self.copy
            .get_or_try_init(|| async {
                match self.config.copy_at() {
                    CopyAt::Dir(path) => Ok(Copy::Dir(path.to_path_buf())),
                    CopyAt::Bucket(location) => {
                        let index = self.state_file("db");
                        Ok(Copy::Bucket(
                            bucket::BucketCopy::open(location, &index).await?,
                        ))
                    }
                }
            })
            .await
    }

    /// Makes the copy at `config.path` the snapshot `commit`: deletes what
    /// it does not hold, then writes what is missing or different (files
    /// under a temporary name, renamed once whole).
    ///
    /// # Errors
    /// The commit cannot be fetched, opened or written.
    pub async fn apply(&self, commit: &CommitInfo) -> Result<Applied, ReplicaError> {
        let bucket = &self.config.bucket;
        let manifest = commit
            .manifest
            .iter()
            .map(|id| BlobId::from_slice("CommitInfo.manifest", id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReplicaError::Commit {
                seq: commit.seq,
                reason: e.to_string(),
            })?;
        let copy = self.copy().await?;
        if let Copy::Dir(path) = copy {
            // Made anew at each apply: a copy removed meanwhile comes back.
            std::fs::create_dir_all(path).map_err(|source| ReplicaError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let (deletes, entries) = match copy {
            Copy::Dir(path) if self.config.max_delete_share < 1.0 => {
                let count = PruneMode::Count;
                let pruned = prune(
                    &self.client,
                    &self.keys,
                    bucket,
                    manifest.clone(),
                    path,
                    count,
                )
                .await?;
                (pruned.removed, pruned.entries)
            }
            Copy::Dir(_) => (0, 0),
            Copy::Bucket(copy) => {
                copy.survey(&self.client, &self.keys, bucket, manifest.clone())
                    .await?
            }
        };
        let share = deletes as f64 / entries.max(1) as f64;
        if share > self.config.max_delete_share {
            self.wait_for_confirmation(commit.seq, deletes, entries)
                .await?;
        }
        let (removed, target) = match copy {
            Copy::Dir(path) => {
                let mode = match self.config.tombstones() {
                    Some(stones) => {
                        let batch = stones.batch_at(chrono::Utc::now().timestamp_millis());
                        PruneMode::Bury(stones, batch)
                    }
                    None => PruneMode::Delete,
                };
                let pruned = prune(&self.client, &self.keys, bucket, manifest, path, mode).await?;
                let target = RestoreTarget::Dir {
                    path: path.clone(),
                    resume: true,
                    numeric_owner: false,
                    // Acknowledged at the hub once applied: on disk first.
                    durable: true,
                };
                ((pruned.removed, pruned.removed_paths), target)
            }
            Copy::Bucket(copy) => (copy.remove().await?, RestoreTarget::Bucket(copy.target())),
        };
        let report = run_restore(RestoreJob {
            client: self.client.clone(),
            keys: self.keys.clone(),
            heads_path: self.heads_path.clone(),
            bucket: bucket.clone(),
            which: Which::Seq(commit.seq),
            target,
            progress: Progress::new(true, "replica"),
        })
        .await?;
        if report.not_restored > 0 {
            return Err(ReplicaError::NotWritten {
                seq: commit.seq,
                entries: report.not_restored_entries,
                total: report.not_restored,
            });
        }
        if let Copy::Bucket(copy) = copy {
            copy.written().await?;
        }
        Ok(Applied {
            seq: commit.seq,
            removed: removed.0,
            written: report.files.saturating_sub(report.already_present),
            unchanged: report.already_present,
            removed_paths: removed.1,
            written_paths: report.written_entries,
        })
    }

    /// Holds commit `seq` back (it deletes `deletes` of the copy's
    /// `entries`) until an operator confirms it at the hub.
    async fn wait_for_confirmation(
        &self,
        seq: u64,
        deletes: u64,
        entries: u64,
    ) -> Result<(), ReplicaError> {
        let bucket = &self.config.bucket;
        let mut client = self.client.replication.clone();
        let held = client
            .hold(HoldRequest {
                bucket: bucket.clone(),
                seq,
                deletes,
                entries,
            })
            .await?
            .into_inner();
        if held.confirmed {
            return Ok(());
        }
        tracing::warn!(bucket = %bucket, seq, deletes, entries, "a commit deletes more of the replica than max-delete-share: held until `ferry-hub replication confirm`");
        loop {
            tokio::time::sleep(CONFIRM_POLL).await;
            let cursor = client
                .cursor(CursorRequest {
                    bucket: bucket.clone(),
                })
                .await?
                .into_inner();
            if cursor.confirmed_seq == seq {
                tracing::info!(bucket = %bucket, seq, "held commit confirmed: applying it");
                return Ok(());
            }
        }
    }

    /// Follows the bucket until `stop`: from the hub's cursor for this
    /// site, each commit applied, then acknowledged; on a failure, again
    /// from the cursor after a backoff. Meanwhile removes the tombstones
    /// past the copy's `delete-delay`.
    pub async fn follow(&self, stop: watch::Receiver<bool>) {
        let purging = async {
            match self.config.tombstones() {
                Some(stones) => self.purge_tombstones(stones).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.follow_commits(stop) => {}
            () = purging => {}
        }
    }

    /// Every so often, unless the hub says the bucket's replication is
    /// paused, removes the tombstones past the delay.
    async fn purge_tombstones(&self, stones: tombstones::Tombstones) {
        let bucket = &self.config.bucket;
        loop {
            tokio::time::sleep(stones.purge_every()).await;
            let cursor = self
                .client
                .replication
                .clone()
                .cursor(CursorRequest {
                    bucket: bucket.clone(),
                })
                .await;
            let resumed = match cursor {
                Ok(c) if c.get_ref().paused_unix_ms != 0 => {
                    tracing::debug!(bucket = %bucket, "replication paused: tombstones kept");
                    continue;
                }
                Ok(c) => c.get_ref().resumed_unix_ms,
                // Nothing is removed without the hub saying it may be.
                Err(status) => {
                    tracing::warn!(bucket = %bucket, %status, "tombstones kept: the hub did not answer");
                    continue;
                }
            };
            let now = chrono::Utc::now().timestamp_millis();
            let batch = stones.clone();
            match tokio::task::spawn_blocking(move || batch.purge(now, resumed)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(bucket = %bucket, batches = n, "tombstones past the delete delay removed");
                }
                Ok(Err(e)) => {
                    tracing::error!(bucket = %bucket, tombstones = %stones.root.display(), error = %e, "tombstones not removed");
                }
                Err(e) => tracing::error!(bucket = %bucket, error = %e, "tombstone purge failed"),
            }
        }
    }

    async fn follow_commits(&self, mut stop: watch::Receiver<bool>) {
        let bucket = &self.config.bucket;
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                return;
            }
            let ended = tokio::select! {
                ended = self.follow_once() => ended,
                _ = stop.changed() => return,
            };
            match ended {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::error!(bucket = %bucket, error = %e, "replica: following failed; again from the cursor");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One Follow stream, until it ends or fails.
    async fn follow_once(&self) -> Result<(), ReplicaError> {
        let bucket = &self.config.bucket;
        let mut client = self.client.replication.clone();
        let cursor = client
            .cursor(CursorRequest {
                bucket: bucket.clone(),
            })
            .await?
            .into_inner();
        // A replay applies the cursor's commit anew (and what came after).
        let mut replaying = cursor.replay;
        let mut dead = cursor.dead_letters > 0;
        let after = match replaying {
            true => cursor.seq.saturating_sub(1),
            false => cursor.seq,
        };
        let mut stream = client
            .follow(FollowRequest {
                bucket: bucket.clone(),
                after_seq: after,
            })
            .await?
            .into_inner();
        tracing::info!(bucket = %bucket, after, replaying, copy = %self.config.describe(), "replica following");
        while let Some(mut commit) = stream.message().await? {
            // A backlog: what is already here past this commit replaces it
            // (each snapshot is the whole bucket), so a replica far behind
            // applies the newest, not each in turn. A zero timeout polls once.
            while let Ok(next) = tokio::time::timeout(Duration::ZERO, stream.message()).await {
                match next? {
                    Some(newer) if newer.kind == SNAPSHOT => commit = newer,
                    Some(_) => {}
                    None => break,
                }
            }
            if commit.kind != SNAPSHOT {
                // Only snapshots are applied; a batch's changes come with
                // the next snapshot (agents commit none today).
                tracing::warn!(bucket = %bucket, seq = commit.seq, kind = %commit.kind, "replica: not a snapshot, left to the next one");
                continue;
            }
            let seq = commit.seq;
            // Each apply in a span of its own: its restore's lines carry the commit.
            let span = tracing::info_span!("replica_apply", bucket = %bucket, seq);
            // Whether the commit is acknowledged with dead letters.
            let with_dead_letters = match self.apply(&commit).instrument(span).await {
                Ok(applied) => {
                    let report = self.write_report(&applied);
                    tracing::info!(bucket = %bucket, seq, removed = applied.removed, written = applied.written, unchanged = applied.unchanged, report = %report.display(), "replica applied");
                    false
                }
                Err(ReplicaError::NotWritten {
                    seq,
                    entries,
                    total,
                }) if self.attempt(seq) >= MAX_ATTEMPTS => {
                    // Told before the acknowledgement, which waits for it:
                    // a commit is never acknowledged with its dead letters
                    // unknown to the hub.
                    client
                        .report(self.report_request(seq, None, Some((entries, total)), replaying))
                        .await?;
                    tracing::error!(bucket = %bucket, seq, dead_letters = total, attempts = MAX_ATTEMPTS, "replica: entries still not written; acknowledged without them (`ferry-hub replication dead-letters`)");
                    true
                }
                Err(e) => {
                    self.report(seq, Some(&e), None, false).await;
                    return Err(e);
                }
            };
            client
                .ack(AckRequest {
                    bucket: bucket.clone(),
                    seq,
                })
                .await?;
            self.attempt(0);
            // The hub's list cleared when this apply wrote everything.
            if !with_dead_letters && (dead || replaying) {
                self.report(seq, None, Some((Vec::new(), 0)), replaying)
                    .await;
            }
            dead = with_dead_letters;
            replaying = false;
        }
        Ok(())
    }

    /// Writes what the last apply changed (paths removed and written) to
    /// `<state>/replicas/<tenant>+<bucket>.applied.json`, for an operator:
    /// after a failback, what the old source's copy lacked. Gives the
    /// file; a failure to write it is logged, the apply stands.
    fn write_report(&self, applied: &Applied) -> PathBuf {
        let file = self.state_file("applied.json");
        let written = serde_json::to_vec_pretty(applied)
            .map_err(std::io::Error::other)
            .and_then(|text| {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let partial = file.with_extension("json.partial");
                std::fs::write(&partial, text)?;
                std::fs::rename(&partial, &file)
            });
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "replica: apply report not written");
        }
        file
    }

    /// This replica's file `suffix` in the agent's state directory.
    fn state_file(&self, suffix: &str) -> PathBuf {
        self.state_dir
            .join("replicas")
            .join(format!("{}.{suffix}", self.config.bucket.replace('/', "+")))
    }

    /// Counts an apply of `seq` that left entries unwritten (0: starts
    /// afresh); gives how many applies in a row did.
    fn attempt(&self, seq: u64) -> u32 {
        let Ok(mut attempts) = self.attempts.lock() else {
            return MAX_ATTEMPTS;
        };
        // In a row whatever the commit: under a busy source each retry
        // applies a newer one, with the same entries failing.
        *attempts = match (seq, *attempts) {
            (0, _) => (0, 0),
            (seq, (last, n)) if seq >= last => (seq, n + 1),
            (seq, _) => (seq, 1),
        };
        attempts.1
    }

    /// Tells the hub what applying `seq` met: an error, or the dead letters
    /// now (none: the apply wrote everything). Best effort: a report that
    /// fails is logged, the apply is not failed for it.
    async fn report(
        &self,
        seq: u64,
        error: Option<&ReplicaError>,
        dead: Option<(Vec<NotRestored>, u64)>,
        replayed: bool,
    ) {
        let request = self.report_request(seq, error, dead, replayed);
        if let Err(status) = self.client.replication.clone().report(request).await {
            tracing::warn!(bucket = %self.config.bucket, seq, %status, "replica: could not report to the hub");
        }
    }

    fn report_request(
        &self,
        seq: u64,
        error: Option<&ReplicaError>,
        dead: Option<(Vec<NotRestored>, u64)>,
        replayed: bool,
    ) -> ReportRequest {
        ReportRequest {
            bucket: self.config.bucket.clone(),
            seq,
            error: error.map(ToString::to_string).unwrap_or_default(),
            dead: dead.map(|(entries, total)| DeadLetterList {
                letters: entries
                    .into_iter()
                    .take(LISTED_DEAD_LETTERS)
                    .map(|e| DeadLetter {
                        path: e.path,
                        reason: e.reason,
                    })
                    .collect(),
                total,
                replayed,
            }),
        }
    }
}

/// How a prune pass treats what the snapshot does not hold.
enum PruneMode {
    /// Counts it, and what the copy holds; changes nothing.
    Count,
    /// Deletes it.
    Delete,
    /// Moves it into this batch of the tombstones; files the snapshot holds
    /// again come back from theirs.
    Bury(tombstones::Tombstones, PathBuf),
}

/// Prunes `path` against the manifest: (entries removed or counted,
/// entries the copy held).
async fn prune(
    client: &HubClient,
    keys: &Arc<TenantKeys>,
    bucket: &str,
    manifest: Vec<BlobId>,
    path: &Path,
    mode: PruneMode,
) -> Result<prune::Pruned, ReplicaError> {
    let io = |source| ReplicaError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The walk and its deletes are file system calls: on a blocking thread,
    // fed entries as they are decoded.
    let (tx, rx) = std::sync::mpsc::sync_channel::<ferry_proto::v1::ManifestEntry>(1024);
    let root = path.to_path_buf();
    let pruner = tokio::task::spawn_blocking(move || {
        let mut pruner = match mode {
            PruneMode::Count => prune::Pruner::counting(&root)?,
            PruneMode::Delete => prune::Pruner::new(&root)?,
            PruneMode::Bury(stones, batch) => prune::Pruner::burying(&root, stones, batch)?,
        };
        for entry in rx {
            pruner.keep_entry(&entry)?;
        }
        if pruner.taken_back > 0 {
            tracing::info!(
                taken_back = pruner.taken_back,
                "replica: files back from their tombstones"
            );
        }
        pruner.finish_counts()
    });
    let fed = for_each_entry(client, keys, bucket, manifest, |mut entry| {
        // The pruner needs the entry's kind, path, size and times only.
        entry.chunks.clear();
        // The blocking thread is gone only if it failed: its error is told.
        let _ = tx.send(entry);
        Ok(())
    })
    .await;
    drop(tx);
    let pruned = pruner
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?
        .map_err(io);
    fed?;
    pruned
}
