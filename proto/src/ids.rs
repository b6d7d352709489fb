//! Identifiers shared by agent and hub.

use std::fmt;

/// Length in bytes of every Ferry identifier (a BLAKE3 output).
pub const ID_LEN: usize = 32;

/// The id of a stored blob: a data or manifest chunk (keyed BLAKE3 of its
/// plaintext, computed by the agent) or a session header (plain BLAKE3 of the
/// header bytes, so the hub can check it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BlobId(pub [u8; ID_LEN]);

/// A byte string that should have been an id but was not 32 bytes long.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: expected a {ID_LEN}-byte id, got {len} bytes")]
pub struct BadId {
    pub field: &'static str,
    pub len: usize,
}

impl BlobId {
    /// Parses an id received in field `field` of some message.
    pub fn from_slice(field: &'static str, bytes: &[u8]) -> Result<Self, BadId> {
        <[u8; ID_LEN]>::try_from(bytes)
            .map(BlobId)
            .map_err(|_| BadId {
                field,
                len: bytes.len(),
            })
    }

    /// Parses 64 hex digits.
    pub fn from_hex(field: &'static str, text: &str) -> Result<Self, BadId> {
        let bytes = hex::decode(text).map_err(|_| BadId {
            field,
            len: text.len() / 2,
        })?;
        Self::from_slice(field, &bytes)
    }

    /// The plain (unkeyed) BLAKE3 of `bytes`, used for session headers and packs.
    pub fn of_public(bytes: &[u8]) -> Self {
        BlobId(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

/// What a blob holds. Stored beside the blob in the pack index and catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of file or object content.
    Data = 1,
    /// A chunk of an encrypted snapshot manifest.
    Manifest = 2,
    /// An age header that wraps one upload session's file key.
    SessionHeader = 3,
}

impl BlobKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Data),
            2 => Some(Self::Manifest),
            3 => Some(Self::SessionHeader),
            _ => None,
        }
    }
}

/// Bit in a blob's flags: the plaintext was zstd-compressed before encryption.
pub const FLAG_ZSTD: u8 = 1;
