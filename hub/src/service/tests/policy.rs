//! `Policy.Jobs`: a site learns the schedules the policy in force gives
//! its own sources, and nothing of buckets it does not write.

use super::*;
use crate::catalog::PolicyFileText;
use ferry_proto::v1::{JobsRequest, SourceRef};

const POLICY: &str = r#"tenant = "alpha"

[[schedule]]
cron = "0 3 * * *"
timezone = "Europe/Zurich"

[[bucket.photos.schedule]]
cron = "*/30 * * * *"

[[source."site/laptop".schedule]]
cron = "15 * * * *"

[source."site/laptop".drill]
cron = "0 4 * * 0"
sample-percent = 10
"#;

fn asks(pairs: &[(&str, &str)]) -> JobsRequest {
    JobsRequest {
        sources: pairs
            .iter()
            .map(|(source, bucket)| SourceRef {
                source: (*source).to_owned(),
                bucket: (*bucket).to_owned(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_site_learns_its_sources_jobs_and_nothing_of_buckets_it_does_not_write() {
    let hub = hub().await;
    let mut policy = hub.policy.clone();
    let ask = |pairs: &[(&str, &str)]| authed("alpha", asks(pairs));

    // No policy applied: version 0, every source continuous.
    let none = policy
        .jobs(ask(&[("main", "alpha/data")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.version, 0);
    assert!(none.sources[0].schedules.is_empty());

    let tenant = hub
        .catalog
        .read(|r| r.tenant_by_name("alpha"))
        .unwrap()
        .unwrap();
    let files = [PolicyFileText {
        name: "alpha.toml".into(),
        text: POLICY.into(),
    }];
    hub.catalog
        .write(|w| w.add_policy_version(tenant.id, 1, &files))
        .unwrap();
    let got = policy
        .jobs(ask(&[
            ("main", "alpha/data"),
            ("pics", "alpha/photos"),
            ("laptop", "alpha/data"),
            // Another site's bucket, another tenant's, one that is not there.
            ("x", "alpha/data2"),
            ("y", "beta/data"),
            ("z", "alpha/nothing"),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.version, 1);
    let crons: Vec<Vec<(String, String)>> = got
        .sources
        .iter()
        .map(|s| {
            s.schedules
                .iter()
                .map(|c| (c.cron.clone(), c.zone.clone()))
                .collect()
        })
        .collect();
    let one = |c: &str, z: &str| vec![(c.to_owned(), z.to_owned())];
    assert_eq!(
        crons[0],
        one("0 3 * * *", "Europe/Zurich"),
        "tenant default"
    );
    assert_eq!(crons[1], one("*/30 * * * *", "UTC"), "the bucket's own");
    assert_eq!(crons[2], one("15 * * * *", "UTC"), "the source's own");
    let drill = got.sources[2].drill.as_ref().unwrap();
    assert_eq!(drill.sample_percent, 10);
    assert!(got.sources[0].drill.is_none());
    for refused in &got.sources[3..] {
        assert!(refused.schedules.is_empty() && refused.drill.is_none());
        assert!(!refused.error.is_empty(), "{refused:?}");
    }
    assert!(
        got.sources[3].error.contains("not the source"),
        "{:?}",
        got.sources[3]
    );
    // Absent and another tenant's read the same: no probing.
    assert_eq!(
        got.sources[4].error.replace("beta/data", "B"),
        got.sources[5].error.replace("alpha/nothing", "B")
    );

    // Without a token, nothing.
    let err = policy
        .jobs(Request::new(asks(&[("main", "alpha/data")])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}
