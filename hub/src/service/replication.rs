//! The `Replication` service: a replica site follows a bucket's journal as
//! a server stream (the backlog after its cursor, then each commit as it is
//! appended) and acknowledges how far it has applied it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1::replication_server::Replication;
use ferry_proto::v1::{
    AckRequest, AckResponse, CommitInfo, CursorRequest, CursorResponse, FollowRequest, HoldRequest,
    HoldResponse, ReportRequest, ReportResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::journal::commit_info;
use super::{HubState, shutting_down, unix_now_ms};
use crate::catalog::replication::MAX_DEAD_LETTERS;
use crate::catalog::{
    BucketId, CatalogExt, DeadLetter, DeadLetters, ReplicaFailure, ReplicaHold, SiteId, TenantId,
};

/// Commits read from the catalog at a time: a replica far behind streams
/// its backlog page by page, the hub holding one page.
const PAGE: usize = 64;
/// Commits sent but not yet taken by the replica's connection.
const IN_FLIGHT: usize = 8;
/// How often a caught-up stream looks at the journal without being woken:
/// commits appended through another hub process sharing the catalog, a
/// pause lifted, a replay asked for.
const LOOK_AGAIN: Duration = Duration::from_secs(2);
/// The longest error message or dead letter path or reason kept: a replica
/// tells what it met, not a file.
const MAX_TEXT: usize = 4096;

/// `text` cut to at most [`MAX_TEXT`] bytes, at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[derive(Clone)]
pub struct ReplicationService(pub Arc<HubState>);

type CommitStream = Pin<Box<dyn Stream<Item = Result<CommitInfo, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    type FollowStream = CommitStream;

    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let hub = self.0.clone();
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_replica(&site, &req.bucket).await?;
        tracing::info!(site = %site.name, bucket = %req.bucket, after = req.after_seq, "replica following");
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let follower = Follower {
            hub: hub.clone(),
            bucket: bucket.id,
            name: req.bucket,
            site: site.id,
            tenant: site.tenant,
        };
        let running = hub.stream_guard();
        tokio::spawn(async move {
            let _running = running;
            follower.run(req.after_seq, tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_replica(&site, &req.bucket).await?;
        let (bucket_id, site_id, seq) = (bucket.id, site.id, req.seq);
        let now_ms = unix_now_ms();
        let cursor = hub
            .catalog(move |c| c.write(|w| w.ack_replica(bucket_id, site_id, seq, now_ms)))
            .await?;
        tracing::debug!(site = %site.name, bucket = %req.bucket, seq = cursor.seq, "replica acknowledged");
        Ok(Response::new(AckResponse { seq: cursor.seq }))
    }

    async fn cursor(
        &self,
        request: Request<CursorRequest>,
    ) -> Result<Response<CursorResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_replica(&site, &req.bucket).await?;
        let (bucket_id, site_id) = (bucket.id, site.id);
        let (cursors, holds, troubles, paused) = hub
            .catalog(move |c| {
                c.read(|r| {
                    Ok((
                        r.replica_cursors(bucket_id)?,
                        r.replica_holds(bucket_id)?,
                        r.replica_troubles(bucket_id)?,
                        r.replication_pause(bucket_id)?,
                    ))
                })
            })
            .await?;
        let cursor = cursors.into_iter().find(|c| c.site == site_id);
        let confirmed = holds
            .into_iter()
            .find(|h| h.site == site_id && h.confirmed)
            .map_or(0, |h| h.seq);
        let trouble = troubles.into_iter().find(|t| t.site == site_id);
        Ok(Response::new(CursorResponse {
            seq: cursor.as_ref().map_or(0, |c| c.seq),
            applied_unix_ms: cursor.map_or(0, |c| c.applied_unix_ms),
            confirmed_seq: confirmed,
            dead_letters: trouble
                .as_ref()
                .and_then(|t| t.dead.as_ref())
                .map_or(0, |d| d.total),
            replay: trouble.is_some_and(|t| t.replay_requested),
            paused_unix_ms: paused.paused_unix_ms.unwrap_or(0),
            resumed_unix_ms: paused.resumed_unix_ms.unwrap_or(0),
        }))
    }

    async fn hold(&self, request: Request<HoldRequest>) -> Result<Response<HoldResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_replica(&site, &req.bucket).await?;
        let hold = ReplicaHold {
            site: site.id,
            seq: req.seq,
            deletes: req.deletes,
            entries: req.entries,
            held_unix_ms: unix_now_ms(),
            confirmed: false,
        };
        let (bucket_id, site_id, seq) = (bucket.id, site.id, req.seq);
        let confirmed = hub
            .catalog(move |c| {
                c.write(|w| {
                    w.hold_replica(bucket_id, &hold)?;
                    Ok(w.replica_holds(bucket_id)?
                        .into_iter()
                        .any(|h| h.site == site_id && h.seq == seq && h.confirmed))
                })
            })
            .await?;
        tracing::warn!(site = %site.name, bucket = %req.bucket, seq = req.seq, deletes = req.deletes, entries = req.entries, confirmed, "replica holds a commit back");
        Ok(Response::new(HoldResponse { confirmed }))
    }

    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        self.report_inner(request).await
    }
}

