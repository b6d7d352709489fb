//! The plan: what the policy in force at the hub schedules for each of this
//! site's sources (`Policy.Jobs`). The daemon asks again every
//! `policy-interval` and keeps the last answer in its state directory, so
//! an agent started while the hub is away still knows its schedules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use ferry_policies::Schedule;
use ferry_policies::cron::Cron;
use ferry_policies::file::Drill;
use ferry_proto::v1::{JobsRequest, JobsResponse, ScheduleSpec, SourceRef};
use prost::Message;

use crate::client::{HubCallError, HubClient};
use crate::config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Hub(#[from] HubCallError),
    /// The hub (or the saved plan) gave a schedule this agent cannot read.
    #[error("policy jobs of source {name}: {field}: {reason}")]
    Spec {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("saved plan {}: {reason}", path.display())]
    Saved { path: PathBuf, reason: String },
}

/// What the policy schedules for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePlan {
    /// Empty: the source is kept current continuously.
    pub schedules: Vec<Schedule>,
    pub drill: Option<Drill>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The tenant's policy version it comes from (0: none applied).
    pub version: u64,
    /// By source name.
    pub sources: BTreeMap<String, SourcePlan>,
}

fn schedule_of(
    source: &str,
    field: &'static str,
    spec: &ScheduleSpec,
) -> Result<Schedule, PlanError> {
    let bad = |reason: String| PlanError::Spec {
        name: source.to_owned(),
        field,
        reason,
    };
    let cron =
        Cron::parse(&spec.cron).map_err(|e| bad(format!("cron {:?}: {}", spec.cron, e.0)))?;
    let zone: Tz = spec
        .zone
        .parse()
        .map_err(|_| bad(format!("unknown time zone {:?}", spec.zone)))?;
    Ok(Schedule { cron, zone })
}

impl Plan {
    /// The schedules of `source` (none: continuous).
    pub fn schedules_of(&self, source: &str) -> &[Schedule] {
        self.sources
            .get(source)
            .map_or(&[], |s| s.schedules.as_slice())
    }

    /// The plan a `Jobs` answer gives.
    ///
    /// # Errors
    /// A schedule or drill that does not parse, naming its source.
    pub fn from_response(response: &JobsResponse) -> Result<Self, PlanError> {
        let mut sources = BTreeMap::new();
        for jobs in &response.sources {
            if !jobs.error.is_empty() {
                // Told on every answer: the source stays continuous.
                tracing::warn!(source = %jobs.source, bucket = %jobs.bucket, error = %jobs.error, "no policy jobs for this source");
            }
            let schedules = jobs
                .schedules
                .iter()
                .map(|s| schedule_of(&jobs.source, "schedules", s))
                .collect::<Result<_, _>>()?;
            let drill = match &jobs.drill {
                None => None,
                Some(d) => {
                    let spec = d.schedule.as_ref().ok_or_else(|| PlanError::Spec {
                        name: jobs.source.clone(),
                        field: "drill.schedule",
                        reason: "missing".into(),
                    })?;
                    if !(1..=100).contains(&d.sample_percent) {
                        return Err(PlanError::Spec {
                            name: jobs.source.clone(),
                            field: "drill.sample_percent",
                            reason: format!("{} is not 1 to 100", d.sample_percent),
                        });
                    }
                    Some(Drill {
                        schedule: schedule_of(&jobs.source, "drill.schedule", spec)?,
                        sample_percent: d.sample_percent,
                    })
                }
            };
            sources.insert(jobs.source.clone(), SourcePlan { schedules, drill });
        }
        Ok(Self {
            version: response.version,
            sources,
        })
    }

    /// Reads a plan saved by [`save`] (the `Jobs` answer as it came).
    ///
    /// # Errors
    /// Bytes that are not a `Jobs` answer, or one whose schedules do not parse.
    pub fn decode(bytes: &[u8]) -> Result<(Self, JobsResponse), PlanError> {
        let response = JobsResponse::decode(bytes).map_err(|e| PlanError::Spec {
            name: "(saved plan)".into(),
            field: "JobsResponse",
            reason: e.to_string(),
        })?;
        Ok((Self::from_response(&response)?, response))
    }
}

