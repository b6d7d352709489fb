//! The `Journal` service: a bucket's commits, and blobs fetched for restores.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use ferry_proto::chain::manifest_digest;
use ferry_proto::v1::journal_server::Journal;
use ferry_proto::v1::{
    CommitInfo, FetchBlobsRequest, FetchedBlob, ListCommitsRequest, ListCommitsResponse,
    ReportBadBlobsRequest, ReportBadBlobsResponse, ReportVerifiedBlobsRequest,
    ReportVerifiedBlobsResponse,
};
use ferry_proto::verified::{self, ReportError};
use ferry_proto::{BlobId, BlobKind};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::*;
use crate::fetch;

/// A listing page's commits at most.
const MAX_COMMITS_PER_PAGE: usize = 1000;
/// A listing page's encoded size at most (but one commit always fits): a
/// commit's manifest ids and body are bounded, so its page is too.
const MAX_PAGE_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct JournalService(pub Arc<HubState>);

type BlobStream = Pin<Box<dyn Stream<Item = Result<FetchedBlob, Status>> + Send>>;

#[tonic::async_trait]
impl Journal for JournalService {
    async fn list_commits(
        &self,
        request: Request<ListCommitsRequest>,
    ) -> Result<Response<ListCommitsResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_read(&site, &req.bucket).await?;
        let limit = match req.limit {
            0 => MAX_COMMITS_PER_PAGE,
            n => (n as usize).min(MAX_COMMITS_PER_PAGE),
        };
        let (bucket_id, tenant, after) = (bucket.id, site.tenant, req.after_seq);
        // One more than the page holds, to tell whether there is more.
        let (commits, sites) = hub
            .catalog(move |c| {
                c.read(|r| {
                    Ok((
                        r.commits(bucket_id, after, limit + 1)?,
                        r.list_sites(tenant)?,
                    ))
                })
            })
            .await?;
        let names: HashMap<_, _> = sites.into_iter().map(|s| (s.id, s.name)).collect();
        let mut page = Vec::new();
        let mut page_bytes = 0;
        let mut more = false;
        for c in commits {
            let info = commit_info(c, &names, req.omit_manifests);
            // A page holds at least one commit, whatever its size.
            let size = info.encoded_len();
            if page.len() == limit || (!page.is_empty() && page_bytes + size > MAX_PAGE_BYTES) {
                more = true;
                break;
            }
            page_bytes += size;
            page.push(info);
        }
        Ok(Response::new(ListCommitsResponse {
            commits: page,
            more,
        }))
    }

    type FetchBlobsStream = BlobStream;

    async fn fetch_blobs(
        &self,
        request: Request<FetchBlobsRequest>,
    ) -> Result<Response<Self::FetchBlobsStream>, Status> {
        let hub = self.0.clone();
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_read(&site, &req.bucket).await?;
        let ids = ids_from("FetchBlobsRequest.ids", &req.ids, MAX_IDS_PER_CALL)?;
        // The copies the sites that committed to the bucket uploaded (its
        // source, and before a failover the sources it had), which their
        // commits reference, or verified ones their backups deduplicated
        // against: never another site's unverified copy (which could be
        // anything under that id). The source's first.
        let (asked, bucket_id, source, tenant) =
            (ids.clone(), bucket.id, bucket.source_site, site.tenant);
        let (referenced, locations) = hub
            .catalog(move |c| {
                let (referenced, mut owners) = c.read(|r| {
                    Ok((
                        r.referenced(bucket_id, &asked)?,
                        r.committing_sites(bucket_id)?,
                    ))
                })?;
                owners.retain(|s| *s != source);
                owners.insert(0, source);
                let mut found = Vec::new();
                let mut wanted = asked;
                for site in owners {
                    if wanted.is_empty() {
                        break;
                    }
                    let located = c.blob_locations(BlobOwner { tenant, site }, &wanted)?;
                    let got: HashSet<BlobId> = located.iter().map(|l| l.id).collect();
                    wanted.retain(|id| !got.contains(id));
                    found.extend(located);
                }
                Ok((referenced, found))
            })
            .await?;
        // Only what the bucket's commits reference (and session headers,
        // which hold only wrapped keys): a site that may read this bucket
        // reads none of the tenant's other data through it, even by id.
        let mut unreferenced = HashSet::new();
        let locations: HashMap<BlobId, _> = locations
            .into_iter()
            .filter(|l| {
                let readable = l.kind == BlobKind::SessionHeader || referenced.allows(&l.id);
                if !readable {
                    unreferenced.insert(l.id);
                }
                readable
            })
            .map(|l| (l.id, l))
            .collect();
        let planned = fetch::plan(ids.into_iter().map(|id| (id, locations.get(&id).cloned())));
        let (tx, rx) = mpsc::channel(4);
        let pools = hub.pools.clone();
        let draining = hub.draining();
        let running = hub.stream_guard();
        let name = req.bucket;
        tokio::spawn(fetch::run(pools, planned, async move |fetched| {
            let _running = &running;
            // A stopping hub ends the restore's stream, retryably.
            if *draining.borrow() {
                let _ = tx.send(Err(shutting_down())).await;
                return false;
            }
            let item = match fetched {
                Ok((loc, data)) => Ok(FetchedBlob {
                    id: loc.id.0.to_vec(),
                    kind: loc.kind as u32,
                    flags: u32::from(loc.flags),
                    header_id: loc.header_id.0.to_vec(),
                    data,
                    copy_site: u64::try_from(loc.site.0).unwrap_or_default(),
                    verified: loc.verified,
                }),
                Err((id, fetch::FetchError::Missing)) if unreferenced.contains(&id) => Err(
                    Status::not_found(format!("blob {id} is not referenced by bucket {name}")),
                ),
                Err((id, fetch::FetchError::Missing)) => {
                    Err(Status::not_found(format!("blob {id} is not stored")))
                }
                Err((id, e)) => {
                    tracing::error!(blob = %id, error = %e, "reading blob");
                    Err(Status::data_loss(format!("blob {id}: {e}")))
                }
            };
            tx.send(item).await.is_ok()
        }));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_bad_blobs(
        &self,
        request: Request<ReportBadBlobsRequest>,
    ) -> Result<Response<ReportBadBlobsResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_read(&site, &req.bucket).await?;
        if !req.ids.len().is_multiple_of(ferry_proto::ID_LEN) {
            return Err(Status::invalid_argument(format!(
                "ReportBadBlobsRequest.ids: {} bytes is not a whole number of 32-byte ids",
                req.ids.len()
            )));
        }
        let mut ids = ids_of(&req.ids);
        // Each id once: engines need not agree on what a repeat means.
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        if ids.len() > MAX_IDS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "ReportBadBlobsRequest.ids: {} ids, at most {MAX_IDS_PER_CALL}",
                ids.len()
            )));
        }
        // The copies FetchBlobs serves this bucket (see fetch_blobs).
        let owner = BlobOwner {
            tenant: site.tenant,
            site: bucket.source_site,
        };
        let count = ids.len();
        let marked = hub.catalog(move |c| c.mark_bad(owner, &ids)).await?;
        tracing::warn!(site = %site.name, bucket = %req.bucket, reported = count, marked, "blobs reported bad");
        Ok(Response::new(ReportBadBlobsResponse {
            marked: u32::try_from(marked).unwrap_or(u32::MAX),
        }))
    }

    async fn report_verified_blobs(
        &self,
        request: Request<ReportVerifiedBlobsRequest>,
    ) -> Result<Response<ReportVerifiedBlobsResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        let bucket = hub.bucket_for_read(&site, &req.bucket).await?;
        let copies = verified::decode_copies(&req.copies).map_err(|e| {
            Status::invalid_argument(format!("ReportVerifiedBlobsRequest.copies: {e}"))
        })?;
        if copies.len() > MAX_IDS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "ReportVerifiedBlobsRequest.copies: {} copies, at most {MAX_IDS_PER_CALL}",
                copies.len()
            )));
        }
        let tenant_id = site.tenant;
        let tenant = hub
            .catalog(move |c| c.read(|r| r.tenant(tenant_id)))
            .await?
            .ok_or_else(|| Status::not_found(format!("tenant {}", site.tenant_name)))?;
        let Some(key) = tenant.verifier else {
            return Err(Status::failed_precondition(format!(
                "tenant {} has no verifier key registered (ferry-hub tenant verifier): dedup stays per site",
                tenant.name
            )));
        };
        verified::check(&key, &tenant.name, &req.copies, &req.signature).map_err(|e| match e {
            ReportError::BadSignature | ReportError::BadKey | ReportError::KeyLength { .. } => {
                Status::permission_denied(format!("ReportVerifiedBlobsRequest.signature: {e}"))
            }
            _ => Status::invalid_argument(format!("ReportVerifiedBlobsRequest.signature: {e}")),
        })?;
        // Only the source site's copies, which FetchBlobs serves this bucket
        // unverified (one of no known site counts for every site already):
        // a report marks nothing the reporter could not have read.
        let source = bucket.source_site;
        let mut marking: Vec<(BlobId, crate::catalog::SiteId)> = copies
            .iter()
            .filter(|c| i64::try_from(c.site).ok() == Some(source.0))
            .map(|c| (c.id, source))
            .collect();
        marking.sort_unstable();
        marking.dedup();
        let ids: Vec<BlobId> = marking.iter().map(|(id, _)| *id).collect();
        let marked = hub
            .catalog(move |c| c.mark_verified(tenant_id, &marking))
            .await?;
        hub.packer.stored().insert_verified(
            BlobOwner {
                tenant: tenant_id,
                site: source,
            },
            &ids,
        );
        tracing::info!(site = %site.name, bucket = %req.bucket, reported = copies.len(), marked, "blob copies verified");
        Ok(Response::new(ReportVerifiedBlobsResponse {
            marked: u32::try_from(marked).unwrap_or(u32::MAX),
        }))
    }
}

/// A journal commit as the services send it, its site by name.
pub(super) fn commit_info(
    c: crate::catalog::Commit,
    names: &HashMap<crate::catalog::SiteId, String>,
    omit_manifest: bool,
) -> CommitInfo {
    CommitInfo {
        seq: c.seq,
        site: names.get(&c.site).cloned().unwrap_or_default(),
        time_unix_ms: c.time_unix_ms,
        kind: c.kind.as_str().to_string(),
        manifest: match omit_manifest {
            true => Vec::new(),
            false => c.manifest.iter().map(|id| id.0.to_vec()).collect(),
        },
        manifest_digest: manifest_digest(&c.manifest).to_vec(),
        body: c.body,
        files: c.files,
        bytes: c.bytes,
        mac: c.mac.map(|m| m.to_vec()).unwrap_or_default(),
    }
}
