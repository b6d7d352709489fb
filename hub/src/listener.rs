//! The hub's accept loop: caps on connections in all and per address, the
//! TLS handshake under a timeout, and a deadline by which a connection must
//! have carried one authenticated request.
//!
//! tonic's own `TcpIncoming` accepts without limit: an attacker's idle
//! sockets used every file descriptor the process had and a legitimate
//! call hung. Here a connection over a cap is closed at once, a handshake
//! that does not finish in time is dropped, and a connection that never
//! authenticates is closed by its own reads (see [`Conn`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_tls::TlsAcceptor;
use ferry_tls::accept::{Accepted, accept_loop};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// The caps and timeouts of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_per_address: usize,
    /// From accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// From accept to the first authenticated request.
    pub auth_timeout: Duration,
}

/// What the services learn of a connection (a request extension).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Set by the gate once a request on this connection authenticated;
    /// read by the connection's deadline.
    authenticated: Arc<AtomicBool>,
}

impl ConnInfo {
    /// Marks the connection as authenticated: its deadline no longer applies.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }
}

/// An accepted connection, plain or TLS, holding its place under the caps
/// until it is dropped.
pub struct Conn {
    io: Accepted<Slot>,
    info: ConnInfo,
    /// Until the first authenticated request: when it passes, reads fail
    /// and the HTTP/2 server closes the connection.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if this.info.authenticated.load(Ordering::Relaxed) {
                this.deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                tracing::warn!(peer = %this.info.remote, "closing a connection that did not authenticate in time");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no authenticated request in time",
                )));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Counts open connections, in all and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps, given back on drop.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    address: IpAddr,
}

impl Slot {
    /// A place for a connection from `address`, if both caps allow one.
    fn take(counts: &Arc<Mutex<Counts>>, address: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let from_address = c.per_address.get(&address).copied().unwrap_or(0);
        if c.total >= limits.max_connections || from_address >= limits.max_per_address {
            return None;
        }
        c.total += 1;
        c.per_address.insert(address, from_address + 1);
        Some(Slot {
            counts: counts.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&self.address);
            }
        }
    }
}

/// Accepts on `listener` until the returned stream is dropped, handing the
/// server connections that fit the caps and finished their handshake.
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut refused = Refusals::default();
    let admit = move |remote: SocketAddr| {
        let slot = Slot::take(&counts, remote.ip(), &limits);
        if slot.is_none() {
            refused.log(remote.ip(), &limits);
        }
        slot
    };
    let accepted = accept_loop(listener, tls, limits.handshake_timeout, admit);
    ReceiverStream::new(accepted).map(move |a| {
        Ok(Conn {
            info: ConnInfo {
                remote: a.remote,
                authenticated: Arc::new(AtomicBool::new(false)),
            },
            deadline: Some(Box::pin(tokio::time::sleep_until(
                a.accepted_at + limits.auth_timeout,
            ))),
            io: a,
        })
    })
}

/// Logs refused connections at most once a second, with how many.
#[derive(Default)]
struct Refusals {
    since: Option<Instant>,
    count: u64,
}

impl Refusals {
    fn log(&mut self, address: IpAddr, limits: &Limits) {
        self.count += 1;
        let now = Instant::now();
        if self
            .since
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                peer = %address,
                refused = self.count,
                max_connections = limits.max_connections,
                max_per_address = limits.max_per_address,
                "connection refused: over the connection caps"
            );
            self.since = Some(now);
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    async fn listen(
        limits: Limits,
    ) -> (
        SocketAddr,
        Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, Box::pin(incoming(listener, None, limits)))
    }

    fn limits(per_address: usize, auth: Duration) -> Limits {
        Limits {
            max_connections: 100,
            max_per_address: per_address,
            handshake_timeout: Duration::from_secs(5),
            auth_timeout: auth,
        }
    }

    /// The peer's view: the hub closed the connection (EOF or reset).
    async fn closed_by_hub(client: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn connections_over_the_per_address_cap_are_closed_and_places_come_back() {
        let (addr, mut conns) = listen(limits(2, Duration::from_secs(60))).await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let first = conns.next().await.unwrap().unwrap();
        let _second = conns.next().await.unwrap().unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_hub(&mut third).await,
            "a third connection was kept"
        );
        // Another address of the loopback network is counted apart.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let _other = socket.connect(addr).await.unwrap();
        let other = conns.next().await.unwrap().unwrap();
        assert_eq!(other.info.remote.ip().to_string(), "127.0.0.2");
        // A closed connection gives its place back.
        drop(first);
        let _d = TcpStream::connect(addr).await.unwrap();
        let again = tokio::time::timeout(Duration::from_secs(5), conns.next()).await;
        assert!(
            matches!(again, Ok(Some(Ok(_)))),
            "the freed place was not reused"
        );
    }

    #[tokio::test]
    async fn a_connection_without_an_authenticated_call_is_closed_at_its_deadline() {
        let (addr, mut conns) = listen(limits(8, Duration::from_millis(200))).await;
        let _idle = TcpStream::connect(addr).await.unwrap();
        let mut conn = conns.next().await.unwrap().unwrap();
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the deadline did not fire")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // Authenticated in time: the deadline no longer applies.
        let _kept = TcpStream::connect(addr).await.unwrap();
        let mut conn = conns.next().await.unwrap().unwrap();
        conn.connect_info().authenticated();
        let read = tokio::time::timeout(Duration::from_millis(600), conn.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "an authenticated connection was cut: {read:?}"
        );
    }
}
