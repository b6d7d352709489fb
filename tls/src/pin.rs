//! A hub certificate trusted by pin: the SHA-256 of its DER bytes, as
//! `openssl x509 -outform der | sha256sum` prints it. Trust by pin skips
//! the chain, the names and the dates (the pin names one certificate
//! exactly), but never the handshake signature: the peer must hold the
//! pinned certificate's private key.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::TlsError;

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

impl Pin {
    pub fn of(cert: &CertificateDer<'_>) -> Pin {
        Pin(Sha256::digest(cert.as_ref()).into())
    }

    /// `sha256:<64 hex digits>`; the prefix is optional and colons between
    /// digit pairs (as `openssl x509 -fingerprint` prints them) are allowed.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(value: &str) -> Result<Pin, TlsError> {
        let bad = |reason| TlsError::BadPin {
            value: value.to_owned(),
            reason,
        };
        let trimmed = value.trim();
        let digits = trimmed
            .strip_prefix("sha256:")
            .or_else(|| trimmed.strip_prefix("SHA256:"))
            .unwrap_or(trimmed)
            .replace(':', "");
        if digits.len() != 64 {
            return Err(bad(
                "expected sha256: and 64 hex digits (ferry-hub tls pin prints it)",
            ));
        }
        let mut pin = [0u8; 32];
        hex::decode_to_slice(&digits, &mut pin).map_err(|_| bad("not hexadecimal"))?;
        Ok(Pin(pin))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The hub presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the hub's certificate is {presented}, not the pinned {pinned}")]
pub struct PinMismatch {
    pub pinned: Pin,
    pub presented: Pin,
}

/// Accepts exactly the pinned leaf certificate.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub(crate) fn new(pin: Pin, provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Pin::of(end_entity);
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    pinned: self.pin,
                    presented,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pins_parse_in_the_forms_tools_print() {
        let pin = Pin([0xab; 32]);
        let text = pin.to_string();
        assert_eq!(text, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(Pin::parse(&text).unwrap(), pin);
        assert_eq!(Pin::parse(&"AB".repeat(32)).unwrap(), pin);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Pin::parse(&format!("SHA256:{colons}")).unwrap(), pin);
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            &"zz".repeat(32),
            &"ab".repeat(33),
        ] {
            assert!(
                matches!(Pin::parse(bad), Err(TlsError::BadPin { .. })),
                "{bad:?}"
            );
        }
    }
}
