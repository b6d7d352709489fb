//! The Replication service: a replica follows a bucket's journal (backlog,
//! then each commit as it is appended), acknowledges its cursor, and is
//! cut off when it stops being a replica or the hub stops; no other site
//! may do any of it.

use std::time::Duration;

use super::placement::{alpha_data, with_replica};
use super::*;
use ferry_proto::v1::{
    AckRequest, CursorRequest, DeadLetter, DeadLetterList, FollowRequest, HoldRequest,
    ReportRequest,
};

fn follow(after_seq: u64) -> FollowRequest {
    FollowRequest {
        bucket: "alpha/data".into(),
        after_seq,
    }
}

fn ack(seq: u64) -> AckRequest {
    AckRequest {
        bucket: "alpha/data".into(),
        seq,
    }
}

/// One commit of alpha/data by its source.
async fn commit_one(hub: &mut Hub, seed: u8) -> u64 {
    let session = hub.open("alpha").await;
    hub.upload("alpha", session, &[(id(seed), b"data")]).await;
    hub.commit("alpha", session, &[id(seed)]).await.unwrap()
}

/// The next item of a followed stream, within a bound.
async fn next(stream: &mut tonic::Streaming<CommitInfo>) -> Option<Result<CommitInfo, Status>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream said something within 10 s")
}

