//! `ferry-agent run`: the agent as a service. It serves the event webhook
//! and keeps every bucket source's snapshots current: a full listing first
//! (and again every `reconcile-interval`, and after any event gap), and in
//! between a snapshot of the index plus the keys events named, taken soon
//! after events arrive. Events leave the queue only once the snapshot that
//! took them is committed at the hub.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_crypto::TenantKeys;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::backup::{BackupJob, BackupReport, run_backup_rechecked};
use crate::client::HubClient;
use crate::config::{AgentConfig, ConfigError, SourceConfig, SourceKind};
use crate::events::overlay::EventOverlay;
use crate::events::queue::{Changes, QueueError, QueueReader, QueueWriter};
use crate::events::webhook::{self, Route};
use crate::hub_link::{HubLink, LinkError};
use crate::progress::Progress;
use crate::source::Source;
use crate::source::bucket::BucketSource;

/// Most events one snapshot takes; the rest wait for the next.
const EVENTS_PER_SNAPSHOT: usize = 100_000;
/// Longest wait between attempts after a failed snapshot.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("tenant key: {0}")]
    Key(#[from] ferry_crypto::KeyFileError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("webhook TLS: {0}")]
    Tls(#[from] ferry_tls::TlsError),
    #[error("event queue: {0}")]
    Queue(#[from] QueueError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook listen address {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent as a service until `shutdown` resolves: the webhook (if
/// configured) and one loop per bucket source. `on_ready` hears the
/// webhook's bound address once it listens. The hub need not be up: the
/// connection is made when the first snapshot needs it, and every failed
/// snapshot is retried with backoff, so a hub that was away is used again
/// as soon as it answers.
///
/// # Errors
/// Bad config, key, TLS files, queue or listen address: what no retry fixes.
pub async fn run(
    config: AgentConfig,
    on_ready: impl FnOnce(Option<SocketAddr>) -> std::io::Result<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let keys = Arc::new(TenantKeys::load(&config.key_file)?);
    let token = config.token()?;
    let link = HubLink::of(&config)?;
    let client = HubClient::connect_lazy(&link, &token)?;
    std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::Io {
        what: "creating state dir",
        path: config.state_dir.clone(),
        source,
    })?;
    let config = Arc::new(config);
    let queue_path = config.state_dir.join("events.db");
    let shared = Shared {
        client,
        keys,
        config: config.clone(),
        queue_path: queue_path.clone(),
        reconcile_interval: config.run.reconcile_interval(),
        settle: config.run.settle(),
    };
    let (stop_tx, stop) = watch::channel(false);
    let mut routes = Vec::new();
    let mut loops = tokio::task::JoinSet::new();
    for (index, source) in config.sources.iter().enumerate() {
        let SourceKind::Bucket(location) = source.kind() else {
            tracing::warn!(source = %source.name, "run keeps bucket sources only; back up directories with `backup`");
            continue;
        };
        let wake = Arc::new(Notify::new());
        routes.push(Route {
            source: source.name.as_str().into(),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            wake: wake.clone(),
        });
        loops.spawn(follow_bucket(shared.clone(), index, wake, stop.clone()));
    }
    let (server, bound) = match &config.webhook {
        Some(hook) => {
            let token = match &hook.token_file {
                Some(file) => Some(crate::config::read_secret("webhook token file", file)?),
                None => None,
            };
            let tls = match (&hook.cert_file, &hook.key_file) {
                (Some(cert), Some(key)) => Some(ferry_tls::TlsAcceptor::from(
                    ferry_tls::server_config(cert, key, None, &[ferry_tls::ALPN_HTTP1])?,
                )),
                _ => None,
            };
            let queue = QueueWriter::start(&queue_path, hook.max_pending)?;
            let (bound, serve) = webhook::bind(hook.listen, routes, queue, token, tls)
                .await
                .map_err(|source| DaemonError::Bind {
                    address: hook.listen,
                    source,
                })?;
            tracing::info!(address = %bound, "webhook listening");
            (Some(tokio::spawn(serve)), Some(bound))
        }
        None => (None, None),
    };
    on_ready(bound).map_err(|source| DaemonError::Io {
        what: "announcing the webhook address",
        path: PathBuf::from("(ready file)"),
        source,
    })?;
    shutdown.await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Some(server) = server {
        server.abort();
    }
    while loops.join_next().await.is_some() {}
    Ok(())
}

/// What every source loop shares.
#[derive(Clone)]
pub struct Shared {
    pub client: HubClient,
    pub keys: Arc<TenantKeys>,
    pub config: Arc<AgentConfig>,
    pub queue_path: PathBuf,
    pub reconcile_interval: Duration,
    /// How long to let events gather after the first one wakes a loop.
    pub settle: Duration,
}

/// Keeps one bucket source's snapshots current until `stop` turns true.
pub async fn follow_bucket(
    shared: Shared,
    source_index: usize,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(source) = shared.config.sources.get(source_index) else {
        return;
    };
    let SourceKind::Bucket(location) = source.kind() else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    let bucket = loop {
        match BucketSource::open(location.clone()).await {
            Ok(b) => break Arc::new(b),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot open the bucket; retrying");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut next_reconcile = Instant::now();
    backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let changes = match read_changes(&shared, &source.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "cannot read the event queue");
                if wait(&mut stop, backoff).await {
                    return;
                }
                continue;
            }
        };
        let full = Instant::now() >= next_reconcile || changes.gap.is_some();
        if !full && changes.keys.is_empty() {
            tokio::select! {
                () = wake.notified() => {
                    if wait(&mut stop, shared.settle).await {
                        return;
                    }
                }
                () = tokio::time::sleep_until(next_reconcile) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let outcome = snapshot(&shared, source, &bucket, &changes, full).await;
        match outcome {
            Ok(report) => {
                tracing::info!(
                    source = %source.name,
                    seq = report.seq,
                    full_listing = full,
                    events = changes.keys.len(),
                    objects = report.files,
                    read = report.files_read,
                    "snapshot committed"
                );
                let path = shared.queue_path.clone();
                let name = source.name.clone();
                let acknowledged = tokio::task::spawn_blocking(move || {
                    QueueReader::open(&path)?.acknowledge(&name, &changes)
                })
                .await;
                let failed = match acknowledged {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = failed {
                    // Harmless: the events are taken again by the next snapshot.
                    tracing::warn!(source = %source.name, error = %e, "cannot clear taken events");
                }
                if full {
                    next_reconcile = Instant::now() + shared.reconcile_interval;
                }
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, retry_in = ?backoff, "snapshot failed");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sleeps `how_long`; true if asked to stop meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, how_long: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(how_long) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn read_changes(shared: &Shared, source: &str) -> Result<Changes, String> {
    let path = shared.queue_path.clone();
    let name = source.to_owned();
    tokio::task::spawn_blocking(move || {
        QueueReader::open(&path)?.changes(&name, EVENTS_PER_SNAPSHOT)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

async fn snapshot(
    shared: &Shared,
    source: &SourceConfig,
    bucket: &Arc<BucketSource>,
    changes: &Changes,
    full: bool,
) -> Result<BackupReport, String> {
    let journal_path = shared.config.journal_path(source);
    let scanned: Arc<dyn Source> = if full {
        bucket.clone()
    } else {
        Arc::new(
            EventOverlay::new(
                bucket.clone(),
                journal_path.clone(),
                changes.keys.keys().cloned(),
            )
            .await
            .map_err(|e| e.to_string())?,
        )
    };
    run_backup_rechecked(|trust_journal| BackupJob {
        client: shared.client.clone(),
        keys: shared.keys.clone(),
        source: scanned.clone(),
        journal_path: journal_path.clone(),
        heads_path: shared.config.heads_path(),
        bucket: source.bucket.clone(),
        progress: Progress::hidden(),
        trust_journal,
    })
    .await
    .map_err(|e| e.to_string())
}
