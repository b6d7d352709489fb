//! Verification reports: a key holder's signed word that copies of blobs
//! open to their ids.
//!
//! The hub cannot open a blob, so it cannot tell a good copy from garbage
//! uploaded under a known id. A copy therefore counts for dedup only at the
//! site that uploaded it, until a key holder (who can open it) has checked
//! it and signed so. The signing key is Ed25519, derived by ferry_crypto
//! from the tenant's age identity, which write-only sites do not hold; the
//! hub keeps the public key per tenant and checks each report against it.
//! This module is what is signed, and the check; it holds no secret.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{BlobId, ID_LEN};

/// The bytes of one copy in a report: the blob id, then the site whose
/// copy it is (big-endian).
pub const COPY_LEN: usize = ID_LEN + 8;

/// The length of a public verifier key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Domain separation: a report's signature can be nothing else's.
const CLAIM_CONTEXT: &[u8] = b"ferry 2026 verified copies v1\0";

/// One copy of a blob: its id, and the hub's number of the site that
/// uploaded it (0 for a copy of no known site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Copy {
    pub id: BlobId,
    pub site: u64,
}

/// The wire form of `copies` (`ReportVerifiedBlobsRequest.copies`).
pub fn encode_copies(copies: &[Copy]) -> Vec<u8> {
    let mut out = Vec::with_capacity(copies.len() * COPY_LEN);
    for c in copies {
        out.extend_from_slice(&c.id.0);
        out.extend_from_slice(&c.site.to_be_bytes());
    }
    out
}

/// Why a report's bytes are not a report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("{len} bytes of copies is not a whole number of {COPY_LEN}-byte copies")]
    TornCopies { len: usize },
    #[error("the signature has {len} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength { len: usize },
    #[error("the verifier key has {len} bytes, expected {PUBLIC_KEY_LEN}")]
    KeyLength { len: usize },
    #[error("the verifier key is not an Ed25519 public key")]
    BadKey,
    #[error("the verifier key is not hex (64 hex digits)")]
    NotHex,
    #[error("the signature is not the tenant verifier's over these copies")]
    BadSignature,
}

/// Decodes `ReportVerifiedBlobsRequest.copies`.
///
/// # Errors
///
/// `TornCopies` for a length that is not a multiple of [`COPY_LEN`].
pub fn decode_copies(bytes: &[u8]) -> Result<Vec<Copy>, ReportError> {
    if !bytes.len().is_multiple_of(COPY_LEN) {
        return Err(ReportError::TornCopies { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(COPY_LEN)
        .map(|c| {
            let (id, site) = c.split_at(ID_LEN);
            let mut raw = [0; ID_LEN];
            raw.copy_from_slice(id);
            let mut s = [0; 8];
            s.copy_from_slice(site);
            Copy {
                id: BlobId(raw),
                site: u64::from_be_bytes(s),
            }
        })
        .collect())
}

/// What a report signs: the tenant's name (so a report is not replayed at
/// another tenant with the same key) and the encoded copies.
pub fn claim(tenant: &str, encoded_copies: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLAIM_CONTEXT.len() + 8 + tenant.len() + encoded_copies.len());
    out.extend_from_slice(CLAIM_CONTEXT);
    out.extend_from_slice(&(tenant.len() as u64).to_le_bytes());
    out.extend_from_slice(tenant.as_bytes());
    out.extend_from_slice(encoded_copies);
    out
}

/// Checks that `signature` is `public_key`'s over `claim(tenant, copies)`.
///
/// # Errors
///
/// `KeyLength`/`BadKey` for a key that is no Ed25519 public key,
/// `SignatureLength` for a signature of the wrong size, `BadSignature` for
/// one the key did not make over these bytes.
pub fn check(
    public_key: &[u8],
    tenant: &str,
    encoded_copies: &[u8],
    signature: &[u8],
) -> Result<(), ReportError> {
    let key = <[u8; PUBLIC_KEY_LEN]>::try_from(public_key).map_err(|_| ReportError::KeyLength {
        len: public_key.len(),
    })?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| ReportError::BadKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| ReportError::SignatureLength {
        len: signature.len(),
    })?;
    // Strict: no malleable signatures, no small-order keys.
    key.verify_strict(&claim(tenant, encoded_copies), &signature)
        .map_err(|_| ReportError::BadSignature)
}

/// Parses a verifier public key as the CLI prints it (64 hex digits).
///
/// # Errors
///
/// `NotHex` for text that is not hex, `KeyLength` for hex of anything but
/// 32 bytes, `BadKey` for bytes that are no Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<[u8; PUBLIC_KEY_LEN], ReportError> {
    let bytes = hex::decode(text.trim()).map_err(|_| ReportError::NotHex)?;
    let key = <[u8; PUBLIC_KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| ReportError::KeyLength { len: bytes.len() })?;
    VerifyingKey::from_bytes(&key).map_err(|_| ReportError::BadKey)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip_and_torn_ones_are_refused() {
        let copies = [
            Copy {
                id: BlobId([7; 32]),
                site: 3,
            },
            Copy {
                id: BlobId([9; 32]),
                site: 0,
            },
        ];
        let bytes = encode_copies(&copies);
        assert_eq!(bytes.len(), 2 * COPY_LEN);
        assert_eq!(decode_copies(&bytes).unwrap(), copies);
        assert_eq!(
            decode_copies(&bytes[1..]),
            Err(ReportError::TornCopies { len: 79 })
        );
    }

    #[test]
    fn the_claim_binds_the_tenant() {
        assert_ne!(claim("a", b"xy"), claim("ax", b"y"));
    }

    #[test]
    fn bad_keys_and_signatures_are_refused_by_kind() {
        assert_eq!(
            check(&[1; 31], "t", b"", &[0; 64]),
            Err(ReportError::KeyLength { len: 31 })
        );
        // The identity point is of small order: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(check(&identity, "t", b"", &[0; 64]).is_err());
        assert_eq!(parse_public_key("zz"), Err(ReportError::NotHex));
        assert!(parse_public_key(&"00".repeat(31)).is_err());
    }
}