#[tokio::test]
async fn a_replica_gets_the_backlog_then_each_new_commit_and_acknowledges_its_cursor() {
    let mut hub = with_replica().await;
    for seed in 1..=3 {
        commit_one(&mut hub, seed).await;
    }
    let mut stream = hub
        .replication
        .follow(authed("alpha3", follow(1)))
        .await
        .unwrap()
        .into_inner();
    let backlog = [next(&mut stream).await, next(&mut stream).await];
    let seqs: Vec<u64> = backlog
        .into_iter()
        .map(|c| c.unwrap().unwrap().seq)
        .collect();
    assert_eq!(seqs, [2, 3], "the commits after the cursor, oldest first");
    // A commit appended now arrives on the open stream.
    assert_eq!(commit_one(&mut hub, 4).await, 4);
    let new = next(&mut stream).await.unwrap().unwrap();
    assert_eq!((new.seq, new.site.as_str()), (4, "site"));
    assert!(!new.manifest_digest.is_empty() && !new.mac.is_empty());

    // The cursor: moves forward only, never past the end.
    assert_eq!(cursor_of(&hub).await.seq, 0);
    let acked = hub.replication.ack(authed("alpha3", ack(3))).await.unwrap();
    assert_eq!(acked.into_inner().seq, 3);
    let acked = hub.replication.ack(authed("alpha3", ack(2))).await.unwrap();
    assert_eq!(acked.into_inner().seq, 3, "a cursor never moves back");
    let now = cursor_of(&hub).await;
    assert_eq!(now.seq, 3);
    assert!(now.applied_unix_ms > 1_700_000_000_000);
    let err = hub
        .replication
        .ack(authed("alpha3", ack(9)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // No longer a replica: the stream ends, and so do acknowledgements.
    let bucket = alpha_data(&hub);
    hub.catalog
        .write(|w| w.set_bucket_replicas(bucket.id, &[]))
        .unwrap();
    commit_one(&mut hub, 5).await;
    let ended = next(&mut stream).await.unwrap().unwrap_err();
    assert_eq!(ended.code(), tonic::Code::PermissionDenied, "{ended:?}");
    let err = hub
        .replication
        .ack(authed("alpha3", ack(4)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn only_a_replica_follows_acknowledges_or_reads_a_cursor() {
    let mut hub = with_replica().await;
    commit_one(&mut hub, 1).await;
    for token in ["alpha", "alpha2", "beta"] {
        let code = match token {
            "beta" => tonic::Code::NotFound, // another tenant's name says nothing
            _ => tonic::Code::PermissionDenied,
        };
        let err = hub
            .replication
            .follow(authed(token, follow(0)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err:?}");
        let err = hub
            .replication
            .ack(authed(token, ack(1)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err:?}");
        let err = hub
            .replication
            .cursor(authed(
                token,
                CursorRequest {
                    bucket: "alpha/data".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err:?}");
        let err = hub
            .replication
            .hold(authed(
                token,
                HoldRequest {
                    bucket: "alpha/data".into(),
                    seq: 1,
                    deletes: 1,
                    entries: 1,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err:?}");
        let err = hub
            .replication
            .report(authed(token, report(1, "x", None)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err:?}");
    }
}

fn report(seq: u64, error: &str, dead: Option<(&[&str], bool)>) -> ReportRequest {
    ReportRequest {
        bucket: "alpha/data".into(),
        seq,
        error: error.into(),
        dead: dead.map(|(paths, replayed)| DeadLetterList {
            letters: paths
                .iter()
                .map(|p| DeadLetter {
                    path: (*p).into(),
                    reason: "permission denied".into(),
                })
                .collect(),
            total: paths.len() as u64,
            replayed,
        }),
    }
}

async fn cursor_of(hub: &Hub) -> ferry_proto::v1::CursorResponse {
    hub.replication
        .clone()
        .cursor(authed(
            "alpha3",
            CursorRequest {
                bucket: "alpha/data".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn dead_letters_are_told_a_replay_ends_the_stream_and_a_pause_holds_commits_back() {
    let mut hub = with_replica().await;
    commit_one(&mut hub, 1).await;
    let bucket = alpha_data(&hub);
    // An error, then dead letters: the cursor tells them; status reads them.
    hub.replication
        .report(authed("alpha3", report(1, "disk full", None)))
        .await
        .unwrap();
    hub.replication
        .report(authed("alpha3", report(1, "", Some((&["a", "b"], false)))))
        .await
        .unwrap();
    let troubles = hub.catalog.read(|r| r.replica_troubles(bucket.id)).unwrap();
    assert_eq!(
        troubles[0].last_error.as_ref().unwrap().message,
        "disk full"
    );
    assert_eq!(troubles[0].dead.as_ref().unwrap().total, 2);
    assert_eq!(
        (
            cursor_of(&hub).await.dead_letters,
            cursor_of(&hub).await.replay
        ),
        (2, false)
    );

    // A replay asked for while the replica follows: its stream ends; the
    // stream it opens next (the replay) goes on.
    let mut stream = hub
        .replication
        .follow(authed("alpha3", follow(1)))
        .await
        .unwrap()
        .into_inner();
    let replica = bucket.replicas[0];
    hub.catalog
        .write(|w| w.request_replay(bucket.id, replica))
        .unwrap();
    assert!(next(&mut stream).await.is_none(), "ended, not failed");
    assert!(cursor_of(&hub).await.replay);
    let mut replaying = hub
        .replication
        .follow(authed("alpha3", follow(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut replaying).await.unwrap().unwrap().seq, 1);
    // The replay wrote everything: the dead letters and the request are gone.
    hub.replication
        .report(authed("alpha3", report(1, "", Some((&[], true)))))
        .await
        .unwrap();
    assert_eq!(
        (
            cursor_of(&hub).await.dead_letters,
            cursor_of(&hub).await.replay
        ),
        (0, false)
    );

    // Paused: a commit appended is not sent until the pause is lifted.
    hub.catalog
        .write(|w| w.set_replication_paused(bucket.id, true, 5_000))
        .unwrap();
    assert_eq!(cursor_of(&hub).await.paused_unix_ms, 5_000);
    commit_one(&mut hub, 2).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(3), replaying.next())
            .await
            .is_err(),
        "nothing sent while paused"
    );
    hub.catalog
        .write(|w| w.set_replication_paused(bucket.id, false, 6_000))
        .unwrap();
    assert_eq!(next(&mut replaying).await.unwrap().unwrap().seq, 2);
}

#[tokio::test]
async fn a_stopping_hub_ends_a_caught_up_stream_retryably() {
    let mut hub = with_replica().await;
    commit_one(&mut hub, 1).await;
    let mut stream = hub
        .replication
        .follow(authed("alpha3", follow(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().seq, 1);
    let state = hub.state.clone();
    let drained = tokio::spawn(async move { state.drain(Duration::from_secs(20)).await });
    let ended = next(&mut stream).await.unwrap().unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the drain did not wait on the follower")
        .unwrap();
}

#[tokio::test]
async fn a_failover_fences_the_old_source_even_in_a_session_it_opened_before() {
    let mut hub = with_replica().await;
    commit_one(&mut hub, 1).await;
    // The source opens a session and uploads; then the bucket fails over.
    let session = hub.open("alpha").await;
    hub.upload("alpha", session, &[(id(2), b"late")]).await;
    let bucket = alpha_data(&hub);
    let replica = bucket.replicas[0];
    hub.catalog
        .write(|w| w.set_bucket_source(bucket.id, replica))
        .unwrap();
    let err = hub
        .ingest
        .commit(authed(
            "alpha",
            CommitRequest {
                session_id: session,
                kind: "snapshot".into(),
                data_chunk_ids: id(2).0.to_vec().into(),
                seq: 2,
                mac: vec![2; 32],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("failed over"), "{err:?}");
    assert_eq!(hub.list_bucket("alpha3", "alpha/data").await.len(), 1);

    // The new source reads the old source's data and commits its own.
    let old = hub.fetch_one("alpha3", "alpha/data", id(1)).await;
    assert_eq!(old.data.as_ref(), b"data");
    let mine = hub.open_bucket("alpha3", "alpha/data").await;
    hub.upload("alpha3", mine, &[(id(3), b"new source")]).await;
    assert_eq!(
        hub.commit_to("alpha3", "alpha/data", mine, &[id(3)], Vec::new())
            .await
            .unwrap(),
        2
    );
    // And the old source may no longer open a session.
    let err = hub
        .ingest
        .open_session(authed(
            "alpha",
            OpenSessionRequest {
                bucket: "alpha/data".into(),
                header: b"age-encryption.org/v1\n".to_vec(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}
