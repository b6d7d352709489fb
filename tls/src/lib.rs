//! TLS for Ferry's links (agent to hub, S3 senders to the agent's webhook),
//! on rustls with the aws-lc-rs provider.
//!
//! - [`pem`]: certificates and private keys from PEM files, each error
//!   naming its file.
//! - [`pin`]: a hub certificate trusted by the SHA-256 of its DER bytes, for
//!   hubs without a CA (what `ferry-hub tls init` prints).
//! - [`configs`]: the server side (certificate, key, optional client CA for
//!   mutual TLS) and the client side (trust by CA file or by pin, optional
//!   client certificate), both speaking HTTP/2 by ALPN.
//! - [`self_signed`]: a certificate and key for a hub's names.
//! - [`stream`]: a TCP connection with or without TLS, as one type.
//! - [`accept`]: an accept loop that admits, then handshakes off the loop.

pub mod accept;
pub mod configs;
pub mod pem;
pub mod pin;
mod self_signed;
pub mod stream;

pub use configs::{ClientIdentity, Trust, client_config, server_config};
pub use pin::Pin;
pub use rustls::pki_types::ServerName;
pub use self_signed::{SelfSigned, self_signed};
pub use stream::{ClientStream, MaybeTls, ServerStream, Wire, wire};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

use std::path::PathBuf;

/// What went wrong setting TLS up; every variant names its file or value.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {reason}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("certificate pin {value:?}: {reason}")]
    BadPin { value: String, reason: &'static str },
    #[error("server name {name:?}: not a DNS name or IP address")]
    BadServerName { name: String },
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("self-signed certificate: {0}")]
    Generate(String),
}

/// The ALPN protocol id of HTTP/2: gRPC needs it agreed in the handshake.
pub const ALPN_H2: &[u8] = b"h2";
/// HTTP/1.1, which the webhook speaks.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The process-wide crypto provider: aws-lc-rs, AES-128-GCM first. What
/// crosses the link is ciphertext already (age payloads), so the link's
/// cipher costs the backup its time on every byte: AES-128 takes 10 rounds
/// to AES-256's 14, and both ends offering it first makes it the one agreed.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    std::sync::Arc::new(provider)
}
