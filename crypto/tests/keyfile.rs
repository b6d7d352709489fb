//! Key file write/load: round trips, safety, and errors that name path and field.

// Test helpers outside #[test] fns may panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_crypto::{KeyFileError, OpenError, TenantKeys};

fn write_private_tmp(keys: &TenantKeys) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.key.toml");
    keys.write_private(&path).unwrap();
    (dir, path)
}

/// Writes `text` as a 0600 file and loads it; returns the error's Display.
fn load_text_err(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = TenantKeys::load(&path).expect_err(text);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn private_round_trip_keeps_everything() {
    let keys = TenantKeys::generate();
    let (_dir, path) = write_private_tmp(&keys);
    let loaded = TenantKeys::load(&path).unwrap();
    assert!(loaded.can_decrypt());
    assert_eq!(loaded.recipient(), keys.recipient());
    assert!(keys.recipient().starts_with("age1"));
    assert_eq!(loaded.chunk_id(b"abc"), keys.chunk_id(b"abc"));
    assert_ne!(loaded.chunk_id(b"abc"), loaded.chunk_id(b"abd"));
    assert_eq!(loaded.gear_tables(), keys.gear_tables());
    // The loaded identity opens what the original sealed, and vice versa.
    let sealer = keys.sealer().unwrap();
    let sealed = sealer.seal(b"x").unwrap();
    assert_eq!(
        loaded
            .opener(sealer.header())
            .unwrap()
            .open(&sealed)
            .unwrap(),
        b"x"
    );

    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# Ferry tenant key file (PRIVATE)"),
        "{text}"
    );
    assert!(text.contains("identity = \"AGE-SECRET-KEY-1"), "{text}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No temp files left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn public_round_trip_is_write_only() {
    let keys = TenantKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.toml");
    keys.write_public(&path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    assert!(!text.contains("identity ="), "{text}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let public = TenantKeys::load(&path).unwrap();
    assert!(!public.can_decrypt());
    assert!(!keys.to_public().can_decrypt());
    assert_eq!(public.recipient(), keys.recipient());
    assert_eq!(public.chunk_id(b"same"), keys.chunk_id(b"same"));
    assert_eq!(public.gear_tables(), keys.gear_tables());
    let sealer = public.sealer().unwrap();
    assert_eq!(
        public.opener(sealer.header()).err(),
        Some(OpenError::NoIdentity)
    );
    // A write-only key has nothing private to write.
    let err = public
        .write_private(&dir.path().join("p.toml"))
        .unwrap_err();
    assert!(matches!(err, KeyFileError::NoIdentity { .. }), "{err}");
    // A write-only file is still secret (its dedup key lets a reader test
    // guessed content): group- or world-readable, it is refused.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = TenantKeys::load(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::InsecureMode { .. }), "{err}");
}

#[test]
fn overwrite_is_refused() {
    let keys = TenantKeys::generate();
    let (_dir, path) = write_private_tmp(&keys);
    let before = fs::read(&path).unwrap();
    let other = TenantKeys::generate();
    for result in [other.write_private(&path), other.write_public(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn readable_private_file_is_refused() {
    let keys = TenantKeys::generate();
    let (_dir, path) = write_private_tmp(&keys);
    for mode in [0o640, 0o604, 0o644] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = TenantKeys::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeyFileError::InsecureMode { .. }), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(TenantKeys::load(&path).is_ok());
}

#[test]
fn bad_files_name_path_and_field() {
    let keys = TenantKeys::generate();
    let (dir, path) = write_private_tmp(&keys);
    let good = fs::read_to_string(&path).unwrap();
    let dir = dir.path();
    let line_of = |field: &str| {
        good.lines()
            .find(|l| l.starts_with(&format!("{field} =")))
            .unwrap()
            .to_string()
    };

    // Bad hex and wrong length.
    let dedup = line_of("dedup-key");
    let msg = load_text_err(
        dir,
        "hex.toml",
        &good.replace(&dedup, &format!("dedup-key = \"{}\"", "zz".repeat(32))),
    );
    assert!(msg.contains("field `dedup-key`"), "{msg}");
    assert!(msg.contains("64 hex digits"), "{msg}");
    let seed = line_of("chunker-seed");
    let msg = load_text_err(
        dir,
        "short.toml",
        &good.replace(&seed, "chunker-seed = \"abcd\""),
    );
    assert!(
        msg.contains("field `chunker-seed`: expected 64 hex digits"),
        "{msg}"
    );

    // Unknown field.
    let msg = load_text_err(dir, "unknown.toml", &format!("{good}colour = \"blue\"\n"));
    assert!(msg.contains("colour"), "{msg}");

    // Missing fields, each named.
    for field in ["version", "recipient", "dedup-key", "chunker-seed"] {
        let text = good.replace(&format!("{}\n", line_of(field)), "");
        let msg = load_text_err(dir, &format!("missing-{field}.toml"), &text);
        assert!(msg.contains(&format!("field `{field}`")), "{msg}");
        assert!(msg.contains("missing"), "{msg}");
    }

    // Identity and recipient from different keys.
    let other = TenantKeys::generate();
    let msg = load_text_err(
        dir,
        "mismatch.toml",
        &good.replace(&keys.recipient(), &other.recipient()),
    );
    assert!(msg.contains("field `recipient`"), "{msg}");
    assert!(msg.contains("does not match `identity`"), "{msg}");

    // Garbage identity, recipient, escrow entry; wrong version and types.
    let msg = load_text_err(
        dir,
        "identity.toml",
        &good.replace(&line_of("identity"), "identity = \"AGE-SECRET-KEY-1NOPE\""),
    );
    assert!(msg.contains("field `identity`"), "{msg}");
    let msg = load_text_err(
        dir,
        "recipient.toml",
        &good.replace(&line_of("recipient"), "recipient = \"age1nope\""),
    );
    assert!(msg.contains("field `recipient`"), "{msg}");
    let msg = load_text_err(
        dir,
        "escrow.toml",
        &format!(
            "{good}escrow-recipients = [\"{}\", \"x\"]\n",
            other.recipient()
        ),
    );
    assert!(msg.contains("field `escrow-recipients`: entry 2"), "{msg}");
    let msg = load_text_err(
        dir,
        "version.toml",
        &good.replace("version = 1", "version = 2"),
    );
    assert!(
        msg.contains("field `version`: unsupported version 2"),
        "{msg}"
    );
    let msg = load_text_err(
        dir,
        "vtype.toml",
        &good.replace("version = 1", "version = \"1\""),
    );
    assert!(msg.contains("field `version`"), "{msg}");
}

#[test]
fn truncated_files_are_errors_naming_the_field() {
    let keys = TenantKeys::generate();
    let (dir, path) = write_private_tmp(&keys);
    let good = fs::read_to_string(&path).unwrap();
    // Cut in the middle of the dedup key value.
    let cut = good.find("dedup-key = \"").unwrap() + 20;
    let msg = load_text_err(dir.path(), "cut.toml", &good[..cut]);
    assert!(msg.contains("dedup-key"), "{msg}");
    // Cut after the dedup key line: chunker-seed is missing.
    let cut = good.find("chunker-seed").unwrap();
    let msg = load_text_err(dir.path(), "cut2.toml", &good[..cut]);
    assert!(msg.contains("field `chunker-seed`: missing"), "{msg}");
    // Every truncation point fails cleanly.
    for cut in 0..good.len() - 1 {
        let truncated = &good.as_bytes()[..cut];
        let p = dir.path().join("every.toml");
        fs::write(&p, truncated).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        // Cutting only the final newline still leaves a valid file.
        if let Ok(k) = TenantKeys::load(&p) {
            panic!("cut {cut} loaded: {k:?}");
        }
    }
}

#[test]
fn missing_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let msg = TenantKeys::load(&path).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("opening"), "{msg}");

    let bin = dir.path().join("bin.toml");
    fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
    let msg = TenantKeys::load(&bin).unwrap_err().to_string();
    assert!(msg.contains("UTF-8"), "{msg}");

    let big = dir.path().join("big.toml");
    fs::write(&big, vec![b'#'; 100_000]).unwrap();
    let msg = TenantKeys::load(&big).unwrap_err().to_string();
    assert!(msg.contains("larger than"), "{msg}");
}

#[test]
fn debug_does_not_leak_secrets() {
    let keys = TenantKeys::generate();
    let dbg = format!("{keys:?}");
    assert!(dbg.contains(&keys.recipient()), "{dbg}");
    assert!(!dbg.contains("AGE-SECRET"), "{dbg}");
    let (_dir, path) = write_private_tmp(&keys);
    let text = fs::read_to_string(&path).unwrap();
    let dedup = text
        .lines()
        .find_map(|l| l.strip_prefix("dedup-key = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(!dbg.contains(dedup), "{dbg}");
}
