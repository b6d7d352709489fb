//! Opens the catalog and pool, and serves the gRPC services until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::blobstore::{BlobStore, LocalDirStore, Pools, S3Store};
use crate::catalog::{Catalog, PostgresCatalog, SqliteCatalog};
use crate::config::{CATALOG_PASSWORD_ENV, CatalogEngine, HubConfig, PoolKind};
use crate::listener::{self, Limits};
use crate::packer::{Packer, PackerConfig};
use crate::service::{self, HubState};

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
    #[error("{what} {path}: mode {mode:04o} lets group or others read it; run `chmod 600 {path}`")]
    ReadableSecret {
        what: &'static str,
        path: String,
        mode: u32,
    },
    #[error("blocking task failed: {0}")]
    Task(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("tls: {0}")]
    Tls(#[from] ferry_tls::TlsError),
    #[error(
        "refusing to serve plaintext gRPC on {listen}, which is not a loopback address: \
         site tokens would cross the network readable. Configure [tls] \
         (`ferry-hub tls init` makes a certificate), or set insecure-plaintext = true \
         when the network is protected otherwise"
    )]
    PlaintextOffLoopback { listen: SocketAddr },
}

/// The TLS acceptor of `config`'s `[tls]`, if any; refuses plaintext off
/// loopback unless the config allows it.
///
/// # Errors
/// A certificate, key or CA file cannot be read, or plaintext was asked
/// for where it is not allowed.
pub fn tls_acceptor(
    config: &HubConfig,
    listen: SocketAddr,
) -> Result<Option<ferry_tls::TlsAcceptor>, ServeError> {
    match &config.tls {
        Some(tls) => {
            let server = ferry_tls::server_config(
                &tls.cert_file,
                &tls.key_file,
                tls.client_ca_file.as_deref(),
                &[ferry_tls::ALPN_H2],
            )?;
            Ok(Some(ferry_tls::TlsAcceptor::from(server)))
        }
        None if listen.ip().is_loopback() || config.insecure_plaintext => Ok(None),
        None => Err(ServeError::PlaintextOffLoopback { listen }),
    }
}

/// Opens the configured catalog: SQLite (creating the data dir) or
/// PostgreSQL. Blocks: async callers run it on a blocking thread.
///
/// # Errors
///
/// The data dir cannot be made, the password file cannot be read, or the
/// catalog cannot be opened.
pub fn open_catalog(config: &HubConfig) -> Result<Arc<dyn Catalog>, ServeError> {
    match config.catalog.engine {
        CatalogEngine::Sqlite => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .map_err(|source| ServeError::Io {
                    what: "creating data dir",
                    path: config.data_dir.display().to_string(),
                    source,
                })?;
            Ok(Arc::new(SqliteCatalog::open(config.catalog_path())?))
        }
        CatalogEngine::Postgres => {
            let url = config.catalog.url.as_deref().unwrap_or_default();
            let password = catalog_password(config)?;
            let catalog = PostgresCatalog::connect(url, password.as_deref())?;
            tracing::info!(catalog = catalog.target(), "catalog on PostgreSQL");
            Ok(Arc::new(catalog))
        }
    }
}

