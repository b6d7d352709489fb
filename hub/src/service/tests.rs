//! Tenant isolation of the blob RPCs, through a real gRPC server on a
//! loopback port.

use super::ingest::{OWN_BUFFER_BELOW, own_small_blobs};
use super::*;
use crate::blobstore::{BlobStore, LocalDirStore};
use crate::catalog::{CatalogExt, SqliteCatalog};
use crate::packer::PackerConfig;
use ferry_proto::BlobKind;
use ferry_proto::auth::{AUTHORIZATION, token_hash};
use ferry_proto::v1::Blob;
use ferry_proto::v1::ingest_client::IngestClient;
use ferry_proto::v1::journal_client::JournalClient;
use ferry_proto::v1::{
    BlobBatch, BlobBatchAck, CheckReferencesRequest, CommitInfo, CommitRequest, FetchBlobsRequest,
    FetchedBlob, FindMissingRequest, ListCommitsRequest, OpenSessionRequest, ReportBadBlobsRequest,
    ReportVerifiedBlobsRequest,
};
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::transport::Channel;

/// Small blobs leave the frame (one new buffer for all of them) with
/// their bytes unchanged; a large one stays a slice of the frame.
#[test]
fn small_blobs_leave_the_frame_and_keep_their_bytes() {
    let sizes = [10, OWN_BUFFER_BELOW, 0, 3000];
    let frame: bytes::Bytes = (0..sizes.iter().sum::<usize>())
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut at = 0;
    let mut blobs: Vec<PackBlob> = (0u8..)
        .zip(sizes)
        .map(|(n, len)| {
            let data = frame.slice(at..at + len);
            at += len;
            PackBlob {
                id: BlobId([n; 32]),
                kind: BlobKind::Data,
                flags: 0,
                header_id: BlobId([9; 32]),
                data,
            }
        })
        .collect();
    let before: Vec<Vec<u8>> = blobs.iter().map(|b| b.data.to_vec()).collect();
    own_small_blobs(&mut blobs);
    let after: Vec<Vec<u8>> = blobs.iter().map(|b| b.data.to_vec()).collect();
    assert_eq!(after, before);
    let in_frame = |b: &PackBlob| {
        let (start, p) = (frame.as_ptr() as usize, b.data.as_ptr() as usize);
        (start..start + frame.len()).contains(&p)
    };
    assert!(in_frame(&blobs[1]), "the large blob was copied");
    assert!(
        !in_frame(&blobs[0]) && !in_frame(&blobs[3]),
        "a small blob still pins the frame"
    );
    // The small ones share one buffer, back to back.
    let (first, last) = (
        blobs[0].data.as_ptr() as usize,
        blobs[3].data.as_ptr() as usize,
    );
    assert_eq!(last, first + sizes[0]);
}

struct Hub {
    _dir: tempfile::TempDir,
    catalog: Arc<dyn Catalog>,
    pool: Arc<dyn BlobStore>,
    ingest: IngestClient<Channel>,
    journal: JournalClient<Channel>,
}

