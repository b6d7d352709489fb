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
    assert_eq!(hub.commit("alpha", sa, &[x, y]).await.unwrap(), 1);

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
    assert_eq!(hub.commit("beta", sb, &[x]).await.unwrap(), 1);
    assert_eq!(hub.fetch("beta", &[x]).await.unwrap(), [b"beta x".to_vec()]);
    assert_eq!(
        hub.fetch("alpha", &[x, y]).await.unwrap(),
        [b"alpha x".to_vec(), b"alpha y".to_vec()]
    );
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
    assert_eq!(hub.commit("alpha", sa, &[w]).await.unwrap(), 1);
    assert_eq!(hub.commit("beta", sb, &[w]).await.unwrap(), 1);
    assert_eq!(
        hub.fetch("alpha", &[w]).await.unwrap(),
        [b"the real data".to_vec()]
    );
    assert_eq!(hub.fetch("beta", &[w]).await.unwrap(), [b"poison".to_vec()]);
    // Within a tenant dedup still works.
    let sa = hub.open("alpha").await;
    let ack = hub.upload("alpha", sa, &[(w, b"the real data")]).await;
    assert_eq!((ack.stored, ack.already_present), (0, 1));
}

/// Asserts FetchBlobs refuses `id` through `bucket` as unreferenced.
async fn unreferenced(hub: &mut Hub, bucket: &str, id: BlobId) {
    let err = hub.try_fetch("alpha", bucket, &[id]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let expected = format!("blob {id} is not referenced by bucket {bucket}");
    assert!(err.message().contains(&expected), "{err}");
}

/// Uploads four blobs to alpha/data and commits three, each referenced its
/// own way: as the manifest, in a checked part, inline. Returns the three
/// and the fourth, checking on the way that what is stored is unreadable
/// until referenced.
async fn commit_three_ways(hub: &mut Hub) -> ([BlobId; 3], BlobId) {
    let data = hub.open("alpha").await;
    let (m, p, x, y) = (id(40), id(41), id(42), id(43));
    let blobs = [
        (m, &b"manifest"[..]),
        (p, b"in a part"),
        (x, b"inline"),
        (y, b"photo"),
    ];
    hub.upload("alpha", data, &blobs).await;
    unreferenced(hub, "alpha/data", x).await;
    // A checked part counts from its check on.
    let part = hub
        .ingest
        .check_references(authed(
            "alpha",
            CheckReferencesRequest {
                session_id: data,
                data_chunk_ids: p.0.to_vec().into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .part;
    assert_eq!(
        hub.fetch("alpha", &[p]).await.unwrap(),
        [b"in a part".to_vec()]
    );
    let commit = CommitRequest {
        session_id: data,
        kind: "snapshot".to_owned(),
        manifest: vec![m.0.to_vec()],
        body: Vec::new(),
        files: 1,
        bytes: 1,
        data_chunk_ids: x.0.to_vec().into(),
        reference_parts: vec![part],
        seq: 1,
        mac: vec![1; 32],
    };
    hub.ingest.commit(authed("alpha", commit)).await.unwrap();
    ([m, p, x], y)
}

/// A site reads through a bucket only what the bucket's commits reference
/// (manifest, checked parts, inline references) and session headers:
/// nothing else it stored, even for another bucket of its own, even by id.
#[tokio::test]
async fn reads_are_limited_to_what_the_bucket_references() {
    let mut hub = hub().await;
    let ([m, p, x], y) = commit_three_ways(&mut hub).await;
    assert_eq!(
        hub.fetch("alpha", &[m, p, x]).await.unwrap(),
        [
            b"manifest".to_vec(),
            b"in a part".to_vec(),
            b"inline".to_vec()
        ]
    );
    // y is the site's own copy, but only its photos bucket references it.
    unreferenced(&mut hub, "alpha/data", y).await;
    let photos = hub.open_bucket("alpha", "alpha/photos").await;
    assert!(hub.find_missing("alpha", photos, &[y]).await.is_empty());
    let committed = hub
        .commit_to("alpha", "alpha/photos", photos, &[y], Vec::new())
        .await;
    assert_eq!(committed.unwrap(), 1);
    assert_eq!(
        hub.fetch_one("alpha", "alpha/photos", y).await.data,
        &b"photo"[..]
    );
    unreferenced(&mut hub, "alpha/data", y).await;
    unreferenced(&mut hub, "alpha/photos", x).await;
    // The session header every blob names is served through either bucket.
    let named = hub.fetch_one("alpha", "alpha/data", m).await.header_id;
    let header = BlobId::from_slice("header", &named).unwrap();
    for bucket in ["alpha/data", "alpha/photos"] {
        let blob = hub.fetch_one("alpha", bucket, header).await;
        assert_eq!(blob.kind, BlobKind::SessionHeader as u32);
    }
}

/// A catalog upgraded from before the reference index knows its buckets'
/// commits but not what they reference: their reads stay unlimited until
/// the backfill has read the references back from the segments (manifest,
/// parts and inline), and are limited again after.
#[tokio::test]
async fn an_upgraded_catalogs_references_are_read_back_from_the_segments() {
    let mut hub = hub().await;
    let (referenced, y) = commit_three_ways(&mut hub).await;
    // As the migration leaves an old catalog.
    let conn = rusqlite::Connection::open(hub._dir.path().join("catalog.db")).unwrap();
    conn.execute_batch(
        "DELETE FROM bucket_references; DELETE FROM bucket_reference_parts;
         INSERT INTO reference_backfill SELECT DISTINCT bucket_id FROM commits;",
    )
    .unwrap();
    drop(conn);
    assert_eq!(hub.fetch("alpha", &[y]).await.unwrap(), [b"photo".to_vec()]);
    let pools = Pools::one("local", hub.pool.clone());
    let done = crate::recover::backfill_references(hub.catalog.clone(), &pools)
        .await
        .unwrap();
    assert_eq!((done.indexed, done.left.len()), (1, 0));
    assert!(
        hub.catalog
            .read(|r| r.unindexed_buckets())
            .unwrap()
            .is_empty()
    );
    assert_eq!(hub.fetch("alpha", &referenced).await.unwrap().len(), 3);
    unreferenced(&mut hub, "alpha/data", y).await;
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
