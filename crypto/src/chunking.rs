//! Keyed chunk ids and keyed FastCDC gear tables.
//!
//! Both are keyed per tenant so the hub (which sees ids and chunk sizes) can neither
//! confirm guessed content nor fingerprint files by their boundaries.

use crate::keyfile::TenantKeys;

/// BLAKE3 derive-key context for the gear table; never reuse it for anything else.
const GEAR_CONTEXT: &str = "ferry 2026 fastcdc gear table";

impl TenantKeys {
    /// Chunk id: keyed BLAKE3(dedup key, plaintext).
    pub fn chunk_id(&self, plaintext: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.dedup_key(), plaintext).as_bytes()
    }

    /// The 256-entry gear table derived from the chunker seed, and the left-shifted
    /// table (`gear_ls[i] = gear[i] << 1`) that `fastcdc::v2020::cut_gear` expects.
    pub fn gear_tables(&self) -> (Box<[u64; 256]>, Box<[u64; 256]>) {
        gear_tables(self.chunker_seed())
    }
}

/// Expands the seed with BLAKE3's XOF in derive-key mode (domain-separated).
fn gear_tables(seed: &[u8; 32]) -> (Box<[u64; 256]>, Box<[u64; 256]>) {
    let mut hasher = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
    hasher.update(seed);
    let mut bytes = [0u8; 256 * 8];
    hasher.finalize_xof().fill(&mut bytes);

    let mut gear = Box::new([0u64; 256]);
    for (entry, word) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        *entry = u64::from_le_bytes(le);
    }
    let gear_ls = Box::new(gear.map(|g| g << 1));
    (gear, gear_ls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gear_is_deterministic_and_seed_dependent() {
        let (a, a_ls) = gear_tables(&[1; 32]);
        let (b, b_ls) = gear_tables(&[1; 32]);
        let (c, _) = gear_tables(&[2; 32]);
        assert_eq!(a, b);
        assert_eq!(a_ls, b_ls);
        assert_ne!(a, c);
        // Entries are distinct-looking random words, not a shifted constant.
        assert!(a.iter().zip(c.iter()).all(|(x, y)| x != y));
        for (g, ls) in a.iter().zip(a_ls.iter()) {
            assert_eq!(*ls, g << 1);
        }
    }
}
