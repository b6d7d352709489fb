//! The `Policy` service: a site asks what the policy in force schedules for
//! its sources. A site learns only its own sources' jobs, and only for
//! buckets it is the source of; the tenant's other rules (retention,
//! compliance, holds) stay at the hub, which enforces them.

use std::sync::Arc;

use ferry_policies::Schedule;
use ferry_policies::file::Drill;
use ferry_proto::v1::policy_server::Policy;
use ferry_proto::v1::{DrillSpec, JobsRequest, JobsResponse, ScheduleSpec, SourceJobs};
use tonic::{Request, Response, Status};

use super::HubState;
use crate::catalog::CatalogExt;

/// Most sources one `Jobs` call may ask about.
const MAX_SOURCES: usize = 1000;

#[derive(Clone)]
pub struct PolicyService(pub Arc<HubState>);

fn spec(s: &Schedule) -> ScheduleSpec {
    ScheduleSpec {
        cron: s.cron.as_str().to_owned(),
        zone: s.zone.name().to_owned(),
    }
}

fn drill_spec(d: &Drill) -> DrillSpec {
    DrillSpec {
        schedule: Some(spec(&d.schedule)),
        sample_percent: d.sample_percent,
    }
}

#[tonic::async_trait]
impl Policy for PolicyService {
    async fn jobs(&self, request: Request<JobsRequest>) -> Result<Response<JobsResponse>, Status> {
        let hub = &self.0;
        let site = super::gate::principal(&request)?;
        let req = request.into_inner();
        if req.sources.len() > MAX_SOURCES {
            return Err(Status::invalid_argument(format!(
                "JobsRequest.sources: {} sources, at most {MAX_SOURCES}",
                req.sources.len()
            )));
        }
        // Only buckets this site writes are answered: no probing of the
        // tenant's other buckets through their schedules. One source
        // misconfigured leaves the others their jobs.
        let mut buckets = Vec::with_capacity(req.sources.len());
        for source in &req.sources {
            buckets.push(match hub.bucket_for_write(&site, &source.bucket).await {
                Ok(b) => Ok(b.name),
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::NotFound
                            | tonic::Code::PermissionDenied
                            | tonic::Code::InvalidArgument
                    ) =>
                {
                    Err(status.message().to_owned())
                }
                Err(status) => return Err(status),
            });
        }
        let tenant = site.tenant;
        let version = hub
            .catalog(move |c| c.read(|r| r.policy(tenant, None)))
            .await?;
        let policy =
            crate::policy::tenant_policy(version.as_ref(), &site.tenant_name).map_err(|e| {
                tracing::error!(error = %e, "stored policy unreadable");
                Status::internal(e.to_string())
            })?;
        let sources = req
            .sources
            .into_iter()
            .zip(buckets)
            .map(|(source, bucket)| match bucket {
                Ok(bucket) => {
                    let (schedules, drill) = policy.source(&site.name, &source.source, &bucket);
                    SourceJobs {
                        schedules: schedules.iter().map(spec).collect(),
                        drill: drill.map(drill_spec),
                        source: source.source,
                        bucket: source.bucket,
                        error: String::new(),
                    }
                }
                Err(error) => SourceJobs {
                    source: source.source,
                    bucket: source.bucket,
                    error,
                    ..SourceJobs::default()
                },
            })
            .collect();
        Ok(Response::new(JobsResponse {
            version: version.map_or(0, |v| v.version),
            sources,
        }))
    }
}
