//! A bucket source under `ferry-agent run`: a full listing first (and again
//! every `reconcile-interval`, and after any event gap), and in between a
//! snapshot of the index plus the keys events named, taken soon after
//! events arrive. Events leave the queue only once the snapshot that took
//! them is committed at the hub.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{EVENTS_PER_SNAPSHOT, MAX_BACKOFF, Shared, snapshot_of, wait};
use crate::backup::BackupReport;
use crate::config::{SourceConfig, SourceKind};
use crate::events::overlay::EventOverlay;
use crate::events::queue::{Changes, QueueReader};
use crate::source::Source;
use crate::source::bucket::BucketSource;

/// Keeps one bucket source's snapshots current until `stop` turns true.
pub async fn follow_bucket(
    shared: Shared,
    source_index: usize,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(source) = shared.config.sources.get(source_index) else {
        return;
    };
    let SourceKind::Bucket(location) = source.kind() else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    let bucket = loop {
        match BucketSource::open(location.clone()).await {
            Ok(b) => break Arc::new(b),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot open the bucket; retrying");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut next_reconcile = Instant::now();
    backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let changes = match read_changes(&shared, &source.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot read the event queue");
                if wait(&mut stop, backoff).await {
                    return;
                }
                continue;
            }
        };
        let full = Instant::now() >= next_reconcile || changes.gap.is_some();
        if !full && changes.keys.is_empty() {
            tokio::select! {
                () = wake.notified() => {
                    if wait(&mut stop, shared.settle).await {
                        return;
                    }
                }
                () = tokio::time::sleep_until(next_reconcile) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let started = chrono::Utc::now();
        let outcome = snapshot(&shared, source, &bucket, &changes, full).await;
        shared.status.record_backup(&source.name, started, &outcome);
        match outcome {
            Ok(report) => {
                tracing::info!(
                    source = %source.name,
                    seq = report.seq,
                    full_listing = full,
                    events = changes.keys.len(),
                    objects = report.files,
                    read = report.files_read,
                    "snapshot committed"
                );
                acknowledge(&shared, &source.name, changes).await;
                if full {
                    next_reconcile = Instant::now() + shared.reconcile_interval;
                }
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, retry_in = ?backoff, "snapshot failed");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

pub(super) async fn read_changes(shared: &Shared, source: &str) -> Result<Changes, String> {
    let path = shared.queue_path.clone();
    let name = source.to_owned();
    tokio::task::spawn_blocking(move || {
        QueueReader::open(&path)?.changes(&name, EVENTS_PER_SNAPSHOT)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Clears the events a committed snapshot took from the queue.
pub(super) async fn acknowledge(shared: &Shared, source: &str, changes: Changes) {
    let path = shared.queue_path.clone();
    let name = source.to_owned();
    let acknowledged =
        tokio::task::spawn_blocking(move || QueueReader::open(&path)?.acknowledge(&name, &changes))
            .await;
    let failed = match acknowledged {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = failed {
        // Harmless: the events are taken again by the next snapshot.
        tracing::warn!(source = %source, error = %e, "cannot clear taken events");
    }
}

async fn snapshot(
    shared: &Shared,
    source: &SourceConfig,
    bucket: &Arc<BucketSource>,
    changes: &Changes,
    full: bool,
) -> Result<BackupReport, String> {
    let journal_path = shared.config.journal_path(source);
    let scanned: Arc<dyn Source> = if full {
        bucket.clone()
    } else {
        Arc::new(
            EventOverlay::new(bucket.clone(), journal_path, changes.keys.keys().cloned())
                .await
                .map_err(|e| e.to_string())?,
        )
    };
    between_hooks(source, snapshot_of(shared, source, scanned)).await
}

/// Runs a bucket snapshot between the source's hooks. A failing
/// post-backup hook is logged: the snapshot stands.
pub(super) async fn between_hooks(
    source: &crate::config::SourceConfig,
    backup: impl Future<Output = Result<crate::backup::BackupReport, crate::backup::BackupError>>,
) -> Result<crate::backup::BackupReport, String> {
    let hooked = crate::hooks::around(source, backup)
        .await
        .map_err(|e| e.to_string())?;
    if let Err(e) = &hooked.post {
        tracing::error!(source = %source.name, error = %e, "post-backup hook failed");
    }
    hooked.backup.map_err(|e| e.to_string())
}
