//! The gRPC connection to the hub, with the site token on every call.

use std::time::Duration;

use ferry_proto::auth::AUTHORIZATION;
use ferry_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, MAX_MESSAGE_BYTES, STREAM_WINDOW};
use ferry_proto::v1::ingest_client::IngestClient;
use ferry_proto::v1::journal_client::JournalClient;
use ferry_proto::v1::policy_client::PolicyClient;
use ferry_proto::v1::replication_client::ReplicationClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::hub_link::HubLink;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the hub at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the site token is not a valid header value")]
    BadToken,
}

/// TCP and the TLS handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From a call to its answer's headers: a unary call's whole answer, a
/// stream's start (streams have their own stall watchdogs). Generous: a
/// commit of millions of references is checked against the catalog.
const CALL_DEADLINE: Duration = Duration::from_secs(120);
/// How long a stream may wait on the hub for its next message (a blob
/// fetched, a batch acknowledged) before the call fails as stalled.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);
/// HTTP/2 pings on every connection, idle or not ...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// ... and how long an answer may take before the connection counts as lost.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct TokenAuth {
    value: MetadataValue<tonic::metadata::Ascii>,
}

impl Interceptor for TokenAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(AUTHORIZATION, self.value.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, TokenAuth>;

/// The hub's services over two HTTP/2 connections: one for requests and
/// answers, one for bulk uploads. On a shared connection a dedup query
/// waits behind megabytes of blob frames already queued on the socket.
#[derive(Clone)]
pub struct HubClient {
    pub ingest: IngestClient<Authed>,
    pub journal: JournalClient<Authed>,
    pub replication: ReplicationClient<Authed>,
    pub policy: PolicyClient<Authed>,
    /// For `UploadBlobs` only.
    pub bulk: IngestClient<Authed>,
}

impl HubClient {
    /// Connects now: a hub that cannot be reached is an error at once.
    pub async fn connect(link: &HubLink, token: &str) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            url: link.url.clone(),
            source,
        };
        let endpoint = endpoint(link);
        let channel = endpoint
            .connect_with_connector(link.dialer(CONNECT_TIMEOUT))
            .await
            .map_err(connect_err)?;
        let bulk = endpoint
            .connect_with_connector(link.dialer(CONNECT_TIMEOUT))
            .await
            .map_err(connect_err)?;
        Self::on(channel, bulk, token)
    }

    /// Connects when the first call needs it (and again after a lost
    /// connection, as every channel does): for the daemon, which starts
    /// whether or not the hub is up.
    pub fn connect_lazy(link: &HubLink, token: &str) -> Result<Self, ClientError> {
        let endpoint = endpoint(link);
        let channel = endpoint.connect_with_connector_lazy(link.dialer(CONNECT_TIMEOUT));
        let bulk = endpoint.connect_with_connector_lazy(link.dialer(CONNECT_TIMEOUT));
        Self::on(channel, bulk, token)
    }

    fn on(channel: Channel, bulk_channel: Channel, token: &str) -> Result<Self, ClientError> {
        let value = MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::BadToken)?;
        let auth = TokenAuth { value };
        let ingest_on = |channel: Channel| {
            IngestClient::with_interceptor(channel, auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        };
        let ingest = ingest_on(channel.clone());
        let bulk = ingest_on(bulk_channel);
        let journal = JournalClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let policy = PolicyClient::with_interceptor(channel.clone(), auth.clone());
        let replication = ReplicationClient::with_interceptor(channel, auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            ingest,
            journal,
            replication,
            policy,
            bulk,
        })
    }
}

/// The endpoint both channels dial: windows, deadline and keepalive.
fn endpoint(link: &HubLink) -> Endpoint {
    Endpoint::from(link.uri.clone())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .timeout(CALL_DEADLINE)
        // A hub that has gone away (frozen, unplugged) is noticed within
        // keepalive interval + timeout, even in the middle of a stream.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// A call to the hub that went wrong, as every job (backup, restore, a
/// journal walk) reports it.
#[derive(Debug, thiserror::Error)]
pub enum HubCallError {
    #[error("{}", call_failed(call, status))]
    Failed {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("hub protocol error in {call}: {reason}")]
    Protocol { call: &'static str, reason: String },
    #[error("the hub stopped answering {call}: nothing for {seconds} s")]
    Stalled { call: &'static str, seconds: u64 },
}

impl HubCallError {
    /// What `map_err` turns the status of a failed `call` into.
    pub fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Failed { call, status }
    }
}

/// How a failed call reads to the operator: a connection to the hub that
/// was lost (no answer to keepalive, reset, refused) is told apart from an
/// answer the hub gave.
pub fn call_failed(call: &str, status: &tonic::Status) -> String {
    // A status the hub sent has no source; one made here from a failed
    // connection carries the transport or I/O error that ended it.
    let mut chain = Vec::new();
    let mut lost = false;
    let mut next = std::error::Error::source(status);
    while let Some(e) = next {
        lost |= e.downcast_ref::<tonic::transport::Error>().is_some()
            || e.downcast_ref::<hyper::Error>().is_some()
            || e.downcast_ref::<std::io::Error>().is_some();
        chain.push(e.to_string());
        next = e.source();
    }
    if lost {
        format!(
            "lost the connection to the hub during {call}: {}",
            chain.join(": ")
        )
    } else {
        format!("hub refused {call}: {status}")
    }
}