/// Asks the hub what it schedules for every source of `config`.
///
/// # Errors
/// The call failed, or the answer does not parse.
pub async fn fetch(
    client: &HubClient,
    config: &AgentConfig,
) -> Result<(Plan, JobsResponse), PlanError> {
    let request = JobsRequest {
        sources: config
            .sources
            .iter()
            .map(|s| SourceRef {
                source: s.name.clone(),
                bucket: s.bucket.clone(),
            })
            .collect(),
    };
    let response = client
        .policy
        .clone()
        .jobs(request)
        .await
        .map_err(HubCallError::failed("Jobs"))?
        .into_inner();
    Ok((Plan::from_response(&response)?, response))
}

/// Where the daemon keeps the last plan it was given.
pub fn saved_path(state_dir: &Path) -> PathBuf {
    state_dir.join("plan.pb")
}

/// Keeps `response` as the last plan (replaced whole: written aside, then
/// renamed over the old one).
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, response: &JobsResponse) -> Result<(), PlanError> {
    let saved = |e: std::io::Error| PlanError::Saved {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let aside = path.with_extension("pb.new");
    std::fs::write(&aside, response.encode_to_vec()).map_err(saved)?;
    std::fs::rename(&aside, path).map_err(saved)
}

/// The last plan saved, if any.
///
/// # Errors
/// A saved plan that cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<Plan>, PlanError> {
    match std::fs::read(path) {
        Ok(bytes) => Plan::decode(&bytes)
            .map(|(plan, _)| Some(plan))
            .map_err(|e| PlanError::Saved {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PlanError::Saved {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::v1::{DrillSpec, SourceJobs};

    fn spec(cron: &str, zone: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            zone: zone.into(),
        }
    }

    fn answer(schedules: Vec<ScheduleSpec>, drill: Option<DrillSpec>) -> JobsResponse {
        JobsResponse {
            version: 4,
            sources: vec![SourceJobs {
                source: "docs".into(),
                bucket: "acme/docs".into(),
                schedules,
                drill,
                error: String::new(),
            }],
        }
    }

    #[test]
    fn an_answer_becomes_a_plan_and_round_trips_through_the_saved_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let response = answer(
            vec![spec("0 2 * * *", "Europe/Zurich")],
            Some(DrillSpec {
                schedule: Some(spec("0 4 * * 0", "UTC")),
                sample_percent: 10,
            }),
        );
        let plan = Plan::from_response(&response).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.version, 4);
        assert_eq!(plan.schedules_of("docs").len(), 1);
        assert_eq!(
            plan.schedules_of("docs")[0].to_string(),
            "0 2 * * * (Europe/Zurich)"
        );
        assert!(plan.schedules_of("other").is_empty());
        let path = saved_path(dir.path());
        assert_eq!(load(&path).unwrap_or_else(|e| panic!("{e}")), None);
        save(&path, &response).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(load(&path).unwrap_or_else(|e| panic!("{e}")), Some(plan));
    }

    #[test]
    fn a_bad_schedule_names_its_source_and_field() {
        for (response, field) in [
            (answer(vec![spec("61 * * * *", "UTC")], None), "schedules"),
            (
                answer(vec![spec("0 2 * * *", "Mars/Olympus")], None),
                "schedules",
            ),
            (
                answer(
                    vec![],
                    Some(DrillSpec {
                        schedule: Some(spec("0 4 * * 0", "UTC")),
                        sample_percent: 0,
                    }),
                ),
                "drill.sample_percent",
            ),
            (
                answer(
                    vec![],
                    Some(DrillSpec {
                        schedule: None,
                        sample_percent: 5,
                    }),
                ),
                "drill.schedule",
            ),
        ] {
            match Plan::from_response(&response) {
                Err(PlanError::Spec { name, field: f, .. }) => {
                    assert_eq!((name.as_str(), f), ("docs", field));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_saved_plan_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = saved_path(dir.path());
        std::fs::write(&path, [0xff, 0xff, 0xff]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(load(&path), Err(PlanError::Saved { .. })));
    }
}
