//! Session sealing/opening: round trips, tampering, and bounded fuzzing.

// Test helpers outside #[test] fns may panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_crypto::envelope::header_len;
use ferry_crypto::{OpenError, TenantKeys};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const PIECE: usize = 64 * 1024;
const SEALED_PIECE: usize = PIECE + 16;

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

#[test]
fn round_trips_all_edge_sizes() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    for len in [
        0,
        1,
        PIECE - 1,
        PIECE,
        PIECE + 1,
        2 * PIECE,
        2 * PIECE + 1,
        1 << 20,
    ] {
        let plain = random_bytes(&mut rng, len);
        let sealed = sealer.seal(&plain).unwrap();
        let pieces = len.div_ceil(PIECE).max(1);
        assert_eq!(sealed.len(), 16 + len + 16 * pieces, "len {len}");
        assert_eq!(opener.open(&sealed).unwrap(), plain, "len {len}");
    }
}

#[test]
fn many_chunks_under_one_header_and_threads() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    let chunks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; i as usize * 7000]).collect();
    let sealed: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| s.spawn(|| sealer.seal(c).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Same plaintext twice still seals differently (fresh payload nonce).
    assert_ne!(sealer.seal(&chunks[3]).unwrap(), sealed[3]);
    std::thread::scope(|s| {
        for (c, p) in chunks.iter().zip(&sealed) {
            let opener = opener.clone();
            s.spawn(move || assert_eq!(&opener.open(p).unwrap(), c));
        }
    });
}

#[test]
fn escrow_recipient_opens_too() {
    let tenant = TenantKeys::generate();
    let escrow = TenantKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    tenant.write_private(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "dedup-key",
        &format!(
            "escrow-recipients = [\"{}\"]\ndedup-key",
            escrow.recipient()
        ),
    );
    let path2 = dir.path().join("k2.toml");
    std::fs::write(&path2, text).unwrap();
    std::fs::set_permissions(&path2, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tenant = TenantKeys::load(&path2).unwrap();
    assert_eq!(tenant.escrow_recipients(), vec![escrow.recipient()]);

    let sealer = tenant.sealer().unwrap();
    let sealed = sealer.seal(b"escrowed").unwrap();
    assert_eq!(
        escrow
            .opener(sealer.header())
            .unwrap()
            .open(&sealed)
            .unwrap(),
        b"escrowed"
    );
    assert_eq!(
        tenant
            .opener(sealer.header())
            .unwrap()
            .open(&sealed)
            .unwrap(),
        b"escrowed"
    );
}

#[test]
fn every_flipped_byte_is_detected() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    for len in [0usize, 1, 100] {
        let sealed = sealer.seal(&vec![9u8; len]).unwrap();
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= bit;
                assert!(opener.open(&bad).is_err(), "len {len} byte {i}");
            }
        }
    }
    // Large payload: sample positions in every piece, including tags and the nonce.
    let sealed = sealer.seal(&vec![5u8; 3 * PIECE + 10]).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..300 {
        let mut bad = sealed.clone();
        let i = rng.gen_range(0..bad.len());
        bad[i] ^= 1 << rng.gen_range(0..8);
        assert!(opener.open(&bad).is_err(), "byte {i}");
    }
}

#[test]
fn truncation_and_appending_are_detected() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    for len in [0usize, 1, PIECE, PIECE + 1, 2 * PIECE] {
        let sealed = sealer.seal(&vec![3u8; len]).unwrap();
        let mut cuts: Vec<usize> = (0..40.min(sealed.len())).collect();
        cuts.extend([
            sealed.len() - 1,
            sealed.len().saturating_sub(16),
            16 + SEALED_PIECE,
            16 + SEALED_PIECE - 1,
            16 + SEALED_PIECE + 1,
        ]);
        for cut in cuts.into_iter().filter(|&c| c < sealed.len()) {
            assert!(opener.open(&sealed[..cut]).is_err(), "len {len} cut {cut}");
        }
        for extra in [&[0u8][..], &[0u8; 16], &[1u8; 17], &sealed[16..]] {
            let mut longer = sealed.clone();
            longer.extend_from_slice(extra);
            assert!(
                opener.open(&longer).is_err(),
                "len {len} + {} bytes",
                extra.len()
            );
        }
    }
}

#[test]
fn piece_boundary_cut_of_full_final_piece_is_detected() {
    // 2 full pieces: cutting the second leaves a full non-final first piece.
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    let sealed = sealer.seal(&vec![1u8; 2 * PIECE]).unwrap();
    assert_eq!(
        opener.open(&sealed[..16 + SEALED_PIECE]),
        Err(OpenError::PieceAuth { piece: 0 })
    );
    // Appending an empty final piece to a complete payload is refused.
    let mut longer = sealed.clone();
    longer.extend_from_slice(&[0u8; 16]);
    assert!(matches!(
        opener.open(&longer),
        Err(OpenError::MalformedPayload(_))
    ));
}

