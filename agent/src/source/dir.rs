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
        let root_meta = fs::metadata(&self.root).map_err(|e| self.io_err("stat", &self.root, e))?;
        if !root_meta.is_dir() {
            return Err(self.io_err(
                "scan",
                &self.root,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let mut skipped = Vec::new();
        // Depth-first, children sorted by name bytes: that is tree order.
        // Each stack level holds the still-unvisited children of one directory.
        let mut stack: Vec<(Vec<u8>, std::vec::IntoIter<Child>)> = Vec::new();
        let children = self.sorted_children(b"", &mut skipped)?;
        stack.push((Vec::new(), children.into_iter()));
        while let Some((dir, children)) = stack.last_mut() {
            let Some(child) = children.next() else {
                stack.pop();
                continue;
            };
            let rel = if dir.is_empty() {
                child.name
            } else {
                let mut p = dir.clone();
                p.push(b'/');
                p.extend_from_slice(&child.name);
                p
            };
            // Through the listing's open directory: no walk down the path.
            let meta = match child.entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // gone since listed
                Err(e) => {
                    skipped.push(Skipped {
                        path: rel,
                        reason: format!("stat: {e}"),
                    });
                    continue;
                }
            };
            let ft = meta.file_type();
            if self.filter.excludes(&rel, ft.is_dir()) {
                tracing::debug!(path = %String::from_utf8_lossy(&rel), "excluded");
                continue;
            }
            if ft.is_file() {
                visit(entry_from(rel, EntryKind::File, &meta, Vec::new()))?;
            } else if ft.is_symlink() {
                match fs::read_link(child.entry.path()) {
                    Ok(t) => {
                        let target = t.as_os_str().as_bytes().to_vec();
                        visit(entry_from(rel, EntryKind::Symlink, &meta, target))?;
                    }
                    Err(e) => skipped.push(Skipped {
                        path: rel,
                        reason: format!("readlink: {e}"),
                    }),
                }
            } else if ft.is_dir() {
                // Another file system's directory is kept, empty, as a
                // mount point; a tagged cache keeps its tag only.
                let listed = match () {
                    () if self.filter.one_file_system && meta.dev() != root_meta.dev() => {
                        Ok(Vec::new())
                    }
                    () => self
                        .sorted_children(&rel, &mut skipped)
                        .map(|mut children| {
                            if self.filter.is_tagged_cache(&self.full_path(&rel)) {
                                children.retain(|c| c.name == b"CACHEDIR.TAG");
                            }
                            children
                        }),
                };
                match listed {
                    Ok(children) => {
                        visit(entry_from(rel.clone(), EntryKind::Dir, &meta, Vec::new()))?;
                        stack.push((rel, children.into_iter()));
                    }
                    Err(SourceError::Io { source, .. }) => skipped.push(Skipped {
                        path: rel,
                        reason: format!("list: {source}"),
                    }),
                    Err(e) => return Err(e),
                }
            } else {
                use std::os::unix::fs::FileTypeExt;
                let kind = match () {
                    () if ft.is_fifo() => EntryKind::Fifo,
                    () if ft.is_char_device() => EntryKind::CharDevice,
                    () if ft.is_block_device() => EntryKind::BlockDevice,
                    () if ft.is_socket() => EntryKind::Socket,
                    () => {
                        skipped.push(Skipped {
                            path: rel,
                            reason: format!("unknown file type {:o}", meta.mode() & 0o170000),
                        });
                        continue;
                    }
                };
                visit(entry_from(rel, kind, &meta, Vec::new()))?;
            }
        }
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

/// One listed name. The entry keeps its directory open, so its metadata is
/// read relative to it (`fstatat`), not by a lookup from the root down.
struct Child {
    name: Vec<u8>,
    entry: fs::DirEntry,
}
