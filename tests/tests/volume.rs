#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A volume's entries come back exactly, and a restore never stops short:
//! what it cannot write is reported, the rest is restored, and `--resume`
//! finishes it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site};

/// A restore that exits 3 (done, but not all of it) and its JSON report.
fn partial_restore(site: &Site, to: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "restore", "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = site.agent(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A name at the file system's limit (255 bytes, so the restore's
/// temporary name must not add to it) and a deep path both come back.
#[test]
fn names_at_the_limit_and_deep_paths_restore() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    let deep = (0..40).fold(src.clone(), |p, i| p.join(format!("level-{i:02}")));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom.txt"), b"at the bottom").unwrap();
    let long = std::ffi::OsStr::from_bytes(&[b'n'; 255]);
    std::fs::write(src.join(long), b"a long name").unwrap();
    let mut odd = vec![b'x'; 250];
    odd.extend_from_slice(b"\xff\x01\n\t");
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(&odd)), b"odd bytes").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();
    let out = w.join("restored");
    let report = site.restore(&out, &[]);
    assert_eq!(report["not_restored"], 0, "{report}");
    assert_same(&describe(&src), &describe(&out), "names at the limit");
}

/// One entry the target cannot take (a directory is in its way) is
/// reported by path and reason; everything else is restored; once the way
/// is clear, `--resume` writes that one only.
#[test]
fn a_restore_goes_on_past_an_entry_it_cannot_write_and_resume_finishes_it() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), b"first").unwrap();
    std::fs::write(src.join("sub/blocked.bin"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(src.join("sub/deeper/c.txt"), b"below").unwrap();
    std::fs::write(src.join("z.txt"), b"last").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();

    let out = w.join("restored");
    std::fs::create_dir_all(out.join("sub/blocked.bin/in-the-way")).unwrap();
    // A target that is not empty is refused without --resume.
    let refused = site.agent(&["restore", "--to", out.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--resume"), "{stderr}");

    let report = partial_restore(&site, &out, &["--resume"]);
    assert_eq!(report["not_restored"], 1, "{report}");
    let failed = &report["not_restored_entries"][0];
    assert_eq!(failed["path"], "sub/blocked.bin", "{report}");
    assert!(
        failed["reason"].as_str().unwrap().contains("directory"),
        "{report}"
    );
    for (path, bytes) in [
        ("a.txt", &b"first"[..]),
        ("sub/deeper/c.txt", b"below"),
        ("z.txt", b"last"),
    ] {
        assert_eq!(std::fs::read(out.join(path)).unwrap(), bytes, "{path}");
    }
    // Nothing half written is left under a temporary name.
    let leftovers: Vec<_> = std::fs::read_dir(out.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b".ferry-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    std::fs::remove_dir_all(out.join("sub/blocked.bin")).unwrap();
    let report = site.restore(&out, &["--resume"]);
    assert_eq!(report["not_restored"], 0, "{report}");
    assert_eq!(report["already_present"], 3, "{report}");
    assert_eq!(
        report["bytes"],
        3 << 20,
        "only the blocked file written: {report}"
    );
    assert_same(&describe(&src), &describe(&out), "after --resume");
}

/// Named pipes and device nodes come back as they were (devices because
/// the tests run as root); a socket is counted, not kept, and fails nothing.
#[test]
fn pipes_and_device_nodes_come_back_and_sockets_are_counted() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("dev")).unwrap();
    std::fs::write(src.join("plain.txt"), b"plain").unwrap();
    let made = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let at = |p: &str| src.join(p).to_str().unwrap().to_owned();
    made(&["mkfifo", "-m", "0640", &at("pipe")]);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    if root {
        made(&["mknod", "-m", "0600", &at("dev/null-again"), "c", "1", "3"]);
        made(&["mknod", "-m", "0660", &at("dev/loop-like"), "b", "7", "200"]);
    }
    let socket = std::os::unix::net::UnixListener::bind(src.join("control.sock")).unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    let report = site.backup();
    assert_eq!(report["specials"], if root { 3 } else { 1 }, "{report}");
    assert_eq!(report["sockets_not_kept"], 1, "{report}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 0, "{report}");
    drop(socket);
    std::fs::remove_file(src.join("control.sock")).unwrap();
    let out = w.join("restored");
    let restored = site.restore(&out, &[]);
    assert_eq!(restored["specials"], report["specials"], "{restored}");
    let expected = describe(&src);
    assert_eq!(expected[&b"pipe"[..]].kind, 'p');
    assert_same(&expected, &describe(&out), "pipes and devices");
}

/// A sparse file is stored as its data (the backup reads no holes) and
/// restored with its holes: same bytes, no more disk than the original,
/// also from a later snapshot where it was unchanged (its holes come from
/// the agent's index, not a new read).
#[test]
fn a_sparse_file_comes_back_sparse() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mib = 1u64 << 20;
    let sparse = std::fs::File::create(src.join("disk.img")).unwrap();
    sparse.set_len(256 * mib).unwrap();
    let data: Vec<u8> = (0..mib).map(|i| (i * 7 % 251) as u8).collect();
    sparse.write_all_at(&data, 10 * mib).unwrap();
    sparse
        .write_all_at(&data[..mib as usize / 2], 200 * mib)
        .unwrap();
    sparse.sync_all().unwrap();
    drop(sparse);
    std::fs::write(src.join("dense.txt"), b"not sparse").unwrap();
    let allocated = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    let original = allocated(&src.join("disk.img"));
    assert!(
        original < 4 * mib,
        "the file system made it {original} bytes"
    );

    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    let first = site.backup();
    let read = first["bytes_read"].as_u64().unwrap();
    assert!(
        read < 2 * mib,
        "read {read} bytes of a 256 MiB sparse file: {first}"
    );
    assert_eq!(first["bytes"], 256 * mib + 10, "{first}");
    let second = site.backup();
    assert_eq!(second["files_read"], 0, "{second}");
    for snapshot in ["1", "2"] {
        let out = w.join(format!("restored-{snapshot}"));
        site.restore(&out, &["--snapshot", snapshot]);
        assert_same(&describe(&src), &describe(&out), "sparse file");
        let restored = allocated(&out.join("disk.img"));
        assert!(
            restored <= original + 64 * 1024,
            "snapshot {snapshot}: {restored} bytes allocated, the original {original}"
        );
    }
}

/// A POSIX access ACL as Linux keeps it in `system.posix_acl_access`:
/// owner rw-, user 1234 r--, group r--, mask r--, other ---.
fn acl_granting_user_1234_read() -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1234),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}

