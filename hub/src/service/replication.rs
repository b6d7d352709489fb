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
    HoldResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::journal::commit_info;
use super::{HubState, shutting_down, unix_now_ms};
use crate::catalog::{BucketId, CatalogExt, ReplicaHold, SiteId, TenantId};

/// Commits read from the catalog at a time: a replica far behind streams
/// its backlog page by page, the hub holding one page.
const PAGE: usize = 64;
/// Commits sent but not yet taken by the replica's connection.
const IN_FLIGHT: usize = 8;
/// How often a caught-up stream looks at the journal without being woken:
/// commits appended through another hub process sharing the catalog.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

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
        let (cursors, holds) = hub
            .catalog(move |c| {
                c.read(|r| Ok((r.replica_cursors(bucket_id)?, r.replica_holds(bucket_id)?)))
            })
            .await?;
        let cursor = cursors.into_iter().find(|c| c.site == site_id);
        let confirmed = holds
            .into_iter()
            .find(|h| h.site == site_id && h.confirmed)
            .map_or(0, |h| h.seq);
        Ok(Response::new(CursorResponse {
            seq: cursor.as_ref().map_or(0, |c| c.seq),
            applied_unix_ms: cursor.map_or(0, |c| c.applied_unix_ms),
            confirmed_seq: confirmed,
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
}

/// One replica's stream of one bucket's journal.
struct Follower {
    hub: Arc<HubState>,
    bucket: BucketId,
    name: String,
    site: SiteId,
    tenant: TenantId,
}

impl Follower {
    /// Sends every commit after `after`, then each new one, until the
    /// replica goes, stops being a replica, or the hub stops.
    async fn run(self, mut after: u64, tx: mpsc::Sender<Result<CommitInfo, Status>>) {
        let mut draining = self.hub.draining();
        let mut appended = self.hub.commits.subscribe();
        loop {
            if *draining.borrow() {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
            // Seen before the read: a commit appended during it wakes the
            // next wait at once.
            appended.borrow_and_update();
            let page = match self.page(after).await {
                Ok(page) => page,
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
    async fn page(&self, after: u64) -> Result<Vec<CommitInfo>, Status> {
        let (bucket, site, tenant) = (self.bucket, self.site, self.tenant);
        let (placement, commits, sites) = self
            .hub
            .catalog(move |c| {
                c.read(|r| {
                    Ok((
                        r.bucket(bucket)?,
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
        let names: HashMap<_, _> = sites.into_iter().map(|s| (s.id, s.name)).collect();
        Ok(commits
            .into_iter()
            .map(|c| commit_info(c, &names, false))
            .collect())
    }
}
