//! A directory source under `ferry-agent run`: watched (see [`crate::watch`])
//! before a first full walk, then a snapshot `settle` after the first change
//! that lists only what changed. A lost event, a failed first walk and
//! every `reconcile-interval` mean a full walk against the index (which
//! still reads only files whose stamp moved).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{MAX_BACKOFF, Shared, between_hooks, wait};
use crate::backup::{BackupJob, BackupReport, run_backup_rechecked};
use crate::config::{SourceConfig, SourceKind};
use crate::progress::Progress;
use crate::source::Source;
use crate::source::changed::{ChangedTree, TreeChanges};
use crate::source::dir::DirSource;
use crate::watch::{Gathered, Watched};

/// Keeps one directory source's snapshots current until `stop` turns true.
pub async fn follow_dir(shared: Shared, source_index: usize, mut stop: watch::Receiver<bool>) {
    let Some(source) = shared.config.sources.get(source_index) else {
        return;
    };
    let SourceKind::Dir(root) = source.kind() else {
        return;
    };
    let watched = Arc::new(Watched::new(shared.config.run.max_changes));
    let mut backoff = Duration::from_secs(1);
    // Watching starts before the first walk: what changes during it is
    // taken by the next snapshot.
    let _watcher = loop {
        let started = match source.filter() {
            Ok(filter) => {
                // Setting the watches lists every directory: off the runtime.
                let (root, watched) = (root.to_path_buf(), watched.clone());
                tokio::task::spawn_blocking(move || {
                    crate::watch::inotify::start(&root, filter, watched).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok(w) => break w,
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot watch the directory; retrying");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    backoff = Duration::from_secs(1);
    let mut walk_due = true;
    let mut next_walk = Instant::now();
    // Parents of entries the last snapshot could not read: listed again by
    // the next (they do not bring it on), so they are tried and reported
    // again rather than forgotten.
    let mut retry = TreeChanges::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let due = walk_due || Instant::now() >= next_walk;
        // Changes gather for `settle` from the first of them, also when
        // they came during the last snapshot: one snapshot per settle at
        // most, however fast things change.
        let ready_at = watched
            .pending_since()
            .map(|since| Instant::from_std(since) + shared.settle);
        if !due && ready_at.is_none_or(|at| at > Instant::now()) {
            let wake_at = ready_at.unwrap_or(next_walk).min(next_walk);
            tokio::select! {
                () = watched.wake.notified(), if ready_at.is_none() => {}
                () = tokio::time::sleep_until(wake_at) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let mut gathered = watched.take();
        gathered.changes.merge(std::mem::take(&mut retry));
        let full = due || gathered.lost.is_some();
        if let Some(why) = &gathered.lost {
            tracing::info!(source = %source.name, reason = %why, "walking the whole tree");
        }
        tracing::info!(
            source = %source.name,
            full_walk = full,
            changed_dirs = gathered.changes.dirs.len(),
            changed_paths = gathered.changes.paths.len(),
            "snapshot started"
        );
        let span =
            tracing::info_span!("snapshot", source = %source.name, bucket = %source.bucket, full);
        let outcome = snapshot(&shared, source, root, &gathered.changes, full)
            .instrument(span)
            .await;
        match outcome {
            Ok(report) => {
                tracing::info!(
                    source = %source.name,
                    seq = report.seq,
                    full_walk = full,
                    entries = report.files + report.dirs + report.symlinks + report.specials,
                    read = report.files_read,
                    "snapshot committed"
                );
                retry = parents_of_skipped(&report);
                if full {
                    walk_due = false;
                    next_walk = Instant::now() + shared.reconcile_interval;
                }
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, retry_in = ?backoff, "snapshot failed");
                // Nothing taken is dropped: the retry takes it again.
                watched.put_back(Gathered {
                    changes: gathered.changes,
                    lost: gathered.lost,
                    since: gathered.since,
                });
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The directories holding what a snapshot reported as not backed up.
fn parents_of_skipped(report: &BackupReport) -> TreeChanges {
    let dirs: BTreeSet<Vec<u8>> = report
        .skipped
        .iter()
        .map(|s| match s.path.rsplit_once('/') {
            Some((parent, _)) => parent.as_bytes().to_vec(),
            None => Vec::new(),
        })
        .collect();
    TreeChanges {
        dirs,
        paths: BTreeSet::new(),
    }
}

async fn snapshot(
    shared: &Shared,
    source: &SourceConfig,
    root: &Path,
    changes: &TreeChanges,
    full: bool,
) -> Result<BackupReport, String> {
    let filter = source.filter().map_err(|e| e.to_string())?;
    let dir = DirSource::new(root).with_filter(filter);
    let journal_path = shared.config.journal_path(source);
    let scanned: Arc<dyn Source> = match full {
        true => Arc::new(dir),
        false => Arc::new(ChangedTree::new(dir, journal_path.clone(), changes.clone())),
    };
    let backup = run_backup_rechecked(|trust_journal| BackupJob {
        client: shared.client.clone(),
        keys: shared.keys.clone(),
        source: scanned.clone(),
        journal_path: journal_path.clone(),
        heads_path: shared.config.heads_path(),
        bucket: source.bucket.clone(),
        progress: Progress::hidden(),
        trust_journal,
    });
    between_hooks(source, backup).await
}
