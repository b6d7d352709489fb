//! The pack format: round trips, and every kind of damage refused.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn blob(n: u8, len: usize) -> PackBlob {
    PackBlob {
        id: BlobId([n; 32]),
        kind: if n.is_multiple_of(2) {
            BlobKind::Data
        } else {
            BlobKind::Manifest
        },
        flags: n % 2,
        header_id: BlobId([0xEE; 32]),
        data: (0..len).map(|i| (i as u8).wrapping_mul(n)).collect(),
    }
}

fn small_pack() -> (Vec<PackBlob>, Vec<u8>, Vec<PackEntry>) {
    let blobs = vec![blob(1, 5), blob(2, 0), blob(3, 9)];
    let EncodedPack {
        bytes,
        entries,
        hash,
    } = encode_pack("acme", "site-a", &blobs).unwrap();
    assert_eq!(hash, *blake3::hash(&bytes).as_bytes());
    (blobs, bytes, entries)
}

#[test]
fn round_trip() {
    let (blobs, bytes, entries) = small_pack();
    let index = parse_pack(&bytes).unwrap();
    assert_eq!((index.tenant.as_str(), &index.entries), ("acme", &entries));
    assert_eq!(index.site.as_deref(), Some("site-a"));
    assert_eq!(entries.len(), blobs.len());
    for (b, e) in blobs.iter().zip(&entries) {
        assert_eq!(
            (e.id, e.kind, e.flags, e.header_id),
            (b.id, b.kind, b.flags, b.header_id)
        );
        let start = e.offset as usize;
        assert_eq!(&bytes[start..start + e.length as usize], &b.data[..]);
    }
    assert!(bytes.starts_with(PACK_MAGIC) && bytes.ends_with(FOOTER_MAGIC));
}

#[test]
fn empty_pack_round_trips() {
    let EncodedPack { bytes, entries, .. } = encode_pack("t", "s", &[]).unwrap();
    // The minimum is a first-version pack's, which has no site.
    assert_eq!(bytes.len(), MIN_PACK_LEN + TENANT_LEN_LEN + 1);
    assert!(entries.is_empty());
    assert!(parse_pack(&bytes).unwrap().entries.is_empty());
}

#[test]
fn a_tenant_outside_the_name_rules_is_refused_both_ways() {
    for bad in ["", "A", "a/b", &"a".repeat(64)] {
        assert!(matches!(
            encode_pack(bad, "s", &[]),
            Err(PackError::BadTenant { .. })
        ));
        assert!(matches!(
            encode_pack("t", bad, &[]),
            Err(PackError::BadSite { .. })
        ));
    }
    let (_, bytes, entries) = small_pack();
    let count_at = bytes.len() - FOOTER_LEN - (COUNT_LEN + entries.len() * ENTRY_LEN);
    let site_at = count_at - "site-a".len();
    let tenant_at = site_at - TENANT_LEN_LEN - "acme".len();
    for (at, bad) in [
        (
            tenant_at,
            PackError::BadTenant {
                found: String::new(),
            },
        ),
        (
            site_at,
            PackError::BadSite {
                found: String::new(),
            },
        ),
    ] {
        let mut bytes = bytes.clone();
        bytes[at] = b'A';
        reseal(&mut bytes);
        let err = parse_pack(&bytes).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&bad),
            "{err}"
        );
    }
}

/// A pack as the first version wrote it: `pack` without its site.
fn first_version(pack: &[u8], entries: usize, site: &str) -> Vec<u8> {
    let count_at = pack.len() - FOOTER_LEN - (COUNT_LEN + entries * ENTRY_LEN);
    let site_len_at = count_at - site.len() - TENANT_LEN_LEN;
    let mut out = pack[..site_len_at].to_vec();
    out[..PACK_MAGIC.len()].copy_from_slice(PACK_MAGIC_V2);
    out.extend_from_slice(&pack[count_at..pack.len() - FOOTER_LEN]);
    let index_len = u32::from_le_bytes(pack[pack.len() - FOOTER_LEN..][..4].try_into().unwrap())
        - (TENANT_LEN_LEN + site.len()) as u32;
    let hash = blake3::hash(&out);
    out.extend_from_slice(&index_len.to_le_bytes());
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(FOOTER_MAGIC_V2);
    out
}

#[test]
fn a_first_version_pack_reads_without_a_site() {
    let (_, bytes, entries) = small_pack();
    let old = first_version(&bytes, entries.len(), "site-a");
    let index = parse_pack(&old).unwrap();
    assert_eq!(
        (index.tenant.as_str(), index.site, &index.entries),
        ("acme", None, &entries)
    );
    let footer = parse_footer(&old[old.len() - FOOTER_LEN..]).unwrap();
    let tail = &old[old.len() - footer.tail_len() as usize..];
    let index = parse_pack_index_unverified(tail, old.len() as u64).unwrap();
    assert_eq!((index.site, index.entries), (None, entries));
    // A header of one version and a footer of the other is refused.
    let mut mixed = bytes.clone();
    mixed[..PACK_MAGIC.len()].copy_from_slice(PACK_MAGIC_V2);
    reseal(&mut mixed);
    assert!(matches!(
        parse_pack(&mixed),
        Err(PackError::MixedVersions { .. })
    ));
}

