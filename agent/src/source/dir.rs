//! A directory tree as a source. Names are bytes (`OsStrExt`) and symlinks
//! are never followed; named pipes, device nodes and sockets are listed
//! with their kind (a backup counts sockets and keeps the rest).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::filter::Filter;
use super::{Content, EntryKind, Skipped, Source, SourceEntry, SourceError};
use crate::journal::FileStamp;

pub struct DirSource {
    root: PathBuf,
    filter: Filter,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            filter: Filter::default(),
        }
    }

    /// The source, leaving out what `filter` excludes.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    fn full_path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn io_err(&self, op: &'static str, path: &Path, source: io::Error) -> SourceError {
        SourceError::Io {
            root: self.root.display().to_string(),
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

pub fn stamp_of(meta: &Metadata) -> FileStamp {
    FileStamp {
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        mode: meta.mode(),
    }
}

fn entry_from(path: Vec<u8>, kind: EntryKind, meta: &Metadata, target: Vec<u8>) -> SourceEntry {
    let link_key = (kind == EntryKind::File && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    SourceEntry {
        path,
        kind,
        stamp: stamp_of(meta),
        uid: meta.uid(),
        gid: meta.gid(),
        target,
        link_key,
        object: None,
        rdev: meta.rdev(),
        sparse: kind == EntryKind::File && meta.blocks().saturating_mul(512) < meta.len(),
    }
}

impl Source for DirSource {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError> {
        let root_dev = self.root_dev()?;
        let mut skipped = Vec::new();
        self.walk_below(b"", root_dev, visit, &mut skipped)?;
        Ok(skipped)
    }

    fn open(&self, entry: &SourceEntry) -> Result<Content, SourceError> {
        let full = self.full_path(&entry.path);
        match File::open(&full) {
            Ok(f) => Ok(Content::File(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Content::Vanished),
            Err(e) => Err(self.io_err("open", &full, e)),
        }
    }

    fn xattrs(&self, entry: &SourceEntry) -> Result<Vec<ferry_proto::v1::Xattr>, SourceError> {
        let full = self.full_path(&entry.path);
        match crate::xattrs::read(&full) {
            Ok(x) => Ok(x),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io_err("read extended attributes of", &full, e)),
        }
    }

    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError> {
        let full = self.full_path(&entry.path);
        match fs::symlink_metadata(&full) {
            Ok(m) => Ok(Some(stamp_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err("stat", &full, e)),
        }
    }
}

impl DirSource {
    /// The device of the root, which must be a directory (`one-file-system`
    /// keeps to it).
    pub(crate) fn root_dev(&self) -> Result<u64, SourceError> {
        let root_meta = fs::metadata(&self.root).map_err(|e| self.io_err("stat", &self.root, e))?;
        if !root_meta.is_dir() {
            return Err(self.io_err(
                "scan",
                &self.root,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(root_meta.dev())
    }

    /// Visits everything below the directory `rel` (the root for `b""`),
    /// in tree order; not `rel` itself.
    pub(crate) fn walk_below(
        &self,
        rel: &[u8],
        root_dev: u64,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<(), SourceError> {
        let children = match rel.is_empty() {
            true => self.sorted_children(b"", skipped)?,
            false => match self.listing_of(rel, root_dev, skipped)? {
                Some(children) => children,
                None => return Ok(()),
            },
        };
        // Depth-first, children sorted by name bytes: that is tree order.
        // Each stack level holds the still-unvisited children of one directory.
        let mut stack: Vec<(Vec<u8>, std::vec::IntoIter<Child>)> = Vec::new();
        stack.push((rel.to_vec(), children.into_iter()));
        while let Some((dir, children)) = stack.last_mut() {
            let Some(child) = children.next() else {
                stack.pop();
                continue;
            };
            let rel = join(dir, &child.name);
            // Through the listing's open directory: no walk down the path.
            let Some((entry, listed)) = self.look(
                rel,
                child.entry.metadata(),
                || child.entry.path(),
                root_dev,
                skipped,
            )?
            else {
                continue;
            };
            let path = listed.is_some().then(|| entry.path.clone());
            visit(entry)?;
            if let (Some(path), Some(children)) = (path, listed) {
                stack.push((path, children.into_iter()));
            }
        }
        Ok(())
    }

    /// The entry at `rel` as it is now: `None` if it is gone, excluded or
    /// unreadable (then in `skipped`).
    pub(crate) fn entry_at(
        &self,
        rel: &[u8],
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<SourceEntry>, SourceError> {
        let full = self.full_path(rel);
        let meta = fs::symlink_metadata(&full);
        Ok(self
            .look(rel.to_vec(), meta, || full.clone(), root_dev, skipped)?
            .map(|(entry, _)| entry))
    }

    /// The children of directory `rel` as they are now, in name order, as
    /// a walk would list them (`b""`: the root's). `None` when `rel` cannot
    /// be listed (in `skipped`) or is gone.
    pub(crate) fn children_now(
        &self,
        rel: &[u8],
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<Vec<SourceEntry>>, SourceError> {
        let children = match rel.is_empty() {
            true => self.sorted_children(b"", skipped)?,
            false => match fs::symlink_metadata(self.full_path(rel)) {
                Ok(meta) if meta.is_dir() => match self.dir_children(rel, &meta, root_dev, skipped)
                {
                    Ok(children) => children,
                    Err(SourceError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Ok(None);
                    }
                    Err(SourceError::Io { source, .. }) => {
                        skipped.push(Skipped {
                            path: rel.to_vec(),
                            reason: format!("list: {source}"),
                        });
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                },
                _ => return Ok(None),
            },
        };
        let mut entries = Vec::with_capacity(children.len());
        for child in children {
            let rel = join(rel, &child.name);
            if let Some(entry) =
                self.look_flat(rel, child.entry.metadata(), || child.entry.path(), skipped)
            {
                entries.push(entry);
            }
        }
        Ok(Some(entries))
    }

    /// `rel`'s children for a walk below it, `None` when it cannot be
    /// listed (in `skipped`).
    fn listing_of(
        &self,
        rel: &[u8],
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<Vec<Child>>, SourceError> {
        let meta = fs::symlink_metadata(self.full_path(rel));
        match stat_or_skip(rel, meta, skipped) {
            Some(meta) if meta.is_dir() => self.listed(rel, &meta, root_dev, skipped),
            _ => Ok(None),
        }
    }

    /// [`Self::dir_children`], a directory that cannot be listed reported
    /// in `skipped` (`None`).
    fn listed(
        &self,
        rel: &[u8],
        meta: &Metadata,
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<Vec<Child>>, SourceError> {
        match self.dir_children(rel, meta, root_dev, skipped) {
            Ok(children) => Ok(Some(children)),
            Err(SourceError::Io { source, .. }) => {
                skipped.push(Skipped {
                    path: rel.to_vec(),
                    reason: format!("list: {source}"),
                });
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// What a walk makes of one listed name: its entry and, for a
    /// directory, its children (an unlistable directory is skipped whole).
    /// `None`: gone since listed, excluded, or unreadable (in `skipped`).
    fn look(
        &self,
        rel: Vec<u8>,
        meta: io::Result<Metadata>,
        full: impl FnOnce() -> PathBuf,
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Option<Looked>, SourceError> {
        let Some(meta) = stat_or_skip(&rel, meta, skipped) else {
            return Ok(None);
        };
        let Some(entry) = self.entry_of(rel, &meta, full, skipped) else {
            return Ok(None);
        };
        if entry.kind != EntryKind::Dir {
            return Ok(Some((entry, None)));
        }
        Ok(self
            .listed(&entry.path, &meta, root_dev, skipped)?
            .map(|children| (entry, Some(children))))
    }

    /// [`Self::look`] without listing a directory (its entry only).
    fn look_flat(
        &self,
        rel: Vec<u8>,
        meta: io::Result<Metadata>,
        full: impl FnOnce() -> PathBuf,
        skipped: &mut Vec<Skipped>,
    ) -> Option<SourceEntry> {
        let meta = stat_or_skip(&rel, meta, skipped)?;
        self.entry_of(rel, &meta, full, skipped)
    }

    /// The entry of a name whose metadata is `meta`, unless excluded or
    /// unreadable (in `skipped`).
    fn entry_of(
        &self,
        rel: Vec<u8>,
        meta: &Metadata,
        full: impl FnOnce() -> PathBuf,
        skipped: &mut Vec<Skipped>,
    ) -> Option<SourceEntry> {
        let ft = meta.file_type();
        if self.filter.excludes(&rel, ft.is_dir()) {
            tracing::debug!(path = %String::from_utf8_lossy(&rel), "excluded");
            return None;
        }
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            return match fs::read_link(full()) {
                Ok(t) => {
                    let target = t.as_os_str().as_bytes().to_vec();
                    Some(entry_from(rel, EntryKind::Symlink, meta, target))
                }
                Err(e) => {
                    skipped.push(Skipped {
                        path: rel,
                        reason: format!("readlink: {e}"),
                    });
                    None
                }
            };
        } else {
            use std::os::unix::fs::FileTypeExt;
            match () {
                () if ft.is_fifo() => EntryKind::Fifo,
                () if ft.is_char_device() => EntryKind::CharDevice,
                () if ft.is_block_device() => EntryKind::BlockDevice,
                () if ft.is_socket() => EntryKind::Socket,
                () => {
                    skipped.push(Skipped {
                        path: rel,
                        reason: format!("unknown file type {:o}", meta.mode() & 0o170000),
                    });
                    return None;
                }
            }
        };
        Some(entry_from(rel, kind, meta, Vec::new()))
    }

    /// A directory's children as a walk takes them: another file system's
    /// directory is kept, empty, as a mount point; a tagged cache keeps
    /// its tag only.
    fn dir_children(
        &self,
        rel: &[u8],
        meta: &Metadata,
        root_dev: u64,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Vec<Child>, SourceError> {
        if self.filter.one_file_system && meta.dev() != root_dev {
            return Ok(Vec::new());
        }
        let mut children = self.sorted_children(rel, skipped)?;
        if self.filter.is_tagged_cache(&self.full_path(rel)) {
            children.retain(|c| c.name == b"CACHEDIR.TAG");
        }
        Ok(children)
    }

    fn sorted_children(
        &self,
        rel: &[u8],
        skipped: &mut Vec<Skipped>,
    ) -> Result<Vec<Child>, SourceError> {
        let full = if rel.is_empty() {
            self.root.clone()
        } else {
            self.full_path(rel)
        };
        let reader = fs::read_dir(&full).map_err(|e| self.io_err("list", &full, e))?;
        let mut children = Vec::new();
        for item in reader {
            match item {
                Ok(entry) => children.push(Child {
                    name: entry.file_name().as_bytes().to_vec(),
                    entry,
                }),
                Err(e) => skipped.push(Skipped {
                    path: rel.to_vec(),
                    reason: format!("list: {e}"),
                }),
            }
        }
        children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(children)
    }
}

/// `meta` of `rel`, or `None`: gone (silently) or unreadable (in `skipped`).
fn stat_or_skip(
    rel: &[u8],
    meta: io::Result<Metadata>,
    skipped: &mut Vec<Skipped>,
) -> Option<Metadata> {
    match meta {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            skipped.push(Skipped {
                path: rel.to_vec(),
                reason: format!("stat: {e}"),
            });
            None
        }
    }
}

/// An entry a walk met and, for a directory, its children.
type Looked = (SourceEntry, Option<Vec<Child>>);

/// `dir`'s child `name` as a path below the root.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// One listed name. The entry keeps its directory open, so its metadata is
/// read relative to it (`fstatat`), not by a lookup from the root down.
struct Child {
    name: Vec<u8>,
    entry: fs::DirEntry,
}
