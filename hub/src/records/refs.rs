//! Reference parts: data chunk ids a commit references that the agent sent
//! in `CheckReferences` calls before the commit (a snapshot of a million
//! files references a million chunks, 32 MiB of ids, sent in parts). The
//! hub stores each checked part as an object and the commit's segment
//! lists the parts by hash.
//!
//! Layout, sealed (see [`super::seal`]) with magic `FERRYRF1`:
//! `ids count u32 | ids [32]...`. The object name is
//! `refs/<tenant>/<BLAKE3 of the sealed bytes, hex>.ids`.

use ferry_proto::BlobId;

use super::codec::{Decoder, Encoder};
use super::{RecordError, seal, unseal};

const MAGIC: &[u8; 8] = b"FERRYRF1";
const RECORD: &str = "reference part";

/// The sealed bytes of a part of `ids`, and their hash (which names them).
///
/// # Errors
///
/// `TooLong` if there are more ids than a `u32` counts.
pub fn encode(ids: &[BlobId]) -> Result<([u8; 32], Vec<u8>), RecordError> {
    let mut e = Encoder::new(RECORD, 4 + ids.len() * 32);
    e.ids("ids", ids)?;
    let bytes = seal(MAGIC, &e.finish());
    Ok((*blake3::hash(&bytes).as_bytes(), bytes))
}

/// The object name of the part hashing to `hash`, of `tenant`.
pub fn object_name(tenant: &str, hash: &[u8; 32]) -> String {
    format!("refs/{tenant}/{}.ids", hex::encode(hash))
}

/// Decodes a part read from a pool under the name of `hash`.
///
/// # Errors
///
/// `HashMismatch` if the bytes are not those `hash` names; any other
/// [`RecordError`] for damage. Never panics, whatever the bytes.
pub fn decode(hash: &[u8; 32], bytes: &[u8]) -> Result<Vec<BlobId>, RecordError> {
    if blake3::hash(bytes).as_bytes() != hash {
        return Err(RecordError::HashMismatch { record: RECORD });
    }
    let mut d = Decoder::new(RECORD, unseal(RECORD, MAGIC, bytes)?);
    let ids = d.ids("ids")?;
    d.finish()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_round_trips_under_its_hash_only() {
        let ids = vec![BlobId([1; 32]), BlobId([2; 32])];
        let (hash, bytes) = encode(&ids).unwrap();
        assert_eq!(decode(&hash, &bytes).unwrap(), ids);
        assert!(decode(&[0; 32], &bytes).is_err());
        let name = object_name("acme", &hash);
        crate::blobstore::validate_name(&name).unwrap();
        assert!(name.starts_with("refs/acme/") && name.ends_with(".ids"));
    }
}
