//! rustls configs for both ends of a link.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::pin::{Pin, PinVerifier};
use crate::{TlsError, pem, provider};

/// How a client trusts the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A chain to a CA in this PEM file, for the name the client dialled.
    CaFile(PathBuf),
    /// Exactly this certificate.
    Pin(Pin),
}

/// A certificate and key a client presents (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A server's config: its chain and key and, for mutual TLS, the CA every
/// client's certificate must chain to (without one, clients present none).
///
/// # Errors
/// A file cannot be read or parsed, or the key does not match the certificate.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = pem::certificates("certificate file", cert_file)?;
    let key = pem::private_key("key file", key_file)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = roots("client CA file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Pem {
                    what: "client CA file",
                    path: ca.to_path_buf(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "certificate and key (do they belong together?)",
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client's config: trust by CA or pin, and a certificate to present
/// when the server asks for one.
///
/// # Errors
/// A file cannot be read or parsed, or the key does not match the certificate.
pub fn client_config(
    trust: &Trust,
    identity: Option<&ClientIdentity>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?;
    let builder = match trust {
        Trust::CaFile(path) => builder.with_root_certificates(roots("CA file", path)?),
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier::new(*pin, provider))),
    };
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                pem::certificates("client certificate file", &id.cert_file)?,
                pem::private_key("client key file", &id.key_file)?,
            )
            .map_err(|source| TlsError::Rustls {
                what: "client certificate and key (do they belong together?)",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file as a trust anchor.
fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in pem::certificates(what, path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{ALPN_H2, SelfSigned, ServerName, TlsAcceptor, TlsConnector, self_signed};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Files {
        _dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
        made: SelfSigned,
    }

    fn files(name: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let made = self_signed(&[name.to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &made.cert_pem).unwrap();
        std::fs::write(&key, &made.key_pem).unwrap();
        Files {
            _dir: dir,
            cert,
            key,
            made,
        }
    }

    /// One handshake over an in-memory pipe, then a byte each way.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(), String> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let serving = tokio::spawn(async move {
            let mut tls = TlsAcceptor::from(server).accept(b).await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            tls.write_all(&byte).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let client = async {
            let mut tls = TlsConnector::from(client).connect(name, a).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
            // The cheaper of TLS 1.3's AES suites is the one agreed.
            assert_eq!(
                tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
                Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            );
            tls.write_all(b"x").await?;
            tls.flush().await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        let served = serving.await.unwrap();
        client.map_err(|e| e.to_string())?;
        served.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_pinned_or_ca_trusted_server_is_reached_and_a_wrong_pin_is_refused() {
        let hub = files("hub.example");
        let server = server_config(&hub.cert, &hub.key, None, &[ALPN_H2]).unwrap();
        let pinned = client_config(&Trust::Pin(hub.made.pin), None, &[ALPN_H2]).unwrap();
        handshake(server.clone(), pinned.clone(), "hub.example")
            .await
            .unwrap();
        // A pin ignores the name dialled; a CA chain does not.
        handshake(server.clone(), pinned, "10.1.2.3").await.unwrap();
        let by_ca = client_config(&Trust::CaFile(hub.cert.clone()), None, &[ALPN_H2]).unwrap();
        handshake(server.clone(), by_ca.clone(), "hub.example")
            .await
            .unwrap();
        let err = handshake(server.clone(), by_ca, "other.example")
            .await
            .unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");

        let other = files("hub.example");
        let wrong = client_config(&Trust::Pin(other.made.pin), None, &[ALPN_H2]).unwrap();
        let err = handshake(server, wrong, "hub.example").await.unwrap_err();
        assert!(
            err.contains(&hub.made.pin.to_string()) && err.contains(&other.made.pin.to_string()),
            "the error names both pins: {err}"
        );
    }

    #[tokio::test]
    async fn mutual_tls_refuses_a_client_without_a_certificate_from_the_ca() {
        let hub = files("hub.example");
        let site = files("site-a");
        let stranger = files("site-a");
        let server = server_config(&hub.cert, &hub.key, Some(&site.cert), &[ALPN_H2]).unwrap();
        let trust = Trust::Pin(hub.made.pin);
        let with = |f: &Files| ClientIdentity {
            cert_file: f.cert.clone(),
            key_file: f.key.clone(),
        };
        let good = client_config(&trust, Some(&with(&site)), &[ALPN_H2]).unwrap();
        handshake(server.clone(), good, "hub.example")
            .await
            .unwrap();
        let none = client_config(&trust, None, &[ALPN_H2]).unwrap();
        assert!(
            handshake(server.clone(), none, "hub.example")
                .await
                .is_err()
        );
        let foreign = client_config(&trust, Some(&with(&stranger)), &[ALPN_H2]).unwrap();
        assert!(handshake(server, foreign, "hub.example").await.is_err());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = files("a.example");
        let b = files("b.example");
        let err = server_config(&a.cert, &b.key, None, &[ALPN_H2]).unwrap_err();
        assert!(matches!(err, TlsError::Rustls { .. }), "{err}");
    }
}
