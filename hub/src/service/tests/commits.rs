//! Commits: references checked in parts, torn and oversized requests
//! refused, claimed sequence numbers and MACs.

use super::*;

#[tokio::test]
async fn references_are_checked_in_parts_before_the_commit() {
    let mut hub = hub().await;
    let session = hub.open("alpha").await;
    let (x, y) = (id(1), id(2));
    hub.upload("alpha", session, &[(x, b"x"), (y, b"y")]).await;
    let check = |ids: Vec<u8>| {
        let mut ingest = hub.ingest.clone();
        async move {
            ingest
                .check_references(authed(
                    "alpha",
                    CheckReferencesRequest {
                        session_id: session,
                        data_chunk_ids: ids.into(),
                    },
                ))
                .await
        }
    };
    let part = check([x.0, y.0].concat()).await.unwrap().into_inner().part;
    // Not stored (or another tenant's): refused as a commit would be.
    let refused = check([x.0, id(7).0].concat()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains(MISSING_CHUNKS), "{refused:?}");
    let torn = check(vec![1; 33]).await.unwrap_err();
    assert_eq!(torn.code(), tonic::Code::InvalidArgument);
    assert!(
        torn.message()
            .contains("CheckReferencesRequest.data_chunk_ids"),
        "{torn:?}"
    );
    // A site checks only within its own sessions.
    let err = hub
        .ingest
        .check_references(authed(
            "beta",
            CheckReferencesRequest {
                session_id: session,
                data_chunk_ids: x.0.to_vec().into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    // A commit cannot list a part the hub never stored.
    let unknown = hub
        .commit_with_parts("alpha", session, &[y], vec![vec![0; 32]])
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::FailedPrecondition);
    assert!(unknown.message().contains("reference_parts"), "{unknown:?}");
    // The commit then lists the checked part and the last one inline, and
    // its segment in the pool says so.
    assert_eq!(
        hub.commit_with_parts("alpha", session, &[y], vec![part.clone()])
            .await
            .unwrap(),
        1
    );
    let names = hub.pool.list("journal/alpha/data/").await.unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    let segment = crate::records::Segment::decode(&hub.pool.get(&names[0]).await.unwrap()).unwrap();
    assert_eq!(
        (segment.seq, segment.site.as_str(), segment.body.as_slice()),
        (1, "site", b"body".as_slice())
    );
    assert_eq!(segment.references, [y]);
    assert_eq!(
        segment.reference_parts,
        [<[u8; 32]>::try_from(part).unwrap()]
    );
    let part_bytes = hub
        .pool
        .get(&crate::records::refs::object_name(
            "alpha",
            &segment.reference_parts[0],
        ))
        .await
        .unwrap();
    assert_eq!(
        crate::records::refs::decode(&segment.reference_parts[0], &part_bytes).unwrap(),
        [x, y]
    );
}

#[tokio::test]
async fn a_commit_with_a_torn_id_list_is_refused_and_journals_nothing() {
    let mut hub = hub().await;
    let session = hub.open("alpha").await;
    let stored = id(3);
    hub.upload("alpha", session, &[(stored, b"data")]).await;
    let mut torn: Vec<u8> = stored.0.to_vec();
    torn.push(0);
    let refused = hub
        .ingest
        .commit(authed(
            "alpha",
            CommitRequest {
                session_id: session,
                kind: "snapshot".to_owned(),
                data_chunk_ids: torn.into(),
                seq: 1,
                mac: vec![1; 32],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("data_chunk_ids"),
        "{}",
        refused.message()
    );
    // The same session then commits properly, as sequence 1.
    assert_eq!(hub.commit("alpha", session, &[stored]).await.unwrap(), 1);
}

/// A commit body past its bound is refused and journals nothing: every
/// listing of the bucket would carry it.
#[tokio::test]
async fn an_oversized_commit_body_is_refused() {
    let mut hub = hub().await;
    let session = hub.open("alpha").await;
    let request = |body_len: usize| CommitRequest {
        session_id: session,
        kind: "snapshot".to_owned(),
        manifest: Vec::new(),
        body: vec![0; body_len],
        files: 0,
        bytes: 0,
        data_chunk_ids: bytes::Bytes::new(),
        reference_parts: Vec::new(),
        seq: 1,
        mac: vec![1; 32],
    };
    let err = hub
        .ingest
        .commit(authed("alpha", request(MAX_COMMIT_BODY_BYTES + 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("CommitRequest.body"), "{err}");
    let seq = hub
        .ingest
        .commit(authed("alpha", request(MAX_COMMIT_BODY_BYTES)))
        .await
        .unwrap()
        .into_inner()
        .seq;
    assert_eq!(seq, 1, "the refused commit took no sequence number");
}

/// A session opens on the bucket's head; a commit goes at the number it
/// claims or is refused, and needs a MAC (which the hub keeps, unable to
/// check it); listings carry MACs and manifest digests, and page by size.
#[tokio::test]
async fn commits_claim_their_number_and_carry_a_mac() {
    let mut hub = hub().await;
    let open = |hub: &mut Hub| {
        let mut ingest = hub.ingest.clone();
        async move {
            ingest
                .open_session(authed(
                    "alpha",
                    OpenSessionRequest {
                        bucket: "alpha/data".to_owned(),
                        header: b"age-encryption.org/v1\nh\n".to_vec(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let opened = open(&mut hub).await;
    assert_eq!((opened.head_seq, opened.head_mac.len()), (0, 0));
    let commit = |session: u64, seq: u64, mac: Vec<u8>, body: Vec<u8>| CommitRequest {
        session_id: session,
        kind: "snapshot".to_owned(),
        manifest: vec![],
        body,
        seq,
        mac,
        ..Default::default()
    };
    let refused = |r: Result<tonic::Response<_>, Status>| r.unwrap_err();
    let err = refused(
        hub.ingest
            .commit(authed(
                "alpha",
                commit(opened.session_id, 1, vec![], vec![]),
            ))
            .await,
    );
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("CommitRequest.mac"), "{err}");
    let err = refused(
        hub.ingest
            .commit(authed(
                "alpha",
                commit(opened.session_id, 2, vec![7; 32], vec![]),
            ))
            .await,
    );
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(hub.list("alpha").await.is_empty());

    // Commits with bodies big enough that a page holds only some of them.
    let body = vec![0x55; MAX_COMMIT_BODY_BYTES];
    for seq in 1..=20u64 {
        let opened = open(&mut hub).await;
        assert_eq!(opened.head_seq, seq - 1);
        if seq > 1 {
            assert_eq!(opened.head_mac, vec![seq as u8 - 1; 32]);
        }
        let done = hub
            .ingest
            .commit(authed(
                "alpha",
                commit(opened.session_id, seq, vec![seq as u8; 32], body.clone()),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(done.seq, seq);
    }
    let first = hub
        .journal
        .list_commits(authed(
            "alpha",
            ListCommitsRequest {
                bucket: "alpha/data".to_owned(),
                omit_manifests: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        first.more,
        "20 commits of 64 KiB bodies fill more than a page"
    );
    assert!(
        (1..20).contains(&first.commits.len()),
        "{}",
        first.commits.len()
    );
    let all = hub.list("alpha").await;
    let seqs: Vec<u64> = all.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    for c in &all {
        assert_eq!(c.mac, vec![c.seq as u8; 32]);
        assert_eq!(
            c.manifest_digest,
            ferry_proto::chain::manifest_digest(&[]).to_vec()
        );
    }
}