/// The PostgreSQL password: the first line of `password-file`, else
/// `FERRY_CATALOG_PASSWORD`, else none.
fn catalog_password(config: &HubConfig) -> Result<Option<String>, ServeError> {
    if let Some(path) = &config.catalog.password_file {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| ServeError::Io {
            what: "reading catalog password file",
            path: path.display().to_string(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ServeError::ReadableSecret {
                what: "catalog password file",
                path: path.display().to_string(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
            what: "reading catalog password file",
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(std::env::var(CATALOG_PASSWORD_ENV).ok())
}

/// [`open_catalog`] on a blocking thread.
async fn open_catalog_blocking(config: &HubConfig) -> Result<Arc<dyn Catalog>, ServeError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || open_catalog(&config))
        .await
        .map_err(|e| ServeError::Task(e.to_string()))?
}

/// Opens every configured pool and checks that each pool the catalog has
/// packs in is among them: a hub that silently lost a pool would answer
/// "missing" for data that exists.
///
/// # Errors
/// A pool cannot be opened (missing bucket, refused credentials), or the
/// catalog names a pool that is not configured.
pub async fn open_pools(
    config: &HubConfig,
    catalog: &Arc<dyn Catalog>,
) -> Result<Pools, ServeError> {
    let mut opened: Vec<(String, Arc<dyn BlobStore>)> = Vec::new();
    for (name, kind) in config.pool_list() {
        let failed = |source| ServeError::Pool {
            name: name.to_owned(),
            source,
        };
        let store: Arc<dyn BlobStore> = match kind {
            PoolKind::Dir(path) => {
                let store = LocalDirStore::open(path).map_err(failed)?;
                // What a crash left between writing and renaming: never an
                // acknowledged pack (those are renamed before the ack).
                let sweeping = store.clone();
                let swept =
                    tokio::task::spawn_blocking(move || sweeping.sweep_temp_files(TEMP_FILE_AGE))
                        .await
                        .map_err(|e| ServeError::Task(e.to_string()))?
                        .map_err(failed)?;
                if swept > 0 {
                    tracing::info!(pool = name, swept, "removed temp files left by a crash");
                }
                Arc::new(store)
            }
            PoolKind::S3(location) => {
                Arc::new(S3Store::open(location.clone()).await.map_err(failed)?)
            }
        };
        tracing::info!(pool = name, "pool open");
        opened.push((name.to_owned(), store));
    }
    let counted = {
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || catalog.packs_per_pool())
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??
    };
    for (name, packs) in counted {
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

/// Indexes the packs the pools hold and the catalog lacks, in the
/// background: a hub that stopped between putting a pack and recording it
/// left one, and `recover` would index it anyway (the pools are the
/// truth), so it is adopted rather than deleted. Read-only on the pools.
async fn adopt_unrecorded_packs(
    catalog: Arc<dyn Catalog>,
    pools: Arc<Pools>,
    stored: Arc<crate::stored_filter::StoredFilter>,
) {
    match crate::recover::adopt_unrecorded_packs(catalog.clone(), &pools).await {
        Ok(report) if report.packs > 0 || !report.damaged.is_empty() => {
            tracing::info!(
                packs = report.packs,
                blobs = report.blobs_added,
                damaged = report.damaged.len(),
                "unrecorded packs adopted"
            );
            // The packer's filter may have been built before these rows
            // were: it would call them surely absent, and they would be
            // stored again. Built anew, it sees them.
            if report.blobs_added > 0 {
                let rebuilt = tokio::task::spawn_blocking(move || stored.build(&*catalog)).await;
                if let Ok(Err(e)) = rebuilt {
                    tracing::warn!(error = %e, "rebuilding the stored-blob filter");
                }
            }
        }
        Ok(_) => tracing::info!("no unrecorded packs"),
        Err(e) => tracing::warn!(error = %e, "looking for unrecorded packs"),
    }
}

/// Indexes, in the background, the references of buckets whose commits
/// are older than the reference index (an upgraded catalog): until then
/// their reads are not limited by it. Read-only on the pools.
async fn backfill_references(catalog: Arc<dyn Catalog>, pools: Arc<Pools>) {
    match crate::recover::backfill_references(catalog, &pools).await {
        Ok(done) if done.indexed == 0 && done.left.is_empty() => {}
        Ok(done) if done.left.is_empty() => {
            tracing::info!(buckets = done.indexed, "bucket references indexed");
        }
        Ok(done) => tracing::warn!(
            buckets = done.indexed,
            left = ?done.left,
            "bucket references indexed, but some segments could not be read: those buckets' reads stay unlimited until the next start"
        ),
        Err(e) => tracing::warn!(error = %e, "indexing bucket references"),
    }
}

/// Serves until `shutdown` resolves. `ready` receives the bound address
/// (useful with port 0).
pub async fn serve(
    config: &HubConfig,
    listen: SocketAddr,
    ready: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // Before anything is opened: a hub that may not serve should say so first.
    let tls = tls_acceptor(config, listen)?;
    let catalog = open_catalog_blocking(config).await?;
    tracing::info!(engine = catalog.engine(), "catalog open");
    let pools = Arc::new(open_pools(config, &catalog).await?);
    let (newest, store) = pools.newest();
    tracing::info!(pool = newest, "new packs go to this pool");
    let packer = Packer::start(
        store.clone(),
        catalog.clone(),
        newest.to_owned(),
        PackerConfig::default(),
    );
    tokio::spawn(adopt_unrecorded_packs(
        catalog.clone(),
        pools.clone(),
        packer.stored().clone(),
    ));
    tokio::spawn(backfill_references(catalog.clone(), pools.clone()));
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
    tracing::info!(
        address = %bound,
        tls = tls.is_some(),
        mutual_tls = config.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
        data_dir = %config.data_dir.display(),
        "ferry-hub listening"
    );
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
    let limits = &config.limits;
    let incoming = listener::incoming(
        listener,
        tls,
        Limits {
            max_connections: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
            auth_timeout: Duration::from_secs(limits.auth_timeout_secs),
        },
    );
    // On the signal, first drain: new calls get UNAVAILABLE, streams store
    // and acknowledge what they hold and end. Then tonic stops accepting
    // connections and waits for the calls still open (the drain's linger
    // lets calls already on the way read their answer before it closes).
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let draining = state.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("stopping: new calls are refused; finishing the streams in flight");
        let _ = stopping_tx.send(());
        draining.drain(DRAIN_LIMIT).await;
        tokio::time::sleep(LINGER).await;
    };
    let serving = service::router(state.clone(), limits.max_streams_per_connection)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let deadline = async {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(DRAIN_LIMIT * 2).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serving => served?,
        () = deadline => tracing::warn!(
            seconds = DRAIN_LIMIT.as_secs(),
            "calls still open at the drain limit; stopping anyway (nothing unacknowledged is kept)"
        ),
    }
    stop_packer(state).await;
    tracing::info!("ferry-hub stopped");
    Ok(())
}

/// Temp files older than this are a crash's leftovers, swept at start.
const TEMP_FILE_AGE: Duration = Duration::from_secs(3600);

/// How long a stopping hub waits for open calls to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long a drained hub still answers (UNAVAILABLE) before it closes its
/// connections: an agent's calls already on the way read that answer.
const LINGER: Duration = Duration::from_millis(300);

/// Waits (up to [`DRAIN_LIMIT`]) for the last calls to let go of the
/// state, then lets the packer finish what is queued.
async fn stop_packer(mut state: Arc<HubState>) {
    let until = tokio::time::Instant::now() + DRAIN_LIMIT;
    loop {
        match Arc::try_unwrap(state) {
            Ok(state) => return state.packer.shutdown().await,
            Err(shared) if tokio::time::Instant::now() < until => {
                state = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                tracing::warn!("a call still holds the packer at the drain limit");
                return;
            }
        }
    }
}
