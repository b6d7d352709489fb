//! The services through a real gRPC server on a loopback port: the fixture
//! here, the tests by area in the modules below.

mod commits;
mod isolation;
mod placement;
mod policy;
mod replication;
mod reports;

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
use ferry_proto::v1::replication_client::ReplicationClient;
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
    replication: ReplicationClient<Channel>,
    policy: ferry_proto::v1::policy_client::PolicyClient<Channel>,
    state: Arc<HubState>,
}

/// A hub with tenants "alpha" and "beta", each with one site (token
/// `<tenant>-token`) and a bucket "data" it is the source of; alpha's site
/// is the source of "alpha/photos" too, and alpha has a second site (token
/// `alpha2-token`), the source of "alpha/data2".
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
            catalog
                .write(|w| w.create_bucket(t, "photos", site))
                .unwrap();
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
        router(state.clone(), 64)
            .serve_with_incoming(crate::listener::incoming(listener, None, limits)),
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
        journal: JournalClient::new(channel.clone()),
        policy: ferry_proto::v1::policy_client::PolicyClient::new(channel.clone()),
        replication: ReplicationClient::new(channel),
        state,
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
        self.list_bucket(tenant, &format!("{tenant}/data")).await
    }

    /// Every commit of `bucket`, as the site with `<token>-token` lists it.
    async fn list_bucket(&mut self, token: &str, bucket: &str) -> Vec<CommitInfo> {
        let mut all: Vec<CommitInfo> = Vec::new();
        loop {
            let page = self
                .journal
                .list_commits(authed(
                    token,
                    ListCommitsRequest {
                        bucket: bucket.to_owned(),
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
        let bucket = format!("{tenant}/data");
        let blobs = self.try_fetch(tenant, &bucket, ids).await?;
        Ok(blobs.into_iter().map(|b| b.data.to_vec()).collect())
    }

    /// Blobs `ids` as FetchBlobs serves them for `bucket` to the site with
    /// `<token>-token`: the first error if any.
    async fn try_fetch(
        &mut self,
        token: &str,
        bucket: &str,
        ids: &[BlobId],
    ) -> Result<Vec<FetchedBlob>, Status> {
        let mut stream = self
            .journal
            .fetch_blobs(authed(
                token,
                FetchBlobsRequest {
                    bucket: bucket.to_owned(),
                    ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                },
            ))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(blob) = stream.next().await {
            out.push(blob?);
        }
        Ok(out)
    }

    /// Blob `id` as FetchBlobs serves it for `bucket` to the site with
    /// `<token>-token`.
    async fn fetch_one(&mut self, token: &str, bucket: &str, id: BlobId) -> FetchedBlob {
        let mut blobs = self.try_fetch(token, bucket, &[id]).await.unwrap();
        assert_eq!(blobs.len(), 1);
        blobs.remove(0)
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
        let bucket = format!("{tenant}/data");
        self.commit_to(tenant, &bucket, session, chunks, reference_parts)
            .await
    }

    /// Commits `session` (of `bucket`) as the site with `<token>-token`.
    async fn commit_to(
        &mut self,
        token: &str,
        bucket: &str,
        session: u64,
        chunks: &[BlobId],
        reference_parts: Vec<Vec<u8>>,
    ) -> Result<u64, Status> {
        let seq = self.list_bucket(token, bucket).await.len() as u64 + 1;
        self.ingest
            .commit(authed(
                token,
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
