//! Opens the catalog and pool, and serves the gRPC services until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, MAX_MESSAGE_BYTES, STREAM_WINDOW};
use ferry_proto::v1::ingest_server::IngestServer;
use ferry_proto::v1::journal_server::JournalServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::blobstore::{BlobStore, LocalDirStore, Pools, S3Store};
use crate::catalog::Catalog;
use crate::catalog::sqlite::SqliteCatalog;
use crate::config::{HubConfig, PoolKind};
use crate::packer::{Packer, PackerConfig};
use crate::service::{HubState, IngestService, JournalService};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("pool {name}: {source}")]
    Pool {
        name: String,
        #[source]
        source: crate::blobstore::BlobStoreError,
    },
    #[error(
        "pool {name} holds {packs} packs in the catalog but is not configured; \
         a pool that holds packs must stay in the config"
    )]
    PoolMissing { name: String, packs: u64 },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

pub fn open_catalog(config: &HubConfig) -> Result<Arc<dyn Catalog>, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::Io {
        what: "creating data dir",
        path: config.data_dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(SqliteCatalog::open(config.catalog_path())?))
}

/// Opens every configured pool and checks that each pool the catalog has
/// packs in is among them: a hub that silently lost a pool would answer
/// "missing" for data that exists.
///
/// # Errors
/// A pool cannot be opened (missing bucket, refused credentials), or the
/// catalog names a pool that is not configured.
pub async fn open_pools(config: &HubConfig, catalog: &dyn Catalog) -> Result<Pools, ServeError> {
    let mut opened: Vec<(String, Arc<dyn BlobStore>)> = Vec::new();
    for (name, kind) in config.pool_list() {
        let failed = |source| ServeError::Pool {
            name: name.to_owned(),
            source,
        };
        let store: Arc<dyn BlobStore> = match kind {
            PoolKind::Dir(path) => Arc::new(LocalDirStore::open(path).map_err(failed)?),
            PoolKind::S3(location) => {
                Arc::new(S3Store::open(location.clone()).await.map_err(failed)?)
            }
        };
        tracing::info!(pool = name, "pool open");
        opened.push((name.to_owned(), store));
    }
    for (name, packs) in catalog.packs_per_pool()? {
        if !opened.iter().any(|(n, _)| *n == name) {
            return Err(ServeError::PoolMissing { name, packs });
        }
    }
    // Names were checked unique by the config; the list is never empty.
    Pools::new(opened).ok_or_else(|| ServeError::Pool {
        name: String::new(),
        source: crate::blobstore::BlobStoreError::InvalidName {
            name: String::new(),
            reason: "no pools, or two with one name",
        },
    })
}

/// Serves until `shutdown` resolves. `ready` receives the bound address
/// (useful with port 0).
pub async fn serve(
    config: &HubConfig,
    listen: SocketAddr,
    ready: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let catalog = open_catalog(config)?;
    let pools = Arc::new(open_pools(config, catalog.as_ref()).await?);
    let (newest, store) = pools.newest();
    tracing::info!(pool = newest, "new packs go to this pool");
    let packer = Packer::start(
        store.clone(),
        catalog.clone(),
        newest.to_owned(),
        PackerConfig::default(),
    );
    let state = HubState::new(catalog, pools, packer);

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Io {
            what: "binding",
            path: listen.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Io {
        what: "reading bound address of",
        path: listen.to_string(),
        source,
    })?;
    tracing::info!(address = %bound, data_dir = %config.data_dir.display(), "ferry-hub listening");
    if let Some(path) = ready {
        // Written whole then renamed, so a watcher never reads half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ServeError::Io {
                what: "writing ready file",
                path: path.display().to_string(),
                source,
            })?;
    }
    // The builder's own tcp_nodelay applies only to listeners it binds; set
    // it on each accepted connection, or a small answer written after a
    // large one waits out Nagle and the peer's delayed ACK (40 ms here).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .add_service(
            IngestServer::new(IngestService(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            JournalServer::new(JournalService(state))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!("ferry-hub stopped");
    Ok(())
}
