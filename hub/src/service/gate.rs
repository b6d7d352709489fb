//! The gate in front of every service: one authentication step per request,
//! taken on its headers alone, before a byte of its body is read.
//!
//! A request without a valid site token is answered UNAUTHENTICATED at
//! once, so an unauthenticated client cannot make the hub buffer or decode
//! anything (twelve 60 MiB requests used to cost the hub half a gigabyte
//! before their tokens were looked at). A request that passes carries its
//! [`Principal`] to the service as an extension, and its body is capped at
//! what its RPC can need.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use ferry_proto::auth::{AUTHORIZATION, parse_bearer, token_hash};
use ferry_proto::transport::MAX_MESSAGE_BYTES;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use super::{HubState, Principal, shutting_down};
use crate::catalog::{CatalogError, CatalogExt};
use crate::listener::ConnInfo;

/// The gRPC path of each RPC and the most bytes its request body may hold
/// (gRPC framing included); `None` for a client stream, whose messages the
/// codec caps one by one.
const RPCS: &[(&str, Option<usize>)] = &[
    // A bucket name and an age header (64 KiB at most).
    ("/ferry.v1.Ingest/OpenSession", Some(128 << 10)),
    // 10,000 ids of 32 bytes.
    ("/ferry.v1.Ingest/FindMissing", Some(1 << 20)),
    ("/ferry.v1.Ingest/UploadBlobs", None),
    // Up to two million packed ids.
    ("/ferry.v1.Ingest/CheckReferences", Some(MAX_MESSAGE_BYTES)),
    // Packed ids, the manifest's ids, reference parts and the body.
    ("/ferry.v1.Ingest/Commit", Some(MAX_MESSAGE_BYTES)),
    ("/ferry.v1.Journal/ListCommits", Some(64 << 10)),
    ("/ferry.v1.Journal/FetchBlobs", Some(1 << 20)),
    // 10,000 packed ids.
    ("/ferry.v1.Journal/ReportBadBlobs", Some(512 << 10)),
    ("/ferry.v1.Journal/ReportVerifiedBlobs", Some(768 << 10)),
    // A bucket name and a sequence number.
    ("/ferry.v1.Replication/Follow", Some(64 << 10)),
    ("/ferry.v1.Replication/Ack", Some(64 << 10)),
    ("/ferry.v1.Replication/Cursor", Some(64 << 10)),
    ("/ferry.v1.Replication/Hold", Some(64 << 10)),
    // 1,000 source and bucket names.
    ("/ferry.v1.Policy/Jobs", Some(512 << 10)),
];

/// The request body limit of the RPC at `path`: `None` for a client
/// stream, whose messages the codec caps one by one, and for a path no
/// service serves (tonic answers UNIMPLEMENTED without reading the body).
fn body_limit(path: &str) -> Option<usize> {
    RPCS.iter()
        .find(|(p, _)| *p == path)
        .and_then(|(_, limit)| *limit)
}

/// Puts the gate in front of a service.
#[derive(Clone)]
pub struct GateLayer(pub Arc<HubState>);

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            hub: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    hub: Arc<HubState>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Gate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let hub = self.hub.clone();
        Box::pin(async move {
            let conn = request.extensions().get::<ConnInfo>().cloned();
            let peer = conn.as_ref().map(|c| c.remote);
            let path = request.uri().path().to_owned();
            let principal = match hub.authenticate(request.headers(), peer, &path).await {
                Ok(p) => p,
                // The body is dropped unread: h2 resets the stream.
                Err(status) => return Ok(status.into_http()),
            };
            if let Some(conn) = &conn {
                conn.authenticated();
            }
            if let Some(limit) = body_limit(&path) {
                // Five bytes of gRPC framing ahead of the message.
                let limit = limit + 5;
                let rpc = path.rsplit('/').next().unwrap_or_default().to_owned();
                request = request.map(|body| {
                    Body::new(Limited {
                        inner: body,
                        left: limit,
                        limit,
                        rpc,
                    })
                });
            }
            request.extensions_mut().insert(principal);
            inner.call(request).await
        })
    }
}

impl HubState {
    /// Turns a request's headers into the site it comes from, asking the
    /// catalog on every call (not cached: a revoked or rotated token is
    /// refused at once, by every hub sharing the catalog; it is one
    /// indexed lookup on a reader).
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
        path: &str,
    ) -> Result<Principal, Status> {
        // A stopping hub starts nothing new.
        if *self.drain.borrow() {
            return Err(shutting_down());
        }
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer)
            .ok_or_else(|| {
                tracing::warn!(?peer, rpc = path, "request without a site token");
                Status::unauthenticated("missing `authorization: Bearer <site token>`")
            })?;
        let hash = token_hash(token);
        let found = self
            .catalog(move |c| {
                c.read(|r| {
                    let Some(site) = r.site_by_token_hash(&hash)? else {
                        return Ok(None);
                    };
                    let tenant = r
                        .tenant(site.tenant)?
                        .ok_or_else(|| CatalogError::Corrupt {
                            what: "sites.tenant",
                            detail: format!("site {} names a tenant that does not exist", site.id),
                        })?;
                    Ok(Some(Principal {
                        site,
                        tenant_name: tenant.name,
                    }))
                })
            })
            .await?;
        found.ok_or_else(|| {
            tracing::warn!(
                ?peer,
                rpc = path,
                "authentication failed: unknown or revoked site token"
            );
            Status::unauthenticated("unknown or revoked site token")
        })
    }
}

/// The principal the gate attached to a request.
pub(crate) fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        // Only a service mounted without the gate gets here.
        .ok_or_else(|| Status::internal("request reached a service without the gate"))
}

/// A request body cut off past its RPC's limit, with an error that names
/// the RPC (tonic finds the `Status` in the body's error and answers it).
struct Limited {
    inner: Body,
    left: usize,
    limit: usize,
    rpc: String,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            if data.len() > self.left {
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "{} request larger than its limit of {} bytes",
                    self.rpc, self.limit
                )))));
            }
            self.left -= data.len();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