/// Extended attributes and ACLs on files, directories and an unchanged
/// file of a later snapshot; a set-user-id file keeps its bit; owners are
/// mapped by name unless --numeric-owner (the tests run as root).
#[test]
fn attributes_acls_and_owners_come_back() {
    use rustix::fs::{XattrFlags, lsetxattr};
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("shared")).unwrap();
    let tagged = src.join("shared/tagged.txt");
    std::fs::write(&tagged, b"with attributes").unwrap();
    std::fs::write(src.join("plain.txt"), b"without").unwrap();
    lsetxattr(&tagged, "user.origin", b"site-a", XattrFlags::empty()).unwrap();
    lsetxattr(&tagged, "user.empty", b"", XattrFlags::empty()).unwrap();
    lsetxattr(&tagged, "user.big", &vec![9u8; 2_000], XattrFlags::empty()).unwrap();
    let acl = acl_granting_user_1234_read();
    lsetxattr(
        &tagged,
        "system.posix_acl_access",
        &acl,
        XattrFlags::empty(),
    )
    .unwrap();
    lsetxattr(
        src.join("shared"),
        "user.dir",
        b"a directory's",
        XattrFlags::empty(),
    )
    .unwrap();
    let setuid = src.join("setuid-tool");
    std::fs::write(&setuid, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        &setuid,
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    // Owned by "nobody", whose id the restore looks up by name.
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody: u32 = String::from_utf8_lossy(&nobody.stdout)
        .trim()
        .parse()
        .unwrap();
    std::os::unix::fs::lchown(src.join("plain.txt"), Some(nobody), Some(nobody)).unwrap();

    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();
    let second = site.backup();
    assert_eq!(second["files_read"], 0, "{second}");
    let expected = describe(&src);
    assert_eq!(expected[&b"shared/tagged.txt"[..]].xattrs.len(), 4);
    for snapshot in ["1", "2"] {
        let out = w.join(format!("restored-{snapshot}"));
        site.restore(&out, &["--snapshot", snapshot]);
        assert_same(&expected, &describe(&out), "attributes and owners");
    }
    // The names the manifest holds are what a restore maps: with
    // --numeric-owner the same ids come back here too.
    let numeric = w.join("numeric");
    site.restore(&numeric, &["--numeric-owner"]);
    assert_same(&expected, &describe(&numeric), "numeric owners");
}
