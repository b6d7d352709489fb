//! What the hub writes to its pools beside the packs, so the pools alone
//! hold its whole state and `ferry-hub recover` can rebuild a lost catalog:
//!
//! - [`segment`]: one object per journal commit, written before the commit
//!   is acknowledged: a plaintext header (tenant, bucket, site, sequence,
//!   time, manifest and referenced chunk ids) and the agent's encrypted body.
//! - [`refs`]: the parts of a commit's referenced chunk ids that arrived in
//!   `CheckReferences` calls before the commit, each an object of its own
//!   that the segment lists by hash.
//! - [`namespace`]: one object per namespace change (tenant, site with its
//!   token hash, bucket and its source), the full state of the entity after
//!   the change.
//!
//! Every record is sealed the same way ([`seal`]): a magic naming its
//! kind, the payload, and the BLAKE3 of both, so a damaged object is told
//! from a valid one without any key. Names use tenant, site and bucket
//! *names*, never catalog ids, which a rebuilt catalog assigns anew.

pub mod codec;
pub mod namespace;
pub mod refs;
pub mod segment;
pub mod writer;

pub use codec::RecordError;
pub use namespace::{Change, NamespaceRecord};
pub use segment::Segment;
pub use writer::{RecordWriter, WriteError};

/// Length of the BLAKE3 seal at the end of every record.
const SEAL_LEN: usize = 32;
/// Length of every record's magic.
const MAGIC_LEN: usize = 8;

/// `magic | payload | BLAKE3(magic | payload)`.
fn seal(magic: &[u8; MAGIC_LEN], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC_LEN + payload.len() + SEAL_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(payload);
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// Checks a sealed record's magic and hash and returns its payload.
///
/// # Errors
///
/// `TooShort`, `BadMagic` or `HashMismatch`.
fn unseal<'a>(
    record: &'static str,
    magic: &[u8; MAGIC_LEN],
    bytes: &'a [u8],
) -> Result<&'a [u8], RecordError> {
    if bytes.len() < MAGIC_LEN + SEAL_LEN {
        return Err(RecordError::TooShort {
            record,
            len: bytes.len(),
        });
    }
    let (body, seal) = bytes.split_at(bytes.len() - SEAL_LEN);
    if &body[..MAGIC_LEN] != magic {
        return Err(RecordError::BadMagic {
            record,
            found: body[..MAGIC_LEN].escape_ascii().to_string(),
        });
    }
    if blake3::hash(body).as_bytes() != seal {
        return Err(RecordError::HashMismatch { record });
    }
    Ok(&body[MAGIC_LEN..])
}

/// The first 16 hex digits of the BLAKE3 of `bytes`: what makes a record's
/// object name unique to its content.
fn short_hash(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hex::encode(&hash.as_bytes()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_unseals_and_any_flip_is_caught() {
        let sealed = seal(b"FERRYTS1", b"payload");
        assert_eq!(unseal("test", b"FERRYTS1", &sealed).unwrap(), b"payload");
        for pos in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[pos] ^= 0x20;
            assert!(unseal("test", b"FERRYTS1", &bad).is_err(), "flip at {pos}");
        }
        for len in 0..sealed.len() {
            assert!(unseal("test", b"FERRYTS1", &sealed[..len]).is_err());
        }
        assert!(matches!(
            unseal("test", b"FERRYXX1", &sealed),
            Err(RecordError::BadMagic { .. })
        ));
    }
}