#[test]
fn swapped_pieces_and_spliced_payloads_are_detected() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let plain = random_bytes(&mut rng, 3 * PIECE);
    let sealed = sealer.seal(&plain).unwrap();
    let mut swapped = sealed[..16].to_vec();
    swapped.extend_from_slice(&sealed[16 + SEALED_PIECE..16 + 2 * SEALED_PIECE]);
    swapped.extend_from_slice(&sealed[16..16 + SEALED_PIECE]);
    swapped.extend_from_slice(&sealed[16 + 2 * SEALED_PIECE..]);
    assert_eq!(
        opener.open(&swapped),
        Err(OpenError::PieceAuth { piece: 0 })
    );

    // A piece from another payload (other nonce, other key) does not fit.
    let other = sealer.seal(&plain).unwrap();
    let mut spliced = sealed[..16 + SEALED_PIECE].to_vec();
    spliced.extend_from_slice(&other[16 + SEALED_PIECE..]);
    assert_eq!(
        opener.open(&spliced),
        Err(OpenError::PieceAuth { piece: 1 })
    );
}

#[test]
fn wrong_session_or_tenant_is_detected() {
    let keys = TenantKeys::generate();
    let s1 = keys.sealer().unwrap();
    let s2 = keys.sealer().unwrap();
    assert_ne!(s1.header(), s2.header());
    let sealed = s1.seal(b"session one").unwrap();
    let o2 = keys.opener(s2.header()).unwrap();
    assert_eq!(o2.open(&sealed), Err(OpenError::PieceAuth { piece: 0 }));

    let other = TenantKeys::generate();
    assert_eq!(
        other.opener(s1.header()).err(),
        Some(OpenError::NoMatchingStanza)
    );
}

#[test]
fn tampered_header_is_detected() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let header = sealer.header().to_vec();
    // Flip one bit in the MAC's base64 (stays a base64 letter: 'A'<->'B' etc.).
    let mac_pos = header.len() - 10;
    let mut bad = header.clone();
    bad[mac_pos] ^= 0x01;
    assert!(keys.opener(&bad).is_err());
    if let Err(e) = keys.opener(&bad) {
        assert!(
            matches!(e, OpenError::BadMac | OpenError::MalformedHeader(_)),
            "{e}"
        );
    }
    // Flip every byte in turn: never opens, never panics.
    for i in 0..header.len() {
        let mut bad = header.clone();
        bad[i] ^= 0x20;
        assert!(keys.opener(&bad).is_err(), "byte {i}");
    }
    for cut in 0..header.len() {
        assert!(keys.opener(&header[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn mac_mismatch_is_reported_as_such() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let header = sealer.header();
    // Replace the MAC with that of another valid header: well-formed, wrong value.
    let other = keys.sealer().unwrap();
    let mac_start = header.len() - 44;
    let mut bad = header[..mac_start].to_vec();
    bad.extend_from_slice(&other.header()[other.header().len() - 44..]);
    assert_eq!(keys.opener(&bad).err(), Some(OpenError::BadMac));
    assert!(
        OpenError::BadMac.to_string().contains("MAC"),
        "{}",
        OpenError::BadMac
    );
}

#[test]
fn write_only_keys_cannot_open() {
    let keys = TenantKeys::generate();
    let public = keys.to_public();
    let sealer = public.sealer().unwrap();
    let err = public.opener(sealer.header()).err().unwrap();
    assert_eq!(err, OpenError::NoIdentity);
    assert_eq!(
        err.to_string(),
        "this key file is write-only (no identity): it can back up but not restore"
    );
    // ...but what it sealed, the private keys open.
    let sealed = sealer.seal(b"backed up").unwrap();
    assert_eq!(
        keys.opener(sealer.header()).unwrap().open(&sealed).unwrap(),
        b"backed up"
    );
}

#[test]
fn fuzz_open_and_opener_never_panic() {
    let keys = TenantKeys::generate();
    let sealer = keys.sealer().unwrap();
    let opener = keys.opener(sealer.header()).unwrap();
    let header = sealer.header().to_vec();
    let sealed = sealer.seal(&vec![7u8; PIECE + 300]).unwrap();
    let mut rng = StdRng::seed_from_u64(0xF3E7);
    for case in 0..2000 {
        // Random bytes, truncated real data, or mutated real data.
        let (base, kind) = match case % 4 {
            0 => {
                let len = rng.gen_range(0..300);
                (random_bytes(&mut rng, len), "random")
            }
            1 => {
                let cut = rng.gen_range(0..sealed.len());
                (sealed[..cut].to_vec(), "truncated payload")
            }
            2 => {
                let cut = rng.gen_range(0..=header.len());
                let mut v = header[..cut].to_vec();
                let extra = rng.gen_range(0..40);
                v.extend(random_bytes(&mut rng, extra));
                (v, "truncated header + junk")
            }
            _ => {
                let mut v = if rng.gen_bool(0.5) {
                    header.clone()
                } else {
                    sealed.clone()
                };
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..v.len());
                    v[i] = rng.r#gen();
                }
                (v, "mutated")
            }
        };
        let opened = opener.open(&base);
        let header_result = keys.opener(&base);
        let _ = header_len(&base);
        if kind != "mutated" || base != sealed {
            assert!(opened.is_err() || base == sealed, "case {case} ({kind})");
        }
        if kind != "mutated" || base != header {
            assert!(
                header_result.is_err() || base == header,
                "case {case} ({kind})"
            );
        }
    }
}