/// A hub with tenants "alpha" and "beta", each with one site (token
/// `<tenant>-token`) and a bucket "data" it is the source of; alpha has a
/// second site (token `alpha2-token`), the source of "alpha/data2".
async fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> =
        Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
    for tenant in ["alpha", "beta"] {
        let t = catalog.write(|w| w.create_tenant(tenant)).unwrap();
        let site = catalog
            .write(|w| w.create_site(t, "site", &token_hash(&format!("{tenant}-token"))))
            .unwrap();
        catalog.write(|w| w.create_bucket(t, "data", site)).unwrap();
        if tenant == "alpha" {
            let second = catalog
                .write(|w| w.create_site(t, "second", &token_hash("alpha2-token")))
                .unwrap();
            catalog
                .write(|w| w.create_bucket(t, "data2", second))
                .unwrap();
        }
    }
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::open(dir.path().join("pool")).unwrap());
    let packer = Packer::start(
        store.clone(),
        catalog.clone(),
        "local".to_owned(),
        PackerConfig::default(),
    );
    let state = HubState::new(
        catalog.clone(),
        Arc::new(Pools::one("local", store.clone())),
        packer,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = crate::listener::Limits {
        max_connections: 16,
        max_per_address: 16,
        handshake_timeout: std::time::Duration::from_secs(5),
        auth_timeout: std::time::Duration::from_secs(30),
    };
    tokio::spawn(
        router(state, 64).serve_with_incoming(crate::listener::incoming(listener, None, limits)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Hub {
        _dir: dir,
        catalog,
        pool: store,
        ingest: IngestClient::new(channel.clone()),
        journal: JournalClient::new(channel),
    }
}

fn authed<T>(tenant: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        AUTHORIZATION,
        format!("Bearer {tenant}-token").parse().unwrap(),
    );
    request
}

fn id(seed: u8) -> BlobId {
    BlobId([seed; 32])
}

impl Hub {
    async fn open(&mut self, tenant: &str) -> u64 {
        self.open_bucket(tenant, &format!("{tenant}/data")).await
    }

    /// A session of `bucket`, as the site with `<token>-token`.
    async fn open_bucket(&mut self, token: &str, bucket: &str) -> u64 {
        let header = format!("age-encryption.org/v1\n{token} header\n").into_bytes();
        self.ingest
            .open_session(authed(
                token,
                OpenSessionRequest {
                    bucket: bucket.to_owned(),
                    header,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .session_id
    }

    /// Every commit of the tenant's bucket, manifests included.
    async fn list(&mut self, tenant: &str) -> Vec<CommitInfo> {
        let mut all: Vec<CommitInfo> = Vec::new();
        loop {
            let page = self
                .journal
                .list_commits(authed(
                    tenant,
                    ListCommitsRequest {
                        bucket: format!("{tenant}/data"),
                        after_seq: all.last().map_or(0, |c| c.seq),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.commits);
            if !page.more {
                return all;
            }
        }
    }

    async fn find_missing(&mut self, tenant: &str, session: u64, ids: &[BlobId]) -> Vec<u32> {
        self.ingest
            .find_missing(authed(
                tenant,
                FindMissingRequest {
                    session_id: session,
                    ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .missing
    }

    async fn upload(
        &mut self,
        tenant: &str,
        session: u64,
        blobs: &[(BlobId, &[u8])],
    ) -> BlobBatchAck {
        let batch = BlobBatch {
            session_id: session,
            batch: 1,
            blobs: blobs
                .iter()
                .map(|(id, data)| Blob {
                    id: id.0.to_vec(),
                    kind: BlobKind::Data as u32,
                    flags: 0,
                    data: data.to_vec().into(),
                })
                .collect(),
        };
        let mut acks = self
            .ingest
            .upload_blobs(authed(tenant, tokio_stream::iter(vec![batch])))
            .await
            .unwrap()
            .into_inner();
        let ack = acks.next().await.unwrap().unwrap();
        assert!(acks.next().await.is_none());
        ack
    }

    /// The data of each id, or the status of the first failure.
    async fn fetch(&mut self, tenant: &str, ids: &[BlobId]) -> Result<Vec<Vec<u8>>, Status> {
        let mut stream = self
            .journal
            .fetch_blobs(authed(
                tenant,
                FetchBlobsRequest {
                    bucket: format!("{tenant}/data"),
                    ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                },
            ))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(blob) = stream.next().await {
            out.push(blob?.data.to_vec());
        }
        Ok(out)
    }

    /// Blob `id` as FetchBlobs serves it for `bucket` to the site with
    /// `<token>-token`.
    async fn fetch_one(&mut self, token: &str, bucket: &str, id: BlobId) -> FetchedBlob {
        let mut stream = self
            .journal
            .fetch_blobs(authed(
                token,
                FetchBlobsRequest {
                    bucket: bucket.to_owned(),
                    ids: vec![id.0.to_vec()],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        stream.next().await.unwrap().unwrap()
    }

    async fn commit(
        &mut self,
        tenant: &str,
        session: u64,
        chunks: &[BlobId],
    ) -> Result<u64, Status> {
        self.commit_with_parts(tenant, session, chunks, Vec::new())
            .await
    }

    async fn commit_with_parts(
        &mut self,
        tenant: &str,
        session: u64,
        chunks: &[BlobId],
        reference_parts: Vec<Vec<u8>>,
    ) -> Result<u64, Status> {
        let seq = self.list(tenant).await.len() as u64 + 1;
        self.ingest
            .commit(authed(
                tenant,
                CommitRequest {
                    session_id: session,
                    kind: "snapshot".to_owned(),
                    manifest: Vec::new(),
                    body: b"body".to_vec(),
                    files: 1,
                    bytes: 1,
                    data_chunk_ids: chunks.iter().flat_map(|i| i.0).collect(),
                    reference_parts,
                    seq,
                    mac: vec![seq as u8; 32],
                },
            ))
            .await
            .map(|r| r.into_inner().seq)
    }
}

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

/// A reported bad blob is missing for its site from then on, and uploaded
/// again on request; a report for another tenant's bucket is refused, and
/// a torn id list names its field.
#[tokio::test]
async fn reported_bad_blobs_are_missing_until_uploaded_again() {
    let mut hub = hub().await;
    let session = hub.open("alpha").await;
    let x = id(7);
    hub.upload("alpha", session, &[(x, b"alpha x")]).await;
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());
    let report = |bucket: &str, ids: Vec<u8>| ReportBadBlobsRequest {
        bucket: bucket.to_owned(),
        ids,
    };
    let err = hub
        .journal
        .report_bad_blobs(authed("beta", report("alpha/data", x.0.to_vec())))
        .await
        .unwrap_err();
    // Another tenant's bucket is not even said to exist.
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err = hub
        .journal
        .report_bad_blobs(authed("alpha", report("alpha/data", vec![7; 33])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("ReportBadBlobsRequest.ids"), "{err}");
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());

    // Reported twice in one call, the copy is marked once.
    let twice = [x.0, x.0].concat();
    let marked = hub
        .journal
        .report_bad_blobs(authed("alpha", report("alpha/data", twice)))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 1);
    assert_eq!(hub.find_missing("alpha", session, &[x]).await, [0]);
    let ack = hub.upload("alpha", session, &[(x, b"alpha x")]).await;
    assert_eq!(ack.stored, 1, "the bad copy is replaced");
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());
}

/// RFC 8032's first Ed25519 test key, as the tenant's verifier.
fn verifier() -> ed25519_dalek::SigningKey {
    let secret: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    ed25519_dalek::SigningKey::from_bytes(&secret)
}

#[tokio::test]
async fn signed_reports_make_copies_count_for_every_site() {
    use ed25519_dalek::Signer;
    use ferry_proto::verified::{self, Copy};
    let mut hub = hub().await;
    let first = hub.open("alpha").await;
    let second = hub.open_bucket("alpha2", "alpha/data2").await;
    let x = id(7);
    hub.upload("alpha", first, &[(x, b"alpha x")]).await;
    // The first site's copy is not the second's to dedup against.
    assert_eq!(hub.find_missing("alpha2", second, &[x]).await, [0]);
    let fetched = hub.fetch_one("alpha", "alpha/data", x).await;
    assert!(!fetched.verified);
    let copies = verified::encode_copies(&[
        Copy {
            id: x,
            site: fetched.copy_site,
        },
        // Another site's copy is not this bucket's to vouch for: ignored.
        Copy {
            id: id(8),
            site: fetched.copy_site + 1,
        },
    ]);
    let report = |copies: &[u8], signature: Vec<u8>| ReportVerifiedBlobsRequest {
        bucket: "alpha/data".into(),
        copies: copies.to_vec(),
        signature,
    };
    let signed = verifier()
        .sign(&verified::claim("alpha", &copies))
        .to_bytes()
        .to_vec();
    // No key registered: refused, nothing marked.
    let err = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies, signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    let tenant = hub
        .catalog
        .read(|r| r.tenant_by_name("alpha"))
        .unwrap()
        .unwrap();
    let public = verifier().verifying_key().to_bytes();
    hub.catalog
        .write(|w| w.set_tenant_verifier(tenant.id, Some(&public)))
        .unwrap();
    // Signed by another key, or for another tenant: refused.
    let forged = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
        .sign(&verified::claim("alpha", &copies))
        .to_bytes()
        .to_vec();
    let other_tenant = verifier()
        .sign(&verified::claim("beta", &copies))
        .to_bytes()
        .to_vec();
    for signature in [forged, other_tenant, vec![1; 63]] {
        let err = hub
            .journal
            .report_verified_blobs(authed("alpha", report(&copies, signature)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument
            ),
            "{err}"
        );
        assert!(err.message().contains("signature"), "{err}");
    }
    let err = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies[1..], signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // Another tenant's site may not report on this bucket at all.
    let err = hub
        .journal
        .report_verified_blobs(authed("beta", report(&copies, signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert_eq!(hub.find_missing("alpha2", second, &[x]).await, [0]);

    let marked = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies, signed)))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 1);
    // Now the second site dedups against it, and reads it for its bucket.
    assert!(hub.find_missing("alpha2", second, &[x]).await.is_empty());
    let blob = hub.fetch_one("alpha2", "alpha/data2", x).await;
    assert_eq!((&blob.data[..], blob.verified), (&b"alpha x"[..], true));
    // The other tenant still sees nothing.
    let beta = hub.open("beta").await;
    assert_eq!(hub.find_missing("beta", beta, &[x]).await, [0]);
}
