//! Sources: what an agent protects. A directory tree now; an S3 bucket later.
//! Every implementation runs the suite in [`conformance`].

pub mod conformance;
pub mod dir;

use std::io::Read;

use crate::journal::FileStamp;

/// What kind of thing an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One entry found by a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path relative to the source root, '/'-separated raw bytes.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub stamp: FileStamp,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target bytes (symlinks only).
    pub target: Vec<u8>,
    /// (device, inode) when the file has more than one link, for hard links.
    pub link_key: Option<(u64, u64)>,
}

/// Something a scan met and could not store, reported to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: Vec<u8>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {root}: {op} {path}: {source}")]
    Io {
        root: String,
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scan stopped: {0}")]
    Stopped(String),
}

/// What content reading found.
pub enum Content {
    /// The entry's bytes, to be read to the end.
    Reader(Box<dyn Read + Send>),
    /// The entry disappeared since the scan saw it.
    Vanished,
}

/// A protected source.
///
/// # Contract
/// - `scan` visits every entry once, in tree order (`ferry_proto::manifest::cmp_paths`),
///   a directory before its children. Entries it cannot read are reported in the
///   returned list, never silently dropped.
/// - `open` gives an entry's current content; `stamp_now` the entry's stamp now,
///   so a caller can tell that content changed while it was being read.
pub trait Source: Send + Sync {
    /// A name for logs and errors.
    fn describe(&self) -> String;

    /// Walks the source. `visit` may stop the walk by returning an error.
    ///
    /// # Errors
    /// The root cannot be read, or `visit` failed.
    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError>;

    /// Opens an entry's content for reading.
    ///
    /// # Errors
    /// The entry exists but cannot be read.
    fn open(&self, entry: &SourceEntry) -> Result<Content, SourceError>;

    /// The entry's stamp now, or `None` if it is gone.
    ///
    /// # Errors
    /// The entry cannot be examined.
    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError>;
}
