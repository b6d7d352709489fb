//! Placement: a bucket's source writes and reads it, its replicas read it,
//! and every other site, of its tenant or another, does neither. Each RPC
//! is asked by each of the four.

use super::*;

/// Who asks: the token prefix, and whether the bucket is theirs to read.
const READERS: [(&str, bool); 4] = [
    ("alpha", true),   // the source of alpha/data
    ("alpha3", true),  // a replica of it
    ("alpha2", false), // a site of the tenant with no part in it
    ("beta", false),   // a site of another tenant
];

/// Bucket alpha/data as the catalog has it now.
pub(super) fn alpha_data(hub: &Hub) -> crate::catalog::Bucket {
    let t = hub
        .catalog
        .read(|r| r.tenant_by_name("alpha"))
        .unwrap()
        .unwrap()
        .id;
    hub.catalog
        .read(|r| r.bucket_by_name(t, "data"))
        .unwrap()
        .unwrap()
}

/// The test hub, with site "replica" (token alpha3-token) a replica of
/// alpha/data.
pub(super) async fn with_replica() -> Hub {
    let hub = hub().await;
    let bucket = alpha_data(&hub);
    let replica = hub
        .catalog
        .write(|w| w.create_site(bucket.tenant, "replica", &token_hash("alpha3-token")))
        .unwrap();
    hub.catalog
        .write(|w| w.set_bucket_replicas(bucket.id, &[replica]))
        .unwrap();
    hub
}

/// The refusal a site with no part in the bucket gets: the same for a
/// site of the tenant (denied) and of another (no such bucket, so nothing
/// is learnt of another tenant's names).
fn assert_refused(token: &str, result: Result<impl std::fmt::Debug, Status>) {
    let err = result.expect_err(token);
    let code = match token {
        "beta" => tonic::Code::NotFound,
        _ => tonic::Code::PermissionDenied,
    };
    assert_eq!(err.code(), code, "{token}: {err:?}");
}

#[tokio::test]
async fn reads_are_the_source_and_replicas_and_writes_the_source_alone() {
    let mut hub = with_replica().await;
    let session = hub.open("alpha").await;
    let x = id(1);
    hub.upload("alpha", session, &[(x, b"alpha x")]).await;
    assert_eq!(hub.commit("alpha", session, &[x]).await.unwrap(), 1);

    for (token, reads) in READERS {
        let listed = hub
            .journal
            .list_commits(authed(
                token,
                ListCommitsRequest {
                    bucket: "alpha/data".into(),
                    ..Default::default()
                },
            ))
            .await;
        let fetched = hub.try_fetch(token, "alpha/data", &[x]).await;
        let bad = hub
            .journal
            .report_bad_blobs(authed(
                token,
                ReportBadBlobsRequest {
                    bucket: "alpha/data".into(),
                    ids: id(9).0.to_vec(), // a copy no one holds: marks nothing
                },
            ))
            .await;
        let verified = hub
            .journal
            .report_verified_blobs(authed(
                token,
                ReportVerifiedBlobsRequest {
                    bucket: "alpha/data".into(),
                    copies: Vec::new(),
                    signature: vec![0; 64],
                },
            ))
            .await;
        if reads {
            assert_eq!(listed.unwrap().into_inner().commits.len(), 1, "{token}");
            assert_eq!(fetched.unwrap()[0].data.as_ref(), b"alpha x", "{token}");
            assert_eq!(bad.unwrap().into_inner().marked, 0, "{token}");
            // Past the bucket check: refused for what the report is (the
            // tenant registered no verifier key), not for who sent it.
            let err = verified.unwrap_err();
            assert_eq!(
                err.code(),
                tonic::Code::FailedPrecondition,
                "{token}: {err:?}"
            );
        } else {
            assert_refused(token, listed);
            assert_refused(token, fetched);
            assert_refused(token, bad);
            assert_refused(token, verified);
        }
    }

    for token in ["alpha3", "alpha2", "beta"] {
        // No session of the bucket for anyone but its source...
        let opened = hub
            .ingest
            .open_session(authed(
                token,
                OpenSessionRequest {
                    bucket: "alpha/data".into(),
                    header: b"age-encryption.org/v1\n".to_vec(),
                },
            ))
            .await;
        match token {
            "beta" => assert_refused(token, opened),
            _ => assert_eq!(
                opened.unwrap_err().code(),
                tonic::Code::PermissionDenied,
                "{token}"
            ),
        }
        // ...and the source's session is the source's alone.
        let denied = |result: Result<(), Status>| {
            let err = result.expect_err(token);
            assert_eq!(
                err.code(),
                tonic::Code::PermissionDenied,
                "{token}: {err:?}"
            );
        };
        denied(
            hub.ingest
                .find_missing(authed(
                    token,
                    FindMissingRequest {
                        session_id: session,
                        ids: vec![x.0.to_vec()],
                    },
                ))
                .await
                .map(drop),
        );
        denied(
            hub.ingest
                .check_references(authed(
                    token,
                    CheckReferencesRequest {
                        session_id: session,
                        data_chunk_ids: x.0.to_vec().into(),
                    },
                ))
                .await
                .map(drop),
        );
        let batch = BlobBatch {
            session_id: session,
            batch: 1,
            blobs: vec![Blob {
                id: id(2).0.to_vec(),
                kind: BlobKind::Data as u32,
                flags: 0,
                data: b"intruder".to_vec().into(),
            }],
        };
        let upload = match hub
            .ingest
            .upload_blobs(authed(token, tokio_stream::iter(vec![batch])))
            .await
        {
            Ok(acks) => acks.into_inner().next().await.unwrap().map(|_| ()),
            Err(e) => Err(e),
        };
        denied(upload);
        denied(
            hub.ingest
                .commit(authed(
                    token,
                    CommitRequest {
                        session_id: session,
                        kind: "snapshot".into(),
                        data_chunk_ids: x.0.to_vec().into(),
                        seq: 2,
                        mac: vec![2; 32],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        );
    }
    // Nothing the others tried reached the journal.
    assert_eq!(hub.list("alpha").await.len(), 1);
}