#[test]
fn unverified_index_from_tail_matches() {
    let (_, bytes, entries) = small_pack();
    let footer = parse_footer(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
    let tail = &bytes[bytes.len() - footer.tail_len() as usize..];
    assert_eq!(
        parse_pack_index_unverified(tail, bytes.len() as u64)
            .unwrap()
            .entries,
        entries
    );
    // A longer tail works too; a shorter one is refused.
    assert_eq!(
        parse_pack_index_unverified(&bytes, bytes.len() as u64)
            .unwrap()
            .entries,
        entries
    );
    assert!(matches!(
        parse_pack_index_unverified(&tail[1..], bytes.len() as u64),
        Err(PackError::TailTooShort { .. })
    ));
}

#[test]
fn every_truncation_is_rejected() {
    let (_, bytes, _) = small_pack();
    for len in 0..bytes.len() {
        assert!(
            parse_pack(&bytes[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let (_, bytes, _) = small_pack();
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[pos] ^= mask;
            assert!(
                parse_pack(&bad).is_err(),
                "flip {mask:#x} at {pos} accepted"
            );
        }
    }
}

#[test]
fn flip_in_content_is_a_hash_mismatch() {
    let (_, mut bytes, entries) = small_pack();
    bytes[entries[0].offset as usize] ^= 1;
    assert!(matches!(
        parse_pack(&bytes),
        Err(PackError::HashMismatch { .. })
    ));
}

/// Re-seals a pack after tampering, so the index checks (not the hash) are
/// what must catch the damage.
fn reseal(bytes: &mut [u8]) {
    let content_end = bytes.len() - FOOTER_LEN;
    let hash = blake3::hash(&bytes[..content_end]);
    bytes[content_end + 4..content_end + 36].copy_from_slice(hash.as_bytes());
}

#[test]
fn resealed_index_damage_is_rejected() {
    let (_, bytes, entries) = small_pack();
    let count_at = bytes.len() - FOOTER_LEN - (COUNT_LEN + entries.len() * ENTRY_LEN);
    let site_len_at = count_at - "site-a".len() - TENANT_LEN_LEN;
    let index_start = site_len_at - TENANT_LEN_LEN - "acme".len();
    // Overlapping offsets, a gap, a bad kind, a length past the end.
    let entry1 = count_at + COUNT_LEN + ENTRY_LEN;
    let cases: Vec<(usize, u8)> = vec![
        (entry1 + 66, 0x01),           // offset of entry 1
        (entry1 + 32, 0x7F),           // kind of entry 1
        (entry1 + 74, 0x10),           // length of entry 1
        (count_at, 0x02),              // count
        (index_start, 0x01),           // tenant length
        (site_len_at, 0x01),           // site length
        (bytes.len() - FOOTER_LEN, 1), // index_len
    ];
    for (pos, mask) in cases {
        let mut bad = bytes.clone();
        bad[pos] ^= mask;
        reseal(&mut bad);
        assert!(parse_pack(&bad).is_err(), "resealed flip at {pos} accepted");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xFE44);
    let (_, valid, _) = small_pack();
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = rng.gen_range(0..400);
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            // Give some inputs valid magics so parsing gets further.
            if round % 4 == 0 && len >= MIN_PACK_LEN {
                b[..8].copy_from_slice(PACK_MAGIC);
                b[len - 8..].copy_from_slice(FOOTER_MAGIC);
            }
            b
        } else {
            // Mutate a valid pack and re-seal it, to exercise the index checks.
            let mut b = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let pos = rng.gen_range(0..b.len());
                b[pos] = rng.r#gen();
            }
            if b.ends_with(FOOTER_MAGIC) {
                reseal(&mut b);
            }
            b
        };
        if let Ok(index) = parse_pack(&bytes) {
            for e in index.entries {
                assert!(e.offset + u64::from(e.length) <= bytes.len() as u64);
            }
        }
        let pack_len = bytes.len() as u64 + rng.gen_range(0..3);
        let _ = parse_pack_index_unverified(&bytes, pack_len);
        let _ = parse_footer(&bytes);
    }
}

#[test]
fn pack_object_name_fans_out() {
    let (_, bytes, _) = small_pack();
    let name = pack_name(&bytes);
    assert_eq!(name.len(), 64);
    assert_eq!(
        pack_object_name(&name),
        format!("packs/{}/{name}.pack", &name[..2])
    );
}
