//! An in-process hub whose handlers are called directly, as the gate calls
//! them once a request has authenticated: the fuzz target `hub_handlers`
//! drives every unary handler past decoding with it. It builds its own hub
//! (SQLite catalog and a local pool under the directory it is given) with
//! one tenant, site, bucket and open session; it is no way into a serving
//! hub, which only the gate enters.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1::ingest_server::Ingest;
use ferry_proto::v1::journal_server::Journal;
use ferry_proto::v1::{
    CheckReferencesRequest, CommitRequest, FetchBlobsRequest, FindMissingRequest,
    ListCommitsRequest, OpenSessionRequest, ReportBadBlobsRequest, ReportVerifiedBlobsRequest,
};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Request;

use super::ingest::IngestService;
use super::journal::JournalService;
use super::{HubState, Principal};
use crate::blobstore::{BlobStore, LocalDirStore, Pools};
use crate::catalog::{Catalog, CatalogExt, SqliteCatalog};
use crate::packer::{Packer, PackerConfig};

/// The bucket the harness's site is the source of.
pub const BUCKET: &str = "fuzz/data";

/// The tenant's verifier key, so reports reach the signature check: the
/// public key of RFC 8032's first Ed25519 test vector.
pub const VERIFIER: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// A hub and the principal its calls come from.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    ingest: IngestService,
    journal: JournalService,
    principal: Principal,
}

impl Harness {
    /// A hub under `dir` (which must be empty), with its session 1 open.
    ///
    /// # Errors
    ///
    /// What fails in setting it up, as text.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let catalog: Arc<dyn Catalog> =
            Arc::new(SqliteCatalog::open(dir.join("catalog.db")).map_err(|e| e.to_string())?);
        let site = catalog
            .write(|w| {
                let tenant = w.create_tenant("fuzz")?;
                w.set_tenant_verifier(tenant, Some(&VERIFIER))?;
                let site = w.create_site(tenant, "site-a", &[1; 32])?;
                w.create_bucket(tenant, "data", site)?;
                Ok(site)
            })
            .map_err(|e| e.to_string())?;
        let site = catalog
            .read(|r| r.site(site))
            .map_err(|e| e.to_string())?
            .ok_or("the site just made is gone")?;
        let store: Arc<dyn BlobStore> =
            Arc::new(LocalDirStore::open(dir.join("pool")).map_err(|e| e.to_string())?);
        let pools =
            Arc::new(Pools::new(vec![("local".to_owned(), store.clone())]).ok_or("no pool")?);
        let state: Arc<HubState> = {
            let _entered = runtime.enter();
            let packer = Packer::start(
                store,
                catalog.clone(),
                "local".to_owned(),
                PackerConfig::default(),
            );
            HubState::new(catalog, pools, packer)
        };
        let harness = Self {
            runtime,
            ingest: IngestService(state.clone()),
            journal: JournalService(state),
            principal: Principal {
                site,
                tenant_name: "fuzz".to_owned(),
            },
        };
        let header = b"age-encryption.org/v1\n-> X25519 fuzz\n--- header\n".to_vec();
        let opened = harness
            .runtime
            .block_on(
                harness
                    .ingest
                    .open_session(harness.authed(OpenSessionRequest {
                        bucket: BUCKET.to_owned(),
                        header,
                    })),
            );
        opened.map_err(|status| status.to_string())?;
        Ok(harness)
    }

    fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(self.principal.clone());
        request
    }

    /// Decodes `data` as one of the unary requests (its first byte picks
    /// which) and runs that handler to its answer; a streamed answer is
    /// read to its end, for at most a few seconds. An error answer is
    /// fine; a panic is what the fuzzer looks for.
    pub fn call(&self, data: &[u8]) {
        let Some((&which, body)) = data.split_first() else {
            return;
        };
        self.runtime.block_on(async {
            match which % 8 {
                0 => {
                    if let Ok(m) = OpenSessionRequest::decode(body) {
                        let _ = self.ingest.open_session(self.authed(m)).await;
                    }
                }
                1 => {
                    if let Ok(m) = FindMissingRequest::decode(body) {
                        let _ = self.ingest.find_missing(self.authed(m)).await;
                    }
                }
                2 => {
                    if let Ok(m) = CheckReferencesRequest::decode(body) {
                        let _ = self.ingest.check_references(self.authed(m)).await;
                    }
                }
                3 => {
                    if let Ok(m) = CommitRequest::decode(body) {
                        let _ = self.ingest.commit(self.authed(m)).await;
                    }
                }
                4 => {
                    if let Ok(m) = ListCommitsRequest::decode(body) {
                        let _ = self.journal.list_commits(self.authed(m)).await;
                    }
                }
                5 => {
                    if let Ok(m) = FetchBlobsRequest::decode(body)
                        && let Ok(answer) = self.journal.fetch_blobs(self.authed(m)).await
                    {
                        let mut stream = answer.into_inner();
                        let drain = async { while stream.next().await.is_some() {} };
                        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
                    }
                }
                6 => {
                    if let Ok(m) = ReportBadBlobsRequest::decode(body) {
                        let _ = self.journal.report_bad_blobs(self.authed(m)).await;
                    }
                }
                _ => {
                    if let Ok(m) = ReportVerifiedBlobsRequest::decode(body) {
                        let _ = self.journal.report_verified_blobs(self.authed(m)).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness answers requests of every kind, valid or not, without
    /// panicking; valid ones do what they say.
    #[test]
    fn every_handler_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::new(dir.path()).unwrap();
        let frame = |which: u8, message: &dyn Fn() -> Vec<u8>| [vec![which], message()].concat();
        let commit = CommitRequest {
            session_id: 1,
            kind: "snapshot".into(),
            seq: 1,
            mac: vec![3; 32],
            ..Default::default()
        };
        let inputs = [
            frame(0, &|| {
                OpenSessionRequest {
                    bucket: BUCKET.into(),
                    header: b"age-encryption.org/v1\nx".to_vec(),
                }
                .encode_to_vec()
            }),
            frame(1, &|| {
                FindMissingRequest {
                    session_id: 1,
                    ids: vec![vec![9; 32], vec![1; 3]],
                }
                .encode_to_vec()
            }),
            frame(2, &|| {
                CheckReferencesRequest {
                    session_id: 1,
                    data_chunk_ids: vec![5; 33].into(),
                }
                .encode_to_vec()
            }),
            frame(3, &|| commit.encode_to_vec()),
            frame(4, &|| ListCommitsRequest::default().encode_to_vec()),
            frame(5, &|| {
                FetchBlobsRequest {
                    bucket: BUCKET.into(),
                    ids: vec![vec![9; 32]],
                }
                .encode_to_vec()
            }),
            frame(6, &|| {
                ReportBadBlobsRequest {
                    bucket: BUCKET.into(),
                    ids: vec![9; 64],
                }
                .encode_to_vec()
            }),
            frame(7, &|| {
                ReportVerifiedBlobsRequest {
                    bucket: BUCKET.into(),
                    copies: vec![9; 40],
                    signature: vec![1; 64],
                }
                .encode_to_vec()
            }),
            vec![3, 0xff, 0xff],
            vec![],
        ];
        for input in &inputs {
            harness.call(input);
        }
        // The valid commit was journalled.
        let listed = harness
            .runtime
            .block_on(
                harness
                    .journal
                    .list_commits(harness.authed(ListCommitsRequest {
                        bucket: BUCKET.into(),
                        ..Default::default()
                    })),
            )
            .unwrap()
            .into_inner();
        assert_eq!(listed.commits.len(), 1);
        assert_eq!(listed.commits[0].mac, vec![3; 32]);
    }
}
