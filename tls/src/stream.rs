//! A TCP connection with or without TLS, as one type for the servers and
//! clients that take either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `T` is the TLS stream over TCP: `tokio_rustls::server::TlsStream` or
/// `tokio_rustls::client::TlsStream`.
pub enum MaybeTls<T> {
    Plain(TcpStream),
    /// Boxed: a TLS stream holds its buffers inline.
    Tls(Box<T>),
}

/// What TLS runs over: TCP with a read buffer. rustls reads its transport
/// at most 4 KiB at a time (its deframer's read size), so a 16 KiB record
/// took four read syscalls; under the buffer those are copies out of one
/// large read.
pub type Wire = tokio::io::BufReader<TcpStream>;

/// Bytes read from the socket at once under TLS: four full records. Not
/// more: every connection holds one, idle and unauthenticated ones too.
const WIRE_BUFFER: usize = 64 << 10;

/// A TCP connection made ready to carry TLS.
pub fn wire(tcp: TcpStream) -> Wire {
    tokio::io::BufReader::with_capacity(WIRE_BUFFER, tcp)
}

/// The server side's connection.
pub type ServerStream = MaybeTls<tokio_rustls::server::TlsStream<Wire>>;
/// The client side's connection.
pub type ClientStream = MaybeTls<tokio_rustls::client::TlsStream<Wire>>;

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
