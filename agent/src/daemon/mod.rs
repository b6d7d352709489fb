//! `ferry-agent run`: the agent as a service. It serves the event webhook
//! and keeps every source's snapshots current, each in a loop of its own.
//! A source the policy in force gives a schedule (asked of the hub every
//! `policy-interval`, [`crate::jobs::plan`]) is backed up at its slots
//! ([`scheduled`]); any other is kept current continuously: buckets from
//! their events ([`bucket`]), directories from a watcher ([`dir`]). A
//! source moves between the two as the policy changes. Every
//! `[[replica]]` copy follows its bucket's journal ([`crate::replica`]).

mod bucket;
mod dir;
mod scheduled;

pub use bucket::follow_bucket;
pub use dir::follow_dir;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_crypto::TenantKeys;
use tokio::sync::{Notify, watch};

use crate::client::HubClient;
use crate::config::{AgentConfig, ConfigError, SourceKind};
use crate::events::queue::{QueueError, QueueWriter};
use crate::events::webhook::{self, Route};
use crate::hub_link::{HubLink, LinkError};
use crate::jobs::clock::Clock;
use crate::jobs::plan::{self, Plan};
use crate::jobs::status::{Mode, StatusFile};
use crate::jobs::timer::Ended;

/// Most events one snapshot takes; the rest wait for the next.
const EVENTS_PER_SNAPSHOT: usize = 100_000;
/// Longest wait between attempts after a failed snapshot.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a daemon with no saved plan waits for the hub's first answer
/// before its sources start (continuous, until the hub answers).
const FIRST_ANSWER: Duration = Duration::from_secs(15);

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
/// configured) and one loop per source. `on_ready` hears the
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
        status: Arc::new(StatusFile::open(crate::jobs::status::path_in(
            &config.state_dir,
        ))),
        clock: Clock::System,
    };
    let (stop_tx, stop) = watch::channel(false);
    let saved = plan::saved_path(&config.state_dir);
    let known = plan::load(&saved).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring the saved plan; asking the hub");
        None
    });
    // Nothing saved: the hub is asked before any source starts, so a
    // scheduled source does not begin with a continuous snapshot.
    let asked = known.is_none();
    let (plan_tx, plan_rx) = watch::channel(Arc::new(known.unwrap_or_default()));
    if asked {
        match tokio::time::timeout(FIRST_ANSWER, ask_once(&shared, &saved, &plan_tx)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot ask the hub for policy jobs; continuous until it answers")
            }
            Err(_) => {
                tracing::warn!("the hub did not answer for policy jobs; continuous until it does")
            }
        }
    }
    let mut routes = Vec::new();
    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(ask_for_plan(
        shared.clone(),
        saved,
        plan_tx,
        asked,
        stop.clone(),
    ));
    for (index, source) in config.sources.iter().enumerate() {
        let wake = match source.kind() {
            SourceKind::Dir(_) => None,
            SourceKind::Bucket(location) => {
                let wake = Arc::new(Notify::new());
                routes.push(Route {
                    source: source.name.as_str().into(),
                    bucket: location.bucket.clone(),
                    prefix: location.prefix.clone(),
                    wake: wake.clone(),
                });
                Some(wake)
            }
        };
        loops.spawn(keep_source(
            shared.clone(),
            index,
            wake,
            plan_rx.clone(),
            stop.clone(),
        ));
    }
    for replica in &config.replicas {
        let replica = crate::replica::Replica::new(
            shared.client.clone(),
            shared.keys.clone(),
            config.heads_path(),
            config.state_dir.clone(),
            replica.clone(),
        );
        let stop = stop.clone();
        loops.spawn(async move { replica.follow(stop).await });
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
    /// What each job last did, for `ferry-agent status`.
    pub status: Arc<StatusFile>,
    pub clock: Clock,
}

