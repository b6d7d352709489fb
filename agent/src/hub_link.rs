//! How the agent reaches its hub: the address, TLS, and the connector
//! that dials it.
//!
//! The agent brings its own connector rather than tonic's: tonic, built
//! without a TLS feature, would carry an `https://` address over plaintext
//! without a word (the site token was read off the wire that way). Here an
//! `https://` hub without `[tls]` is an error, and `http://` goes only to
//! loopback unless the config says `insecure-plaintext = true`.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_tls::{ClientIdentity, ClientStream, MaybeTls, ServerName, TlsConnector, Trust};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::Uri;

use crate::config::AgentTlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("hub address {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "hub address {url:?} is https:// but the config has no [tls] table: \
         say how the hub's certificate is trusted (ca-file or pin)"
    )]
    HttpsWithoutTls { url: String },
    #[error(
        "hub address {url:?} is http://, but [tls] is configured: write https:// \
         (a configured [tls] is never skipped)"
    )]
    TlsWithoutHttps { url: String },
    #[error(
        "hub address {url:?}: plaintext to a host that is not loopback sends the site \
         token readable; use https:// with [tls], or set insecure-plaintext = true"
    )]
    PlaintextOffLoopback { url: String },
    #[error("tls: {0}")]
    Tls(#[from] ferry_tls::TlsError),
}

/// Where the hub is and how to talk to it.
#[derive(Clone)]
pub struct HubLink {
    /// As configured, for messages.
    pub url: String,
    pub(crate) uri: Uri,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl HubLink {
    /// Checks `url` against the TLS settings and builds the TLS client.
    ///
    /// # Errors
    /// A malformed address, an `https://` hub without `[tls]` (or `[tls]`
    /// with `http://`), plaintext off loopback without
    /// `insecure_plaintext`, or TLS files that cannot be read.
    pub fn new(
        url: &str,
        tls: Option<&AgentTlsConfig>,
        insecure_plaintext: bool,
    ) -> Result<HubLink, LinkError> {
        let bad = |reason: &str| LinkError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri = url.parse::<Uri>().map_err(|e| bad(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("expected http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        // Uri keeps an IPv6 literal's brackets; sockets and TLS want none.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, tls) {
            (true, None) => {
                return Err(LinkError::HttpsWithoutTls {
                    url: url.to_owned(),
                });
            }
            (false, Some(_)) => {
                return Err(LinkError::TlsWithoutHttps {
                    url: url.to_owned(),
                });
            }
            (false, None) => {
                if !is_loopback(&host) && !insecure_plaintext {
                    return Err(LinkError::PlaintextOffLoopback {
                        url: url.to_owned(),
                    });
                }
                None
            }
            (true, Some(config)) => Some(connector(&host, config)?),
        };
        Ok(HubLink {
            url: url.to_owned(),
            uri,
            host,
            port,
            tls,
        })
    }

    /// The link `config` describes (`hub`, `[tls]`, `insecure-plaintext`).
    ///
    /// # Errors
    /// As [`HubLink::new`].
    pub fn of(config: &crate::config::AgentConfig) -> Result<HubLink, LinkError> {
        Self::new(&config.hub, config.tls.as_ref(), config.insecure_plaintext)
    }

    /// Whether the link is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connector tonic dials through, each dial bounded by `timeout`
    /// (TCP and the TLS handshake together).
    pub(crate) fn dialer(&self, timeout: Duration) -> Dialer {
        Dialer {
            link: Arc::new(self.clone()),
            timeout,
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS client for `config`, checking the certificate for
/// `server-name` or else the address's host.
fn connector(
    host: &str,
    config: &AgentTlsConfig,
) -> Result<(TlsConnector, ServerName<'static>), LinkError> {
    let trust = match (&config.ca_file, &config.pin) {
        (Some(ca), _) => Trust::CaFile(ca.clone()),
        // The config checked that exactly one is given, and the pin's form.
        (None, Some(pin)) => Trust::Pin(ferry_tls::Pin::parse(pin)?),
        (None, None) => {
            return Err(ferry_tls::TlsError::BadPin {
                value: String::new(),
                reason: "give ca-file or pin in [tls]",
            }
            .into());
        }
    };
    let identity = match (&config.cert_file, &config.key_file) {
        (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }),
        _ => None,
    };
    let client = ferry_tls::client_config(&trust, identity.as_ref(), &[ferry_tls::ALPN_H2])?;
    let name = config.server_name.as_deref().unwrap_or(host);
    let name =
        ServerName::try_from(name.to_owned()).map_err(|_| ferry_tls::TlsError::BadServerName {
            name: name.to_owned(),
        })?;
    Ok((TlsConnector::from(client), name))
}

/// Dials the hub: TCP, then TLS when the link has it.
#[derive(Clone)]
pub(crate) struct Dialer {
    link: Arc<HubLink>,
    timeout: Duration,
}

type DialFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientStream>>> + Send>>;

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = DialFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> DialFuture {
        let link = self.link.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let dial = async {
                let tcp = TcpStream::connect((link.host.as_str(), link.port)).await?;
                // Small answers after large requests would wait out Nagle.
                tcp.set_nodelay(true)?;
                match &link.tls {
                    None => Ok(MaybeTls::Plain(tcp)),
                    Some((connector, name)) => {
                        let tls = connector
                            .connect(name.clone(), ferry_tls::wire(tcp))
                            .await?;
                        Ok(MaybeTls::Tls(Box::new(tls)))
                    }
                }
            };
            match tokio::time::timeout(timeout, dial).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no connection to {}:{} within {}s",
                        link.host,
                        link.port,
                        timeout.as_secs()
                    ),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> AgentTlsConfig {
        AgentTlsConfig {
            ca_file: None,
            pin: Some(format!("sha256:{}", "ab".repeat(32))),
            cert_file: None,
            key_file: None,
            server_name: None,
        }
    }

    #[test]
    fn https_needs_tls_and_plaintext_stays_on_loopback() {
        let err = |url: &str, tls: Option<&AgentTlsConfig>, insecure: bool| {
            HubLink::new(url, tls, insecure)
                .err()
                .map(|e| e.to_string())
        };
        let tls = pinned();
        assert!(
            err("https://hub.example:7420", None, false)
                .is_some_and(|e| e.contains("no [tls] table"))
        );
        assert!(
            err("http://hub.example:7420", Some(&tls), false)
                .is_some_and(|e| e.contains("write https://"))
        );
        assert!(
            err("http://192.0.2.7:7420", None, false)
                .is_some_and(|e| e.contains("insecure-plaintext"))
        );
        assert!(err("http://192.0.2.7:7420", None, true).is_none());
        for local in [
            "http://127.0.0.1:7420",
            "http://[::1]:7420",
            "http://localhost:7420",
        ] {
            assert!(err(local, None, false).is_none(), "{local}");
        }
        assert!(err("ftp://hub:1", None, false).is_some_and(|e| e.contains("http://")));
        let link = HubLink::new("https://hub.example:7420", Some(&tls), false).unwrap();
        assert!(link.is_tls());
        assert_eq!((link.host.as_str(), link.port), ("hub.example", 7420));
    }
}
