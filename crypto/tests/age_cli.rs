//! Interop with the stock `age` CLI, both directions. Needs `apt-get install -y age`;
//! a missing binary fails the test (an auditor relies on this property).

// Test helpers outside #[test] fns may panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ferry_crypto::TenantKeys;
use ferry_crypto::envelope::header_len;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const SIZES: [usize; 5] = [0, 100, 65536, 131072, 200000];

fn age(args: &[&str]) -> Vec<u8> {
    let out = match Command::new("age").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the stock `age` CLI is not installed; run `apt-get install -y age` (this interop test must not be skipped)"
        ),
        Err(e) => panic!("running age: {e}"),
    };
    assert!(
        out.status.success(),
        "age {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(len as u64).fill_bytes(&mut v);
    v
}

#[test]
fn stock_age_decrypts_header_plus_chunk() {
    let keys = TenantKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    let id_file = dir.path().join("identity.txt");
    keys.write_age_identity(&id_file).unwrap();

    let sealer = keys.sealer().unwrap();
    for len in SIZES {
        let plain = plaintext(len);
        let mut file = sealer.header().to_vec();
        file.extend_from_slice(&sealer.seal(&plain).unwrap());
        let enc = dir.path().join(format!("chunk-{len}.age"));
        fs::write(&enc, &file).unwrap();
        let out = age(&["-d", "-i", path_str(&id_file), path_str(&enc)]);
        assert!(out == plain, "age -d output differs for size {len}");
    }
}

#[test]
fn stock_age_decrypts_with_escrow_stanza_present() {
    let keys = TenantKeys::generate();
    let escrow = TenantKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k.toml");
    keys.write_private(&key_file).unwrap();
    let text = fs::read_to_string(&key_file).unwrap().replace(
        "dedup-key",
        &format!(
            "escrow-recipients = [\"{}\"]\ndedup-key",
            escrow.recipient()
        ),
    );
    let key_file2 = dir.path().join("k2.toml");
    fs::write(&key_file2, text).unwrap();
    fs::set_permissions(&key_file2, fs::Permissions::from_mode(0o600)).unwrap();
    let keys = TenantKeys::load(&key_file2).unwrap();

    let sealer = keys.sealer().unwrap();
    let mut file = sealer.header().to_vec();
    file.extend_from_slice(&sealer.seal(b"two stanzas").unwrap());
    let enc = dir.path().join("chunk.age");
    fs::write(&enc, &file).unwrap();
    for (name, k) in [("tenant", &keys), ("escrow", &escrow)] {
        let id_file = dir.path().join(format!("{name}.id"));
        k.write_age_identity(&id_file).unwrap();
        assert_eq!(
            age(&["-d", "-i", path_str(&id_file), path_str(&enc)]),
            b"two stanzas"
        );
    }
}

#[test]
fn opener_reads_files_made_by_stock_age() {
    let keys = TenantKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    for len in SIZES {
        let plain = plaintext(len);
        let input = dir.path().join(format!("plain-{len}"));
        fs::write(&input, &plain).unwrap();
        let file = age(&["-e", "-r", &keys.recipient(), path_str(&input)]);
        let split = header_len(&file).unwrap();
        let (header, payload) = file.split_at(split);
        let opener = keys.opener(header).unwrap();
        assert!(opener.open(payload).unwrap() == plain, "size {len} differs");
        // And a tampered byte in age's header is caught by our MAC check.
        let mut bad = header.to_vec();
        let i = bad.len() - 5;
        bad[i] ^= 1;
        assert!(keys.opener(&bad).is_err());
    }
}
