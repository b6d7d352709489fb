//! The HTTP endpoint S3 servers (AWS through a relay, MinIO, Ceph RGW) post
//! event notifications to. `POST /` takes a `Records[]` body; `HEAD /` and
//! `GET /` answer 200 so senders can probe the endpoint.
//!
//! Answers: 200 once every event of the body is durably queued; 400 with the
//! reason for a malformed or oversized body; 401 without the configured
//! bearer token; 503 with `Retry-After` when the queue is full (the sources
//! concerned are then marked for a full listing, in case the sender gives up).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferry_tls::TlsAcceptor;
use ferry_tls::accept::{Accepted, accept_loop};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::parse::{MAX_BODY_BYTES, parse_events};
use super::queue::{QueueError, QueueWriter, QueuedEvent};

/// Seconds a sender is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// Which source takes events of a bucket (and key prefix).
#[derive(Clone, Debug)]
pub struct Route {
    pub source: Arc<str>,
    pub bucket: String,
    pub prefix: String,
    /// Wakes the source's backup loop.
    pub wake: Arc<Notify>,
}

struct Hook {
    routes: Vec<Route>,
    queue: QueueWriter,
    /// `Bearer <token>` when a token is configured.
    expected_auth: Option<String>,
}

/// Connections served at once; one more is closed at once (S3 senders retry).
const MAX_CONNECTIONS: usize = 256;
/// From accept to a finished TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` and returns the bound address and the server future,
/// serving TLS when `tls` is given.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(
    listen: SocketAddr,
    routes: Vec<Route>,
    queue: QueueWriter,
    token: Option<String>,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let hook = Arc::new(Hook {
        routes,
        queue,
        expected_auth: token.map(|t| format!("Bearer {t}")),
    });
    let app = Router::new()
        .route("/", post(receive).head(probe).get(probe))
        // A little over the parse limit, so an oversized body is read and
        // refused with 400 and a reason rather than cut off.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES * 2))
        .with_state(hook);
    // The accept loop sets NODELAY: each answer is one small write, which
    // would otherwise wait for the client's delayed ACK of the previous one.
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let admit = move |peer: SocketAddr| {
        let place = places.clone().try_acquire_owned().ok();
        if place.is_none() {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "webhook: connection refused, too many open");
        }
        place
    };
    let listener = HookListener {
        accepted: accept_loop(listener, tls, HANDSHAKE_TIMEOUT, admit),
        bound,
    };
    Ok((bound, async move { axum::serve(listener, app).await }))
}

/// The webhook's connections, plain or TLS, for axum.
struct HookListener {
    accepted: mpsc::Receiver<Accepted<OwnedSemaphorePermit>>,
    bound: SocketAddr,
}

impl axum::serve::Listener for HookListener {
    type Io = Accepted<OwnedSemaphorePermit>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.accepted.recv().await {
            Some(conn) => {
                let peer = conn.remote;
                (conn, peer)
            }
            // The accept loop only ends when this receiver is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.bound)
    }
}

async fn probe() -> StatusCode {
    StatusCode::OK
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The 200 answer, written out directly: it is sent once per request.
fn accepted(queued: usize, duplicates: usize, ignored: usize) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"queued":{queued},"duplicates":{duplicates},"ignored":{ignored}}}"#),
    )
        .into_response()
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(expected) = &hook.expected_auth {
        let given = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        // Constant-time: the token is a secret.
        let ok = given.is_some_and(|g| {
            g.len() == expected.len()
                && g.iter()
                    .zip(expected.as_bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return reply(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "missing or wrong bearer token"}),
            );
        }
    }
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "webhook: refused a body");
            return reply(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    };
    let mut queued = Vec::with_capacity(events.len());
    let mut ignored = 0usize;
    // Which routes took events, to wake their loops.
    let mut woken = vec![false; hook.routes.len()];
    for mut event in events {
        let route =
            hook.routes.iter().enumerate().find(|(_, r)| {
                r.bucket == event.bucket && event.key.starts_with(r.prefix.as_str())
            });
        match route {
            Some((index, route)) => {
                event.key.drain(..route.prefix.len());
                if event.key.is_empty() {
                    ignored += 1;
                    continue;
                }
                woken[index] = true;
                queued.push(QueuedEvent {
                    source: route.source.clone(),
                    event,
                });
            }
            None => ignored += 1,
        }
    }
    let total = queued.len();
    let routes = || {
        hook.routes
            .iter()
            .zip(&woken)
            .filter_map(|(route, woken)| woken.then_some(route))
    };
    if total == 0 {
        return accepted(0, 0, ignored);
    }
    match hook.queue.append(queued).await {
        Ok(new) => {
            for route in routes() {
                route.wake.notify_one();
            }
            accepted(new, total - new, ignored)
        }
        Err(QueueError::Full { pending }) => {
            // The sender may give up on these: make the next snapshot list in full.
            let sources = routes().map(|r| r.source.to_string()).collect();
            if let Err(e) = hook.queue.mark_gap(sources, "event queue was full").await {
                tracing::error!(error = %e, "webhook: cannot record an event gap");
            }
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": format!("event queue is full ({pending} pending); retry later")}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook: queue write failed");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": e.to_string()}),
            )
        }
    }
}