impl ReplicationService {
    async fn report_inner(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_replica(&site, &req.bucket).await?;
        let (bucket_id, site_id, seq) = (bucket.id, site.id, req.seq);
        let failure = (!req.error.is_empty()).then(|| ReplicaFailure {
            seq,
            message: bounded(req.error),
            at_unix_ms: unix_now_ms(),
        });
        let dead = req.dead.map(|list| {
            let letters: Vec<DeadLetter> = list
                .letters
                .into_iter()
                .take(MAX_DEAD_LETTERS)
                .map(|l| DeadLetter {
                    path: bounded(l.path),
                    reason: bounded(l.reason),
                })
                .collect();
            let total = list.total.max(letters.len() as u64);
            let dead = (total > 0).then_some(DeadLetters {
                seq,
                letters,
                total,
            });
            (dead, list.replayed)
        });
        if let Some(failure) = &failure {
            tracing::warn!(site = %site.name, bucket = %req.bucket, seq, error = %failure.message, "replica failed to apply a commit");
        }
        if let Some((Some(dead), _)) = &dead {
            tracing::warn!(site = %site.name, bucket = %req.bucket, seq, dead_letters = dead.total, "replica gave up writing entries: dead letters");
        }
        hub.catalog(move |c| {
            c.write(|w| {
                if let Some(failure) = &failure {
                    w.record_replica_error(bucket_id, site_id, failure)?;
                }
                if let Some((dead, replayed)) = &dead {
                    w.set_dead_letters(bucket_id, site_id, dead.as_ref(), *replayed)?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(Response::new(ReportResponse {}))
    }
}

/// One replica's stream of one bucket's journal.
struct Follower {
    hub: Arc<HubState>,
    bucket: BucketId,
    name: String,
    site: SiteId,
    tenant: TenantId,
}

/// What the journal holds for a follower now.
enum Page {
    Commits(Vec<CommitInfo>),
    /// An operator paused the bucket's replication: nothing is sent.
    Paused,
    /// An operator asked this replica to replay its dead letters since the
    /// stream began: it ends, and the replica starts again from its cursor.
    Replay,
}

impl Follower {
    /// Sends every commit after `after`, then each new one, until the
    /// replica goes, stops being a replica, or the hub stops.
    async fn run(self, mut after: u64, tx: mpsc::Sender<Result<CommitInfo, Status>>) {
        let mut draining = self.hub.draining();
        let mut appended = self.hub.commits.subscribe();
        // A replay asked for before the stream began is the one the
        // replica is doing.
        let mut replay_at_start = None;
        loop {
            if *draining.borrow() {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
            // Seen before the read: a commit appended during it wakes the
            // next wait at once.
            appended.borrow_and_update();
            let page = match self.page(after, &mut replay_at_start).await {
                Ok(Page::Commits(page)) => page,
                Ok(Page::Paused) => Vec::new(),
                Ok(Page::Replay) => {
                    tracing::info!(bucket = %self.name, "replay asked for: the replica's stream ends");
                    return;
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            if page.is_empty() {
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(LOOK_AGAIN) => {}
                    _ = draining.changed() => {}
                    _ = tx.closed() => return,
                }
                continue;
            }
            for info in page {
                after = info.seq;
                tokio::select! {
                    sent = tx.send(Ok(info)) => if sent.is_err() { return },
                    _ = draining.changed() => {}
                }
            }
        }
    }

    /// The next commits after `after`, checking again that the site is
    /// still a replica (a placement changed while it follows ends it).
    async fn page(&self, after: u64, replay_at_start: &mut Option<bool>) -> Result<Page, Status> {
        let (bucket, site, tenant) = (self.bucket, self.site, self.tenant);
        let (placement, paused, troubles, commits, sites) = self
            .hub
            .catalog(move |c| {
                c.read(|r| {
                    Ok((
                        r.bucket(bucket)?,
                        r.replication_pause(bucket)?.paused_unix_ms,
                        r.replica_troubles(bucket)?,
                        r.commits(bucket, after, PAGE)?,
                        r.list_sites(tenant)?,
                    ))
                })
            })
            .await?;
        if !placement.is_some_and(|b| b.replicas.contains(&site)) {
            return Err(Status::permission_denied(format!(
                "this site is no longer a replica of bucket {}",
                self.name
            )));
        }
        let replay = troubles
            .iter()
            .any(|t| t.site == site && t.replay_requested);
        if replay && !*replay_at_start.get_or_insert(replay) {
            return Ok(Page::Replay);
        }
        if !replay {
            *replay_at_start = Some(false);
        }
        if paused.is_some() {
            return Ok(Page::Paused);
        }
        let names: HashMap<_, _> = sites.into_iter().map(|s| (s.id, s.name)).collect();
        Ok(Page::Commits(
            commits
                .into_iter()
                .map(|c| commit_info(c, &names, false))
                .collect(),
        ))
    }
}
