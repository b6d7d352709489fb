//! A directory source under `ferry-agent run`: watched (see [`crate::watch`])
//! before a first full walk, then a snapshot `settle` after the first change
//! that lists only what changed. A lost event, a failed first walk, changed
//! exclude rules, a watcher started anew and every `reconcile-interval`
//! mean a full walk against the index (which still reads only files whose
//! stamp moved).
//!
//! Hooks run around every snapshot. What the pre-backup hook changes is in
//! the snapshot it precedes (the changes are taken after it, once the
//! watcher has read its events); what the post-backup hook changes again
//! (what it changed in its last run too) rides along with the next
//! snapshot without bringing one on, so hooks that write into the tree do
//! not keep snapshots coming, while anything else changed during its run
//! does bring one on.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{MAX_BACKOFF, Shared, snapshot_of, wait};
use crate::backup::{BackupError, BackupReport};
use crate::config::{SourceConfig, SourceKind};
use crate::source::Source;
use crate::source::changed::{ChangedTree, TreeChanges};
use crate::source::dir::DirSource;
use crate::watch::tree::TreeWatcher;
use crate::watch::{Gathered, Watched};

/// How often the whole tree is walked while part of it cannot be watched.
const UNWATCHED_WALK: Duration = Duration::from_secs(300);
/// Longest wait for the watcher to read what a hook did.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// What the exclude rules were when the watcher started: rules that
/// change (an edited exclude file) mean a new watcher and a full walk.
fn rules_of(source: &SourceConfig) -> Vec<u8> {
    let mut rules = format!(
        "{:?} {} {}",
        source.exclude, source.one_file_system, source.exclude_caches
    )
    .into_bytes();
    if let Some(file) = &source.exclude_file {
        rules.extend(std::fs::read(file).unwrap_or_default());
    }
    rules
}

/// Starts watching `source`, retrying with backoff; `None` if asked to stop.
async fn start_watching(
    shared: &Shared,
    source: &SourceConfig,
    root: &Path,
    watched: &Arc<Watched>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TreeWatcher, Vec<u8>)> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let rules = rules_of(source);
        let started = match shared.config.filter_of(source) {
            Ok(filter) => {
                // Setting the watches lists every directory: off the runtime.
                let (root, watched) = (root.to_path_buf(), watched.clone());
                let kind = shared.config.run.watcher;
                tokio::task::spawn_blocking(move || {
                    crate::watch::start(&root, filter, watched, kind).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok(w) => return Some((w, rules)),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot watch the directory; retrying");
                if wait(stop, backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Keeps one directory source's snapshots current until `stop` turns true.
pub async fn follow_dir(shared: Shared, source_index: usize, mut stop: watch::Receiver<bool>) {
    let Some(source) = shared.config.sources.get(source_index) else {
        return;
    };
    let SourceKind::Dir(root) = source.kind() else {
        return;
    };
    // Watching starts before the first walk: what changes during it is
    // taken by the next snapshot.
    let mut watched = Arc::new(Watched::new(shared.config.run.max_changes));
    let Some((mut watcher, mut rules)) =
        start_watching(&shared, source, root, &watched, &mut stop).await
    else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    let mut walk_due = true;
    let mut next_walk = Instant::now();
    // Parents of entries the last snapshot could not read, and what the
    // post-backup hook changed: taken by the next snapshot, which they do
    // not bring on.
    let mut carried = TreeChanges::default();
    // What the post-backup hook changed the last time. A change in its run
    // cannot be told from one by someone else at the same moment, so only
    // what it changed the time before too is taken as its own (a hook
    // writes the same files each run); anything else brings on a snapshot,
    // so a change made while the hook ran is not left waiting.
    let mut by_hook_before = TreeChanges::default();
    let (pre, post) = source.hooks();
    loop {
        if *stop.borrow() {
            return;
        }
        // A blind watcher, or rules that changed: watch anew, then walk.
        let restart = match watched.take_broken() {
            Some(why) => Some(why),
            None if rules_of(source) != rules => Some("the exclude rules changed".into()),
            None => None,
        };
        if let Some(why) = restart {
            tracing::warn!(source = %source.name, reason = %why, "watching the directory anew");
            drop(watcher);
            watched = Arc::new(Watched::new(shared.config.run.max_changes));
            match start_watching(&shared, source, root, &watched, &mut stop).await {
                Some((w, r)) => (watcher, rules) = (w, r),
                None => return,
            }
            walk_due = true;
        }
        if watched.degraded().is_some() {
            next_walk = next_walk.min(Instant::now() + UNWATCHED_WALK);
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
        let mut env = crate::hooks::env_of(source);
        if let Some(pre) = &pre {
            if let Err(e) = pre.run(&source.name, &env).await {
                tracing::error!(source = %source.name, error = %e, retry_in = ?backoff, "snapshot not taken");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            watched.sync(SYNC_WAIT).await;
        }
        let mut gathered = watched.take();
        gathered.changes.merge(std::mem::take(&mut carried));
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
        let started = chrono::Utc::now();
        let outcome = snapshot(&shared, source, root, &gathered.changes, full)
            .instrument(span)
            .await;
        shared.status.record_backup(&source.name, started, &outcome);
        if let Some(post) = &post {
            // Changes so far bring on the next snapshot; the hook's own do not.
            watched.sync(SYNC_WAIT).await;
            let before = watched.take();
            crate::hooks::add_result(&mut env, &outcome);
            if let Err(e) = post.run(&source.name, &env).await {
                tracing::error!(source = %source.name, error = %e, "post-backup hook failed");
            }
            watched.sync(SYNC_WAIT).await;
            let by_hook = watched.take();
            watched.put_back(before);
            match by_hook.lost {
                Some(_) => watched.put_back(by_hook),
                None => {
                    let (own, new) = by_hook.changes.clone().split_by(&by_hook_before);
                    by_hook_before = by_hook.changes;
                    carried.merge(own);
                    if !new.is_empty() {
                        watched.put_back(Gathered {
                            changes: new,
                            lost: None,
                            since: by_hook.since,
                        });
                    }
                }
            }
        }
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
                carried.merge(parents_of_skipped(&report));
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
) -> Result<BackupReport, BackupError> {
    let filter = shared
        .config
        .filter_of(source)
        .map_err(|e| BackupError::Task(e.to_string()))?;
    let dir = DirSource::new(root).with_filter(filter);
    let journal_path = shared.config.journal_path(source);
    let scanned: Arc<dyn Source> = match full {
        true => Arc::new(dir),
        false => Arc::new(ChangedTree::new(dir, journal_path, changes.clone())),
    };
    snapshot_of(shared, source, scanned).await
}
