//! An accept loop for the servers (the hub's gRPC listener, the agent's
//! webhook): each connection admitted or closed at once, then its TLS
//! handshake run on a task of its own under a timeout, so a slow or silent
//! peer never holds up the accepts of others.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{MaybeTls, ServerStream, TlsAcceptor};

/// A connection ready for the server, with what admitted it.
pub struct Accepted<G> {
    pub stream: ServerStream,
    pub remote: SocketAddr,
    /// What `admit` returned for it (a place under a cap, say), held as
    /// long as the connection.
    pub guard: G,
    pub accepted_at: Instant,
}

/// Accepts on `listener` until the receiver is dropped (which closes the
/// listening socket). `admit` sees each peer first: `None` closes the
/// connection at once. Handshakes that fail or outlast `handshake_timeout`
/// are logged and dropped.
pub fn accept_loop<G, A>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    mut admit: A,
) -> mpsc::Receiver<Accepted<G>>
where
    G: Send + 'static,
    A: FnMut(SocketAddr) -> Option<G> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(guard) = admit(remote) else {
                continue;
            };
            // Without it a small answer after a large one waits out Nagle
            // and the peer's delayed ACK (40 ms here).
            let _ = tcp.set_nodelay(true);
            let accepted_at = Instant::now();
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream = match tls {
                    None => MaybeTls::Plain(tcp),
                    Some(acceptor) => {
                        match tokio::time::timeout(
                            handshake_timeout,
                            acceptor.accept(crate::wire(tcp)),
                        )
                        .await
                        {
                            Ok(Ok(s)) => MaybeTls::Tls(Box::new(s)),
                            Ok(Err(e)) => {
                                tracing::warn!(peer = %remote, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(peer = %remote, "TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                let _ = tx
                    .send(Accepted {
                        stream,
                        remote,
                        guard,
                        accepted_at,
                    })
                    .await;
            });
        }
    });
    rx
}

/// The connection itself: reads and writes go to the stream (the guard
/// only rides along).
impl<G: Unpin> AsyncRead for Accepted<G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<G: Unpin> AsyncWrite for Accepted<G> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
