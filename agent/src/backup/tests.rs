//! The backup pipeline's pieces, without a hub.

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI64, Ordering};

use super::scan::{ReadResult, read_file};
use super::*;
use crate::journal::FileStamp;

#[test]
fn every_part_but_the_last_is_checked_before_the_commit() {
    let run = |parts: Vec<Vec<u8>>| {
        let mut checked = Vec::new();
        let last = hold_back_last(
            |each| parts.into_iter().try_for_each(each),
            |part| {
                checked.push(part);
                Ok::<_, BackupError>(())
            },
        )
        .unwrap();
        (checked, last)
    };
    assert_eq!(run(vec![]), (vec![], vec![]));
    assert_eq!(run(vec![vec![1]]), (vec![], vec![1]));
    assert_eq!(
        run(vec![vec![1], vec![2], vec![3]]),
        (vec![vec![1], vec![2]], vec![3])
    );
    // A refused part stops the rest.
    let mut checked = 0;
    let refused = hold_back_last(
        |each| [vec![1], vec![2], vec![3]].into_iter().try_for_each(each),
        |_| {
            checked += 1;
            Err(BackupError::MissingChunks("no".into()))
        },
    );
    assert!(matches!(refused, Err(BackupError::MissingChunks(_))));
    assert_eq!(checked, 1);
}

/// A one-file source whose file may change between every look.
struct Shifty {
    changes_each_look: bool,
    vanished: bool,
    looks: AtomicI64,
}

fn entry() -> SourceEntry {
    SourceEntry {
        path: b"f".to_vec(),
        kind: EntryKind::File,
        stamp: FileStamp {
            size: 5,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            mode: 0o100644,
        },
        uid: 0,
        gid: 0,
        target: Vec::new(),
        link_key: None,
        object: None,
        rdev: 0,
        sparse: false,
    }
}

impl Source for Shifty {
    fn describe(&self) -> String {
        "shifty".into()
    }
    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError> {
        visit(entry())?;
        Ok(Vec::new())
    }
    fn open(&self, _: &SourceEntry) -> Result<Content, SourceError> {
        if self.vanished {
            return Ok(Content::Vanished);
        }
        Ok(Content::Reader(Box::new(&b"hello"[..])))
    }
    fn stamp_now(&self, _: &SourceEntry) -> Result<Option<FileStamp>, SourceError> {
        let look = self.looks.fetch_add(1, Ordering::SeqCst) + 1;
        let mut stamp = entry().stamp;
        if self.changes_each_look {
            stamp.mtime_ns = look;
        }
        Ok(Some(stamp))
    }
}

fn read(source: &Shifty) -> (Result<ReadResult, String>, BackupReport, usize) {
    read_entry(source, &mut entry())
}

fn read_entry(
    source: &dyn Source,
    e: &mut SourceEntry,
) -> (Result<ReadResult, String>, BackupReport, usize) {
    let keys = TenantKeys::generate();
    let (gear, gear_ls) = keys.gear_tables();
    let params = ChunkerParams::new(gear, gear_ls);
    let sent = std::cell::Cell::new(0);
    let send = |_: BlobKind, data: Vec<u8>| {
        sent.set(sent.get() + 1);
        Ok(BlobId(keys.chunk_id(&data)))
    };
    let mut report = BackupReport::default();
    let mut chunker = ChunkBuffer::new(&params);
    let out = read_file(
        source,
        &mut chunker,
        e,
        &send,
        &mut report,
        &Progress::hidden(),
    )
    .unwrap();
    (out, report, sent.get())
}

#[test]
fn a_stable_file_is_read_once() {
    let (out, report, sent) = read(&Shifty {
        changes_each_look: false,
        vanished: false,
        looks: AtomicI64::new(0),
    });
    assert_eq!(out.unwrap().0.len(), 1);
    assert_eq!((report.files_read, report.bytes_read, sent), (1, 5, 1));
}

