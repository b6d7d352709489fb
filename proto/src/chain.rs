//! What a commit's MAC covers, byte for byte.
//!
//! A bucket's commits form a chain: commit `n`'s MAC covers its bucket, its
//! sequence number, commit `n - 1`'s MAC and its content, under a key the
//! hub never holds (ferry_crypto derives it from the tenant's dedup key, so
//! a write-only site can sign). A hub or catalog that drops, reorders or
//! swaps commits between buckets breaks the chain where an agent checks it.
//! This module is key-free: the hub uses it to give listings the manifest
//! digest, the agent to build what it signs.

use crate::BlobId;

/// The length of a commit MAC.
pub const MAC_LEN: usize = 32;

/// The parent MAC of a bucket's first commit.
pub const GENESIS: [u8; MAC_LEN] = [0; MAC_LEN];

/// Domain separation for the manifest and body digests.
const MANIFEST_CONTEXT: &[u8] = b"ferry 2026 commit manifest\0";
const BODY_CONTEXT: &[u8] = b"ferry 2026 commit body\0";
const CLAIM_CONTEXT: &[u8] = b"ferry 2026 commit v1\0";

/// The digest of a commit's manifest chunk ids, in order. Listings carry it
/// instead of the ids, which are fetched for the one commit restored.
pub fn manifest_digest(ids: &[BlobId]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(MANIFEST_CONTEXT);
    h.update(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        h.update(&id.0);
    }
    *h.finalize().as_bytes()
}

/// The digest of a commit's body.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(BODY_CONTEXT);
    h.update(body);
    *h.finalize().as_bytes()
}

/// Everything a commit's MAC covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitClaim<'a> {
    /// The global bucket name, "tenant/bucket".
    pub bucket: &'a str,
    pub seq: u64,
    /// The MAC of commit `seq - 1`, or [`GENESIS`] for the first.
    pub parent: [u8; MAC_LEN],
    /// "snapshot" or "batch".
    pub kind: &'a str,
    pub manifest_digest: [u8; 32],
    pub body_digest: [u8; 32],
    pub files: u64,
    pub bytes: u64,
}

impl CommitClaim<'_> {
    /// The canonical bytes the MAC is computed over: every variable-length
    /// field is length-prefixed, so no two claims encode alike.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIM_CONTEXT.len() + 200 + self.bucket.len());
        out.extend_from_slice(CLAIM_CONTEXT);
        out.extend_from_slice(&(self.bucket.len() as u64).to_le_bytes());
        out.extend_from_slice(self.bucket.as_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.parent);
        out.extend_from_slice(&(self.kind.len() as u64).to_le_bytes());
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(&self.manifest_digest);
        out.extend_from_slice(&self.body_digest);
        out.extend_from_slice(&self.files.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> CommitClaim<'static> {
        CommitClaim {
            bucket: "acme/docs",
            seq: 3,
            parent: [7; 32],
            kind: "snapshot",
            manifest_digest: manifest_digest(&[BlobId([1; 32])]),
            body_digest: body_digest(b""),
            files: 10,
            bytes: 4096,
        }
    }

    #[test]
    fn every_field_changes_the_encoding() {
        let base = claim().encode();
        let variants = [
            CommitClaim {
                bucket: "acme/doc",
                ..claim()
            },
            CommitClaim { seq: 4, ..claim() },
            CommitClaim {
                parent: GENESIS,
                ..claim()
            },
            CommitClaim {
                kind: "batch",
                ..claim()
            },
            CommitClaim {
                manifest_digest: manifest_digest(&[]),
                ..claim()
            },
            CommitClaim {
                body_digest: body_digest(b"x"),
                ..claim()
            },
            CommitClaim {
                files: 11,
                ..claim()
            },
            CommitClaim {
                bytes: 4097,
                ..claim()
            },
        ];
        for v in &variants {
            assert_ne!(v.encode(), base, "{v:?}");
        }
    }

    #[test]
    fn the_manifest_digest_depends_on_order_and_count() {
        let (a, b) = (BlobId([1; 32]), BlobId([2; 32]));
        assert_ne!(manifest_digest(&[a, b]), manifest_digest(&[b, a]));
        assert_ne!(manifest_digest(&[a]), manifest_digest(&[a, a]));
        assert_ne!(manifest_digest(&[]), body_digest(b""));
    }
}
