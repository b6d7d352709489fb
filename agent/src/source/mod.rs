//! Sources: what an agent protects: a directory tree ([`dir`]) or the
//! objects of an S3 bucket ([`bucket`]). Every implementation runs the suite
//! in [`conformance`].

pub mod bucket;
pub mod changed;
pub mod conformance;
pub mod dir;
pub mod filter;

use std::io::Read;

use ferry_proto::v1::ObjectMeta;

use crate::journal::FileStamp;

/// What kind of thing an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// An object of a bucket: a file with a key for a path and S3 metadata.
    Object,
    /// A named pipe.
    Fifo,
    /// Device nodes (`SourceEntry::rdev` says which device).
    CharDevice,
    BlockDevice,
    /// A socket: belongs to the process that made it, which makes it anew,
    /// so it is counted and not kept.
    Socket,
}

/// One entry found by a scan.
#[derive(Clone, Debug, PartialEq)]
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
    /// Objects: the etag and version id the listing gave.
    pub object: Option<Box<ObjectMeta>>,
    /// Device nodes: the device number.
    pub rdev: u64,
    /// Files with fewer blocks allocated than their size: they may have
    /// holes, so a backup looks for them (SEEK_HOLE) instead of reading them.
    pub sparse: bool,
}

impl SourceEntry {
    /// An object of a bucket, with the identity (etag) it was found with.
    pub fn object(path: Vec<u8>, stamp: FileStamp, meta: Box<ObjectMeta>) -> Self {
        Self {
            path,
            kind: EntryKind::Object,
            stamp,
            uid: 0,
            gid: 0,
            target: Vec::new(),
            link_key: None,
            object: Some(meta),
            rdev: 0,
            sparse: false,
        }
    }
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
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// What content reading found.
pub enum Content {
    /// A file opened on a filesystem. Its stamp after reading comes from
    /// the open descriptor: no second path lookup, and a file renamed over
    /// meanwhile still yields the one version that was read.
    File(std::fs::File),
    /// The entry's bytes, to be read to the end.
    Reader(Box<dyn Read + Send>),
    /// An object's bytes, read as one version: `stamp` and `meta` are that
    /// version's, so no later look is needed to tell a torn read.
    Object {
        reader: Box<dyn Read + Send>,
        stamp: FileStamp,
        meta: Box<ObjectMeta>,
    },
    /// The entry disappeared since the scan saw it.
    Vanished,
}

/// A protected source.
///
/// # Contract
/// - `scan` visits every entry once, in manifest order: tree order
///   (`ferry_proto::manifest::cmp_paths`, a directory before its children) for
///   files, key byte order for objects (a source holds one kind or the other).
///   Entries it cannot read are reported in the returned list, never silently
///   dropped. A scan that cannot finish fails: a partial scan is never taken
///   as the source's content, so nothing is deleted because a listing broke.
/// - `open` gives an entry's current content; `stamp_now` the entry's stamp now,
///   so a caller can tell that content changed while it was being read.
pub trait Source: Send + Sync {
    /// A name for logs and errors.
    fn describe(&self) -> String;

    /// True for a source of objects (entries sorted by key bytes).
    fn holds_objects(&self) -> bool {
        false
    }

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

    /// The entry's extended attributes (POSIX ACLs among them), sorted by
    /// name; none for a source without them.
    ///
    /// # Errors
    /// The attributes exist but cannot be read.
    fn xattrs(&self, _entry: &SourceEntry) -> Result<Vec<ferry_proto::v1::Xattr>, SourceError> {
        Ok(Vec::new())
    }

    /// The entry's stamp now, or `None` if it is gone.
    ///
    /// # Errors
    /// The entry cannot be examined.
    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError>;
}

/// Every entry a scan of `source` lists, in order (tests).
#[cfg(test)]
pub fn scan_all(source: &dyn Source) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    if let Err(e) = source.scan(&mut |e| {
        entries.push(e);
        Ok(())
    }) {
        panic!("scan of {}: {e}", source.describe());
    }
    entries
}
