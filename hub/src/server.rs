//! Opens the catalog and pool, and serves the gRPC services until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, MAX_MESSAGE_BYTES, STREAM_WINDOW};
use ferry_proto::v1::ingest_server::IngestServer;
use ferry_proto::v1::journal_server::JournalServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::blobstore::BlobStore;
use crate::blobstore::local::LocalDirStore;
use crate::catalog::Catalog;
use crate::catalog::sqlite::SqliteCatalog;
use crate::config::HubConfig;
use crate::packer::{Packer, PackerConfig};
use crate::service::{HubState, IngestService, JournalService};

/// Name under which the local pool is recorded in the catalog.
pub const LOCAL_POOL: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("pool: {0}")]
    Pool(#[from] crate::blobstore::BlobStoreError),
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

/// Serves until `shutdown` resolves. `ready` receives the bound address
/// (useful with port 0).
pub async fn serve(
    config: &HubConfig,
    listen: SocketAddr,
    ready: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let catalog = open_catalog(config)?;
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::open(config.pool_path())?);
    let packer = Packer::start(
        store.clone(),
        catalog.clone(),
        LOCAL_POOL.to_string(),
        PackerConfig::default(),
    );
    let state = HubState::new(catalog, store, packer);

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
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
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
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    tracing::info!("ferry-hub stopped");
    Ok(())
}