#[test]
fn a_file_that_keeps_changing_is_reported_not_stored() {
    let source = Shifty {
        changes_each_look: true,
        vanished: false,
        looks: AtomicI64::new(0),
    };
    let (out, report, _) = read(&source);
    let reason = out.unwrap_err();
    assert!(reason.contains("kept changing"), "{reason}");
    assert_eq!(
        report.files_read, READ_ATTEMPTS as u64,
        "retried before giving up"
    );
}

#[test]
fn a_vanished_file_is_reported() {
    let (out, _, sent) = read(&Shifty {
        changes_each_look: false,
        vanished: true,
        looks: AtomicI64::new(0),
    });
    assert!(out.unwrap_err().contains("vanished"));
    assert_eq!(sent, 0);
}

#[test]
fn a_file_that_grew_since_the_listing_is_read_again_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::write(&path, b"first line\n").unwrap();
    let source = crate::source::dir::DirSource::new(dir.path());
    let mut e = crate::source::scan_all(&source).remove(0);
    let old = e.stamp;
    std::fs::write(&path, b"first line\nsecond line\n").unwrap();

    let (out, report, _) = read_entry(&source, &mut e);
    assert_eq!(out.unwrap().0.len(), 1);
    assert_eq!(
        e.stamp.size, 23,
        "the entry carries the stamp of what was read"
    );
    assert_ne!(e.stamp, old);
    // Read once under the old stamp, which no longer held, then again.
    assert_eq!((report.files_read, report.bytes_read), (2, 46));
}

/// A directory source whose reader writes to the file it reads after its
/// first read, `rewrites` times in all: a writer racing the backup.
struct RacedDir {
    dir: crate::source::dir::DirSource,
    root: std::path::PathBuf,
    rewrites: AtomicI64,
}

struct RacingReader {
    file: std::fs::File,
    path: std::path::PathBuf,
    race: bool,
}

impl std::io::Read for RacingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if self.race && n > 0 {
            self.race = false;
            // Another writer, mid-read: more bytes and a new mtime.
            let mut other = std::fs::OpenOptions::new().append(true).open(&self.path)?;
            std::io::Write::write_all(&mut other, b" and more")?;
        }
        Ok(n)
    }
}

impl Source for RacedDir {
    fn describe(&self) -> String {
        "raced".into()
    }
    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), crate::source::SourceError>,
    ) -> Result<Vec<crate::source::Skipped>, crate::source::SourceError> {
        self.dir.scan(visit)
    }
    fn open(&self, entry: &SourceEntry) -> Result<Content, crate::source::SourceError> {
        let path = self.root.join(std::ffi::OsStr::from_bytes(&entry.path));
        let race = self.rewrites.fetch_sub(1, Ordering::SeqCst) > 0;
        let file = std::fs::File::open(&path).unwrap();
        Ok(Content::Reader(Box::new(RacingReader { file, path, race })))
    }
    fn stamp_now(
        &self,
        entry: &SourceEntry,
    ) -> Result<Option<FileStamp>, crate::source::SourceError> {
        self.dir.stamp_now(entry)
    }
}

#[test]
fn a_file_rewritten_while_it_is_read_is_read_again_or_reported_never_stored_torn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, b"first version").unwrap();
    let raced = |rewrites| RacedDir {
        dir: crate::source::dir::DirSource::new(dir.path()),
        root: dir.path().to_path_buf(),
        rewrites: AtomicI64::new(rewrites),
    };

    // Rewritten during the first read only: read again, the final version kept.
    let source = raced(1);
    let mut e = crate::source::scan_all(&source).remove(0);
    let (out, report, _) = read_entry(&source, &mut e);
    assert!(out.is_ok());
    assert_eq!(report.files_read, 2, "read again after the race");
    assert_eq!(e.stamp.size, std::fs::metadata(&path).unwrap().len());
    assert_eq!(e.stamp.size, b"first version and more".len() as u64);

    // Rewritten during every read: reported, not stored.
    let source = raced(i64::MAX);
    let mut e = crate::source::scan_all(&source).remove(0);
    let (out, report, _) = read_entry(&source, &mut e);
    assert!(out.unwrap_err().contains("kept changing"));
    assert_eq!(report.files_read, READ_ATTEMPTS as u64);
}
