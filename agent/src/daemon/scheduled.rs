//! A source on a schedule: no watcher and no event loop, but at each slot
//! of the policy's schedules one full backup (a directory walked against
//! its index, which reads only files whose stamp moved; a bucket listed in
//! full), between the source's hooks. Events a bucket's webhook queued
//! before the listing began are in it, so they are cleared after it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::Instrument;

use super::bucket::{acknowledge, between_hooks, read_changes};
use super::{Shared, snapshot_of};
use crate::backup::BackupReport;
use crate::config::{SourceConfig, SourceKind};
use crate::jobs::plan::Plan;
use crate::jobs::status::Mode;
use crate::jobs::timer::{self, Ended, Job};
use crate::source::Source;
use crate::source::bucket::BucketSource;
use crate::source::dir::DirSource;

/// A scheduled source's backups, as the timer runs them.
struct Backups<'a> {
    shared: &'a Shared,
    source: &'a SourceConfig,
}

impl Job for Backups<'_> {
    async fn run(&mut self, at: DateTime<Utc>) -> bool {
        let source = self.source;
        tracing::info!(source = %source.name, "scheduled snapshot started");
        let span = tracing::info_span!("snapshot", source = %source.name, bucket = %source.bucket, scheduled = true);
        let outcome = take(self.shared, source).instrument(span).await;
        match &outcome {
            Ok(report) => tracing::info!(
                source = %source.name,
                seq = report.seq,
                entries = report.files + report.dirs + report.symlinks + report.specials,
                read = report.files_read,
                "scheduled snapshot committed"
            ),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "scheduled snapshot failed")
            }
        }
        self.shared.status.record_backup(&source.name, at, &outcome);
        outcome.is_ok()
    }

    fn next(&mut self, at: Option<DateTime<Utc>>) {
        let at = at.unwrap_or_else(Utc::now).timestamp_millis();
        self.shared
            .status
            .update(&self.source.name, |s| s.next_unix_ms = Some(at));
    }
}

/// Keeps `source` on its schedules until `stop` turns true or the plan
/// gives it other schedules (or none).
pub async fn follow_schedule(
    shared: &Shared,
    source: &SourceConfig,
    plan: &mut watch::Receiver<Arc<Plan>>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let (version, schedules) = {
        let p = plan.borrow();
        (p.version, p.schedules_of(&source.name).to_vec())
    };
    let last_ok = shared.status.source(&source.name).last_ok_started_unix_ms;
    shared.status.update(&source.name, |s| {
        s.mode = Mode::Scheduled;
        s.schedules = schedules.iter().map(ToString::to_string).collect();
        s.policy_version = version;
    });
    tracing::info!(source = %source.name, schedules = ?schedules.iter().map(ToString::to_string).collect::<Vec<_>>(), "on schedule");
    let name = source.name.clone();
    let pick = move |p: &Plan| p.schedules_of(&name).to_vec();
    let mut job = Backups { shared, source };
    let last_ok = last_ok.and_then(DateTime::from_timestamp_millis);
    timer::on_schedule(shared.clock, plan, pick, last_ok, &mut job, stop).await
}

/// One full backup of `source`.
async fn take(shared: &Shared, source: &SourceConfig) -> Result<BackupReport, String> {
    match source.kind() {
        SourceKind::Dir(root) => {
            let filter = shared.config.filter_of(source).map_err(|e| e.to_string())?;
            let scanned: Arc<dyn Source> = Arc::new(DirSource::new(root).with_filter(filter));
            between_hooks(source, snapshot_of(shared, source, scanned)).await
        }
        SourceKind::Bucket(location) => {
            let bucket = BucketSource::open(location.clone())
                .await
                .map_err(|e| format!("opening the bucket: {e}"))?;
            let queued = read_changes(shared, &source.name).await?;
            let scanned: Arc<dyn Source> = Arc::new(bucket);
            let report = between_hooks(source, snapshot_of(shared, source, scanned)).await?;
            acknowledge(shared, &source.name, queued).await;
            Ok(report)
        }
    }
}