/// Asks the hub for the plan once; one that differs from the plan in
/// force is saved and passed on.
async fn ask_once(
    shared: &Shared,
    saved: &std::path::Path,
    plan: &watch::Sender<Arc<Plan>>,
) -> Result<(), plan::PlanError> {
    let (new, response) = plan::fetch(&shared.client, &shared.config).await?;
    if **plan.borrow() != new {
        tracing::info!(policy_version = new.version, "policy jobs changed");
        if let Err(e) = plan::save(saved, &response) {
            tracing::warn!(error = %e, "cannot save the plan");
        }
        plan.send_replace(Arc::new(new));
    }
    Ok(())
}

/// Asks the hub for the plan every `policy-interval` until `stop` (the
/// first time after one interval if `asked` already at start).
async fn ask_for_plan(
    shared: Shared,
    saved: PathBuf,
    plan: watch::Sender<Arc<Plan>>,
    asked: bool,
    mut stop: watch::Receiver<bool>,
) {
    let every = shared.config.run.policy_interval();
    if asked && wait(&mut stop, every).await {
        return;
    }
    loop {
        // The last plan stays in force until the hub answers again.
        if let Err(e) = ask_once(&shared, &saved, &plan).await {
            tracing::warn!(error = %e, retry_in = ?every, "cannot ask the hub for policy jobs");
        }
        if wait(&mut stop, every).await {
            return;
        }
    }
}

/// Keeps one source's snapshots current until `stop`: on its schedules
/// while the plan gives it any, continuously otherwise.
async fn keep_source(
    shared: Shared,
    index: usize,
    wake: Option<Arc<Notify>>,
    mut plan: watch::Receiver<Arc<Plan>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(source) = shared.config.sources.get(index) else {
        return;
    };
    let name = source.name.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        if !plan.borrow_and_update().schedules_of(&name).is_empty() {
            match scheduled::follow_schedule(&shared, source, &mut plan, &mut stop).await {
                Ended::Stopped => return,
                Ended::Replanned => continue,
            }
        }
        let version = plan.borrow().version;
        shared.status.update(&name, |s| {
            s.mode = Mode::Continuous;
            s.schedules.clear();
            s.policy_version = version;
            s.next_unix_ms = None;
        });
        // Continuous until the daemon stops or the plan gives a schedule.
        let (quit_tx, quit) = watch::channel(false);
        let follow = match &wake {
            None => tokio::spawn(follow_dir(shared.clone(), index, quit)),
            Some(wake) => tokio::spawn(follow_bucket(shared.clone(), index, wake.clone(), quit)),
        };
        // Once the plan's sender is gone no plan comes: only a stop ends this.
        let mut plan_open = true;
        let stopping = loop {
            tokio::select! {
                _ = stop.changed() => break true,
                changed = plan.changed(), if plan_open => match changed {
                    Ok(()) if !plan.borrow().schedules_of(&name).is_empty() => break false,
                    Ok(()) => {}
                    Err(_) => plan_open = false,
                },
            }
        };
        // The loop ends between snapshots: one under way is finished.
        let _ = quit_tx.send(true);
        let _ = follow.await;
        if stopping {
            return;
        }
    }
}

/// A snapshot of `source` as `scanned` lists it, unattended (no progress
/// shown), read again in full if the hub lacks chunks the journal vouched for.
async fn snapshot_of(
    shared: &Shared,
    source: &crate::config::SourceConfig,
    scanned: Arc<dyn crate::source::Source>,
) -> Result<crate::backup::BackupReport, crate::backup::BackupError> {
    let journal_path = shared.config.journal_path(source);
    crate::backup::run_backup_rechecked(|trust_journal| crate::backup::BackupJob {
        client: shared.client.clone(),
        keys: shared.keys.clone(),
        source: scanned.clone(),
        journal_path: journal_path.clone(),
        heads_path: shared.config.heads_path(),
        bucket: source.bucket.clone(),
        progress: crate::progress::Progress::hidden(),
        trust_journal,
    })
    .await
}

/// Sleeps `how_long`; true if asked to stop meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, how_long: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(how_long) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
