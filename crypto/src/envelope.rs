//! One age header per upload session, one age payload per chunk.
//!
//! A session draws one file key and wraps it once for the tenant's recipients; every
//! chunk is then an age payload under that key, so `header ‖ chunk` is a complete
//! age file (an auditor can use the stock `age` CLI) while each chunk costs only
//! 32 bytes of overhead instead of a whole header.

use std::fmt;
use std::sync::Arc;

use age::Identity as _;
use age::Recipient as _;
use age_core::format::{FILE_KEY_BYTES, FileKey};
use rand::RngCore;
use rand::rngs::OsRng;

use crate::header;
use crate::keyfile::TenantKeys;
use crate::stream::{self, StreamError};

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// age refused to wrap the file key for a recipient.
    #[error("wrapping the session file key for recipient {recipient}: {reason}")]
    Wrap { recipient: String, reason: String },
    /// The header MAC could not be keyed (should not happen: HMAC takes any key).
    #[error("computing the age header MAC: {0}")]
    Mac(String),
    /// OpenSSL's ChaCha20-Poly1305 could not be set up or run.
    #[error("encrypting a chunk: {0}")]
    Cipher(String),
}

/// Why a header or a payload did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The key file holds no identity.
    #[error("this key file is write-only (no identity): it can back up but not restore")]
    NoIdentity,
    /// The header bytes are not a well-formed age v1 header.
    #[error("malformed age header: {0}")]
    MalformedHeader(String),
    /// The header bytes were followed by more bytes.
    #[error("age header has {0} unexpected trailing bytes after the MAC line")]
    HeaderTrailingBytes(usize),
    /// No stanza is addressed to this tenant's identity.
    #[error(
        "age header: no recipient stanza unwraps with this tenant's identity (encrypted for another key?)"
    )]
    NoMatchingStanza,
    /// A stanza for this identity's type is invalid.
    #[error("age header: invalid recipient stanza: {0}")]
    BadStanza(String),
    /// The header MAC does not match the unwrapped file key.
    #[error("age header: MAC mismatch (the header was modified)")]
    BadMac,
    /// The payload is structurally wrong (too short, missing or empty pieces).
    #[error("age payload: {0}")]
    MalformedPayload(String),
    /// A payload piece failed authentication.
    #[error(
        "age payload: piece {piece} failed authentication (tampered, truncated, reordered, or sealed under another session header)"
    )]
    PieceAuth { piece: u64 },
    /// OpenSSL's ChaCha20-Poly1305 could not be set up (says nothing about the payload).
    #[error("age payload: the cipher could not be set up: {0}")]
    Cipher(String),
}

impl From<StreamError> for OpenError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Malformed(m) => OpenError::MalformedPayload(m),
            StreamError::Auth(piece) => OpenError::PieceAuth { piece },
            StreamError::Cipher(reason) => OpenError::Cipher(reason),
        }
    }
}

/// Seals chunks for one upload session. Send + Sync: share it across threads.
pub struct SessionSealer {
    file_key: FileKey,
    nonces: stream::NonceSequence,
    header: Vec<u8>,
}

impl SessionSealer {
    /// The complete age v1 header for this session.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Encrypts one chunk as an age payload under the session file key:
    /// `nonce ‖ STREAM pieces`. `header() ‖ seal(x)` is a valid age file.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        stream::seal(&self.file_key, &self.nonces, plaintext)
            .map_err(|e| SealError::Cipher(e.to_string()))
    }
}

impl fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSealer")
            .field("header_len", &self.header.len())
            .finish_non_exhaustive()
    }
}

/// Opens chunks sealed under one session header. Cheap to clone, Send + Sync.
#[derive(Clone)]
pub struct SessionOpener {
    file_key: Arc<FileKey>,
}

impl SessionOpener {
    /// Decrypts one payload (`nonce ‖ STREAM pieces`). Any tampering, truncation,
    /// trailing bytes or wrong session gives an error.
    pub fn open(&self, payload: &[u8]) -> Result<Vec<u8>, OpenError> {
        Ok(stream::open(&self.file_key, payload)?)
    }
}

