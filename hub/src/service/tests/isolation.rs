//! Tenants and the gate: no tenant sees, fetches, references or poisons
//! another's blobs, and the gate refuses before a body is read.

use super::*;

#[tokio::test]
async fn another_tenant_cannot_see_fetch_or_reference_blobs() {
    let mut hub = hub().await;
    let sa = hub.open("alpha").await;
    let (x, y) = (id(1), id(2));
    let ack = hub
        .upload("alpha", sa, &[(x, b"alpha x"), (y, b"alpha y")])
        .await;
    assert_eq!((ack.stored, ack.already_present), (2, 0));
    assert!(hub.find_missing("alpha", sa, &[x, y]).await.is_empty());

    let sb = hub.open("beta").await;
    // (a) FindMissing does not reveal that alpha holds x and y.
    assert_eq!(
        hub.find_missing("beta", sb, &[x, id(3), y]).await,
        [0, 1, 2]
    );
    // (b) nor does FetchBlobs hand them out.
    let err = hub.fetch("beta", &[x]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // A commit cannot reference them either.
    let err = hub.commit("beta", sb, &[x]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(MISSING_CHUNKS), "{err:?}");

    // Beta uploading the same id stores beta's own copy.
    let ack = hub.upload("beta", sb, &[(x, b"beta x")]).await;
    assert_eq!((ack.stored, ack.already_present), (1, 0));
    assert_eq!(hub.fetch("beta", &[x]).await.unwrap(), [b"beta x".to_vec()]);
    assert_eq!(
        hub.fetch("alpha", &[x, y]).await.unwrap(),
        [b"alpha x".to_vec(), b"alpha y".to_vec()]
    );
    assert_eq!(hub.commit("beta", sb, &[x]).await.unwrap(), 1);
    assert_eq!(hub.commit("alpha", sa, &[x, y]).await.unwrap(), 1);
}

#[tokio::test]
async fn another_tenant_cannot_poison_dedup() {
    let mut hub = hub().await;
    let (sa, sb) = (hub.open("alpha").await, hub.open("beta").await);
    let w = id(9);
    // (c) beta uploads under an id alpha will use later...
    let ack = hub.upload("beta", sb, &[(w, b"poison")]).await;
    assert_eq!((ack.stored, ack.already_present), (1, 0));
    // ...but for alpha the id is still missing, and alpha's upload of it
    // is stored, not deduplicated against beta's.
    assert_eq!(hub.find_missing("alpha", sa, &[w]).await, [0]);
    let ack = hub.upload("alpha", sa, &[(w, b"the real data")]).await;
    assert_eq!((ack.stored, ack.already_present), (1, 0));
    assert_eq!(
        hub.fetch("alpha", &[w]).await.unwrap(),
        [b"the real data".to_vec()]
    );
    assert_eq!(hub.fetch("beta", &[w]).await.unwrap(), [b"poison".to_vec()]);
    // Within a tenant dedup still works.
    let ack = hub.upload("alpha", sa, &[(w, b"the real data")]).await;
    assert_eq!((ack.stored, ack.already_present), (0, 1));
}

/// The gate answers before a body is read: no token, UNAUTHENTICATED; a
/// request larger than its RPC can need, RESOURCE_EXHAUSTED naming it.
#[tokio::test]
async fn the_gate_refuses_unauthenticated_and_oversized_requests() {
    let mut hub = hub().await;
    let ids = vec![vec![7u8; 32]; 100];
    let anonymous = hub
        .ingest
        .find_missing(FindMissingRequest { session_id: 1, ids })
        .await
        .unwrap_err();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous}"
    );
    let wrong = {
        let mut r = Request::new(FindMissingRequest::default());
        r.metadata_mut()
            .insert(AUTHORIZATION, "Bearer nobody".parse().unwrap());
        hub.ingest.find_missing(r).await.unwrap_err()
    };
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong}");

    let session = hub.open("alpha").await;
    // 40,000 ids (1.3 MiB): past FindMissing's 1 MiB, far below the
    // codec's 64 MiB message limit.
    let big = FindMissingRequest {
        session_id: session,
        ids: vec![vec![7u8; 32]; 40_000],
    };
    let err = hub
        .ingest
        .find_missing(authed("alpha", big))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("FindMissing"), "{err}");
    // The connection is still good for a call of the right size.
    assert!(hub.find_missing("alpha", session, &[id(1)]).await == [0]);
}
