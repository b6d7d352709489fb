#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! What the hub stores, checked from outside: a stored chunk is a valid age
//! payload that the stock `age` tool decrypts with the tenant identity, and
//! the hub's dependency tree holds no `age` at all.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use ferry_crypto::TenantKeys;
use ferry_hub::pack::parse_pack;
use ferry_proto::{BlobId, BlobKind, FLAG_ZSTD};
use ferry_tests::{Hub, Site};

#[test]
fn stock_age_decrypts_stored_chunks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Both below the 256 KiB minimum chunk: one chunk each, whatever the key.
    let noise = ferry_tests::noise(200_000, 13);
    std::fs::write(src.join("noise.bin"), &noise).unwrap();
    std::fs::write(src.join("text.txt"), b"compressible text, ".repeat(10_000)).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.backup();

    // Every blob of every pack, with its bytes.
    let mut blobs = HashMap::new();
    for pack in hub.pack_files() {
        let bytes = std::fs::read(&pack).unwrap();
        for entry in parse_pack(&bytes).unwrap().entries {
            let start = entry.offset as usize;
            let data = bytes[start..start + entry.length as usize].to_vec();
            blobs.insert(entry.id, (entry.kind, entry.flags, entry.header_id, data));
        }
    }
    let keys = TenantKeys::load(&site.key_file).unwrap();
    let identity = work.path().join("identity.txt");
    keys.write_age_identity(&identity).unwrap();
    let age = which_age();

    let mut checked = (0, 0);
    for (id, (kind, flags, header_id, payload)) in &blobs {
        if *kind != BlobKind::Data {
            continue;
        }
        let (_, _, _, header) = &blobs[header_id];
        assert_eq!(BlobId::of_public(header), *header_id);
        let file = work.path().join(format!("{id}.age"));
        std::fs::write(&file, [header.as_slice(), payload.as_slice()].concat()).unwrap();
        let out = Command::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plaintext = if flags & FLAG_ZSTD != 0 {
            checked.1 += 1;
            zstd::decode_all(out.stdout.as_slice()).unwrap()
        } else {
            checked.0 += 1;
            out.stdout
        };
        assert_eq!(
            BlobId(keys.chunk_id(&plaintext)),
            *id,
            "age output is the chunk's plaintext"
        );
        assert!(plaintext == noise || text_matches(&plaintext));
    }
    assert_eq!(
        checked,
        (1, 1),
        "one raw and one compressed chunk decrypted"
    );
}

fn text_matches(plain: &[u8]) -> bool {
    plain == b"compressible text, ".repeat(10_000).as_slice()
}

fn which_age() -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = std::path::Path::new(dir).join("age");
        if p.exists() {
            return p;
        }
    }
    panic!("the stock `age` tool is missing: run `apt-get install -y age` (scripts/setup.sh does)");
}

#[test]
fn hub_links_no_age_and_holds_no_key() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = ferry_tests::package_dir().join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "ferry-hub",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("ferry-proto"),
        "unexpected tree output:\n{tree}"
    );
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !["age", "age-core", "ferry-crypto", "chacha20poly1305"].contains(&name),
            "ferry-hub depends on {name}"
        );
    }
}

/// The hub's data dir is the hub's alone: no file or directory in it lets
/// group or others in (the catalog names every site; the packs say who
/// stores how much).
#[test]
fn the_hubs_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.bin"), ferry_tests::noise(300_000, 3)).unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.backup();
    let data = work.path().join("hub");
    let files = ferry_tests::tree::files_with_extension(&data, "");
    assert!(
        files.iter().any(|f| f.ends_with("catalog.db")) && !hub.pack_files().is_empty(),
        "{files:?}"
    );
    let mut dirs = vec![data.clone()];
    for f in &files {
        dirs.extend(
            f.ancestors()
                .skip(1)
                .take_while(|d| d.starts_with(&data))
                .map(Path::to_path_buf),
        );
    }
    for path in files.iter().chain(&dirs) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:04o}", path.display());
    }
}
