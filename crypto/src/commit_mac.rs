//! Commit MACs: the chain of a bucket's commits, signed by key holders.
//!
//! The key is derived from the dedup key, which both key file variants
//! hold: a write-only site signs its commits, any key holder checks them,
//! and the hub (which holds neither) can forge none. What a MAC covers is
//! `ferry_proto::chain::CommitClaim`'s encoding, passed here as bytes.

use crate::keyfile::TenantKeys;

/// BLAKE3 derive-key context for the commit MAC key; never reuse it.
const MAC_KEY_CONTEXT: &str = "ferry 2026 commit mac key";

impl TenantKeys {
    /// The MAC of an encoded commit claim.
    pub fn commit_mac(&self, claim: &[u8]) -> [u8; 32] {
        let key = blake3::derive_key(MAC_KEY_CONTEXT, self.dedup_key());
        *blake3::keyed_hash(&key, claim).as_bytes()
    }

    /// Whether `mac` is the MAC of an encoded claim (compared in constant
    /// time).
    pub fn commit_mac_verifies(&self, claim: &[u8], mac: &[u8]) -> bool {
        let Ok(mac) = <[u8; 32]>::try_from(mac) else {
            return false;
        };
        let key = blake3::derive_key(MAC_KEY_CONTEXT, self.dedup_key());
        // blake3::Hash compares in constant time.
        blake3::keyed_hash(&key, claim) == blake3::Hash::from_bytes(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_only_key_signs_what_the_full_key_checks() {
        let keys = TenantKeys::generate();
        let public = keys.to_public();
        let mac = public.commit_mac(b"claim");
        assert!(keys.commit_mac_verifies(b"claim", &mac));
        assert!(!keys.commit_mac_verifies(b"claim2", &mac));
        assert!(!keys.commit_mac_verifies(b"claim", &mac[..31]));
        // Another tenant's key neither makes nor checks it.
        let other = TenantKeys::generate();
        assert_ne!(other.commit_mac(b"claim"), mac);
        assert!(!other.commit_mac_verifies(b"claim", &mac));
        // Not the chunk id of the same bytes.
        assert_ne!(keys.chunk_id(b"claim"), mac);
    }
}