impl fmt::Debug for SessionOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionOpener").finish_non_exhaustive()
    }
}

/// Length of the age header at the start of a whole age file, so the file can be
/// split into `header ‖ payload` (e.g. for files made by the stock `age` CLI).
pub fn header_len(age_file: &[u8]) -> Result<usize, OpenError> {
    Ok(header::parse(age_file)
        .map_err(OpenError::MalformedHeader)?
        .len)
}

impl TenantKeys {
    /// New upload session: a fresh random file key and a header wrapping it for the
    /// tenant recipient and every escrow recipient.
    pub fn sealer(&self) -> Result<SessionSealer, SealError> {
        let file_key = FileKey::init_with_mut(|k: &mut [u8; FILE_KEY_BYTES]| OsRng.fill_bytes(k));
        let mut stanzas = Vec::new();
        for recipient in std::iter::once(self.age_recipient()).chain(self.age_escrow()) {
            // X25519 returns no labels, so stanzas from several recipients combine.
            let (mut wrapped, _labels) =
                recipient
                    .wrap_file_key(&file_key)
                    .map_err(|e| SealError::Wrap {
                        recipient: recipient.to_string(),
                        reason: e.to_string(),
                    })?;
            stanzas.append(&mut wrapped);
        }
        let header =
            header::write(&stanzas, &file_key).map_err(|e| SealError::Mac(e.to_string()))?;
        Ok(SessionSealer {
            file_key,
            nonces: stream::NonceSequence::random(),
            header,
        })
    }

    /// Opens a session header (exactly the bytes of [`SessionSealer::header`]).
    pub fn opener(&self, header: &[u8]) -> Result<SessionOpener, OpenError> {
        let identity = self.age_identity().ok_or(OpenError::NoIdentity)?;
        let parsed = header::parse(header).map_err(OpenError::MalformedHeader)?;
        if parsed.len != header.len() {
            return Err(OpenError::HeaderTrailingBytes(header.len() - parsed.len));
        }
        let file_key = match identity.unwrap_stanzas(&parsed.stanzas) {
            None => return Err(OpenError::NoMatchingStanza),
            Some(Err(e)) => return Err(OpenError::BadStanza(e.to_string())),
            Some(Ok(key)) => key,
        };
        if !header::verify_mac(&file_key, header, &parsed) {
            return Err(OpenError::BadMac);
        }
        Ok(SessionOpener {
            file_key: Arc::new(file_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sealer_and_opener_are_send_sync() {
        assert_send_sync::<SessionSealer>();
        assert_send_sync::<SessionOpener>();
        assert_send_sync::<TenantKeys>();
    }

    #[test]
    fn header_len_finds_payload_start() {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().unwrap();
        let mut file = sealer.header().to_vec();
        file.extend_from_slice(&sealer.seal(b"hello").unwrap());
        assert_eq!(header_len(&file).unwrap(), sealer.header().len());
    }

    #[test]
    fn opener_refuses_header_with_trailing_bytes() {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().unwrap();
        let mut header = sealer.header().to_vec();
        header.push(b'x');
        assert_eq!(
            keys.opener(&header).err(),
            Some(OpenError::HeaderTrailingBytes(1))
        );
    }

    #[test]
    fn no_two_payloads_share_a_nonce() {
        let keys = TenantKeys::generate();
        let (first, second) = (keys.sealer().unwrap(), keys.sealer().unwrap());
        let nonce = |payload: Vec<u8>| payload[..stream::NONCE_LEN].to_vec();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            assert!(seen.insert(nonce(first.seal(b"same").unwrap())));
            assert!(seen.insert(nonce(second.seal(b"same").unwrap())));
        }
        // And each still opens.
        let opener = keys.opener(first.header()).unwrap();
        assert_eq!(opener.open(&first.seal(b"same").unwrap()).unwrap(), b"same");
    }
}
