//! The behaviour every [`Source`] must have. Each implementation's tests
//! build a source holding [`FIXTURE`] and call [`run_all`].

#![allow(clippy::expect_used)] // a conformance failure is a panic, as in any test

use std::io::Read;

use ferry_proto::manifest::cmp_paths;

use super::{Content, EntryKind, Source, SourceEntry, SourceError};

/// Files every conformance source holds: (path, content). Paths are chosen
/// so that tree order and plain byte order differ (`a.txt` vs `a/…`).
pub const FIXTURE: &[(&str, &[u8])] = &[
    ("a/inner.bin", b"inner"),
    ("a.txt", b"alpha"),
    ("b/c/deep.txt", b"deep content"),
    ("empty", b""),
];

fn collect(source: &dyn Source) -> Result<Vec<SourceEntry>, SourceError> {
    let mut seen = Vec::new();
    let skipped = source.scan(&mut |e| {
        seen.push(e);
        Ok(())
    })?;
    assert!(
        skipped.is_empty(),
        "{}: unexpected skips {skipped:?}",
        source.describe()
    );
    Ok(seen)
}

fn read_all(source: &dyn Source, entry: &SourceEntry) -> Vec<u8> {
    match source.open(entry) {
        Ok(Content::Reader(mut r) | Content::Object { reader: mut r, .. }) => {
            let mut out = Vec::new();
            r.read_to_end(&mut out).expect("read");
            out
        }
        Ok(Content::File(mut f)) => {
            let mut out = Vec::new();
            f.read_to_end(&mut out).expect("read");
            out
        }
        Ok(Content::Vanished) => panic!("{}: vanished", String::from_utf8_lossy(&entry.path)),
        Err(e) => panic!("open: {e}"),
    }
}

/// Every fixture file is found once, with its content and size, in
/// manifest order (tree order for files, key byte order for objects).
pub fn scan_finds_every_file_in_order(source: &dyn Source) {
    let seen = collect(source).expect("scan");
    type InOrder = fn(&[u8], &[u8]) -> bool;
    let (kind, in_order): (_, InOrder) = match source.holds_objects() {
        true => (EntryKind::Object, |a, b| a < b),
        false => (EntryKind::File, |a, b| cmp_paths(a, b).is_lt()),
    };
    for pair in seen.windows(2) {
        assert!(
            in_order(&pair[0].path, &pair[1].path),
            "{}: out of order: {:?} then {:?}",
            source.describe(),
            String::from_utf8_lossy(&pair[0].path),
            String::from_utf8_lossy(&pair[1].path)
        );
    }
    for (path, content) in FIXTURE {
        let found: Vec<_> = seen.iter().filter(|e| e.path == path.as_bytes()).collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {path} found {} times",
            source.describe(),
            found.len()
        );
        assert_eq!(found[0].kind, kind);
        assert_eq!(found[0].stamp.size, content.len() as u64, "{path}");
        assert_eq!(read_all(source, found[0]), *content, "{path}");
    }
}

/// A scan can be stopped by its visitor, and the error comes back.
pub fn visitor_can_stop_the_scan(source: &dyn Source) {
    let mut count = 0;
    let result = source.scan(&mut |_| {
        count += 1;
        Err(SourceError::Stopped("enough".into()))
    });
    assert!(
        matches!(result, Err(SourceError::Stopped(_))),
        "{}",
        source.describe()
    );
    assert_eq!(count, 1);
}

/// The stamp of an untouched entry is stable between scan and `stamp_now`.
pub fn stamps_are_stable(source: &dyn Source) {
    for entry in collect(source).expect("scan") {
        if matches!(entry.kind, EntryKind::File | EntryKind::Object) {
            assert_eq!(source.stamp_now(&entry).expect("stamp"), Some(entry.stamp));
        }
    }
}

/// After `open`, the content's version is the scanned one: an object read
/// as a whole version carries the stamp the scan gave it.
pub fn open_reads_the_scanned_version(source: &dyn Source) {
    for entry in collect(source).expect("scan") {
        if let Ok(Content::Object { stamp, meta, .. }) = source.open(&entry) {
            assert_eq!(
                stamp,
                entry.stamp,
                "{}",
                String::from_utf8_lossy(&entry.path)
            );
            let listed = entry
                .object
                .as_ref()
                .expect("an object entry carries its etag");
            assert_eq!(meta.etag, listed.etag);
        }
    }
}

pub fn run_all(source: &dyn Source) {
    open_reads_the_scanned_version(source);
    scan_finds_every_file_in_order(source);
    visitor_can_stop_the_scan(source);
    stamps_are_stable(source);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dir::DirSource;
    use std::os::unix::ffi::OsStrExt;

    fn fixture_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in FIXTURE {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn dir_source_conforms() {
        let dir = fixture_dir();
        run_all(&DirSource::new(dir.path()));
    }

    #[test]
    fn dir_source_lists_specials_and_keeps_odd_names() {
        let dir = fixture_dir();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9\n.bin");
        std::fs::write(dir.path().join(odd), b"latin-1 name").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let source = DirSource::new(dir.path());
        let mut seen = Vec::new();
        let skipped = source
            .scan(&mut |e| {
                seen.push(e);
                Ok(())
            })
            .unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let pipe = seen.iter().find(|e| e.path == b"pipe").unwrap();
        assert_eq!(pipe.kind, EntryKind::Fifo);
        assert!(seen.iter().any(|e| e.path == b"caf\xe9\n.bin"));
        let link = seen.iter().find(|e| e.path == b"link").unwrap();
        assert_eq!(
            (link.kind, link.target.as_slice()),
            (EntryKind::Symlink, &b"a.txt"[..])
        );
    }
}
