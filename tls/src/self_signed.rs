//! A self-signed certificate for a hub without a CA: the agents pin it.

use rcgen::{CertificateParams, KeyPair};

use crate::TlsError;
use crate::pin::Pin;

/// A certificate, its key (both PEM) and its pin.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub pin: Pin,
}

/// A certificate for `names` (DNS names or IP addresses), ECDSA P-256,
/// valid from now for ten years: it is trusted by pin, so rotation is the
/// operator's choice, not the calendar's.
///
/// # Errors
/// A name is not a valid subject alternative name, or key generation fails.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 24 * 3600)).into();
    let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(SelfSigned {
        pin: Pin::of(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
