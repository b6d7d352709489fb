//! The directory writer of a restore: creates the manifest's entries in an
//! empty directory (or finishes an earlier restore's, `--resume`), pours
//! each file's plaintext chunks into it (large files with O_DIRECT), and
//! applies modes, times and owners last. An entry it cannot write is
//! reported, never the end of the restore.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_direct::DirectWriter;
use ferry_proto::manifest::ManifestError;
use ferry_proto::v1::{EntryType, ManifestEntry};
use filetime::FileTime;
use tokio::sync::mpsc;

use crate::owners::Ids;
use crate::progress::Progress;
use crate::restore::{
    NotRestored, Plain, Planned, RestoreError, RestoreReport, next_plain, size_mismatch,
};
use crate::restore_durable::Pending;

/// Checks the restore target: new or empty, or with `resume` any
/// directory (an earlier restore's, to finish).
pub(crate) fn prepare_target(target: &Path, resume: bool) -> Result<(), RestoreError> {
    let bad = |reason: String| RestoreError::Target {
        path: target.to_path_buf(),
        reason,
    };
    match fs::read_dir(target) {
        Ok(_) if resume => Ok(()),
        Ok(mut items) => {
            if items.next().is_some() {
                return Err(bad(
                    "exists and is not empty; restore into a new or empty directory, or finish an earlier restore with --resume".into(),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(|e| bad(format!("cannot create: {e}")))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Whether a resumed restore may keep the file the target already holds
/// for `entry`: a regular file, reached through real directories, of the
/// entry's size and modification time (the quick check rsync makes; a
/// restore writes a file under a temporary name and sets its time last, so
/// a file cut short never passes it).
pub(crate) fn already_restored(target: &Path, entry: &ManifestEntry) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !is_restored_file(target, &entry.path) {
        return false;
    }
    fs::symlink_metadata(target.join(OsStr::from_bytes(&entry.path))).is_ok_and(|meta| {
        meta.len() == entry.size
            && meta.mtime() == entry.mtime_sec
            && i64::from(entry.mtime_nsec) == meta.mtime_nsec()
    })
}

/// Whether `rel` (a checked relative manifest path) names a regular file
/// below `target` through real directories only. A symlink the manifest
/// made earlier must not let a hard link reach outside the target: linking
/// `dir/link/passwd`, with `dir/link` pointing at /etc, would put a name for
/// /etc/passwd in the tree, and the entry's metadata would then be applied
/// to it.
fn is_restored_file(target: &Path, rel: &[u8]) -> bool {
    let mut at = target.to_path_buf();
    let mut parts = rel.split(|b| *b == b'/').peekable();
    while let Some(part) = parts.next() {
        at.push(OsStr::from_bytes(part));
        let Ok(meta) = fs::symlink_metadata(&at) else {
            return false;
        };
        let last = parts.peek().is_none();
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return false;
        }
    }
    true
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    mtime: FileTime,
    uid: u32,
    gid: u32,
    xattrs: Vec<ferry_proto::v1::Xattr>,
}

/// How many entries that could not be written are listed by path in the
/// report (all are counted): the list stays small however many fail.
const LISTED_FAILURES: usize = crate::restore::LISTED_ENTRIES;

/// The writer: runs on a blocking thread. An entry that cannot be written
/// is reported and the restore goes on with the rest; what stops it is
/// the hub, a damaged chunk or a manifest that breaks its own rules.
#[allow(
    clippy::too_many_arguments,
    reason = "the target's settings and the stages' ends"
)]
pub(crate) fn write_tree(
    target: &Path,
    resume: bool,
    numeric_owner: bool,
    durable: bool,
    mut entries: mpsc::Receiver<Planned>,
    mut plains: mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
) -> Result<RestoreReport, RestoreError> {
    let mut writer = TreeWriter {
        target,
        resume,
        ids: Ids::new(numeric_owner),
        report: RestoreReport::default(),
        dirs: Vec::new(),
        pending: durable.then(Pending::default),
    };
    // Directories of the manifest enclosing the current entry, innermost
    // last, and whether each was restored. A path is written only below a
    // directory the manifest itself made, so a symlink in the manifest can
    // never redirect a later write outside the target.
    let mut open_dirs: Vec<(Vec<u8>, bool)> = Vec::new();
    while let Some(Planned { entry, present }) = entries.blocking_recv() {
        if entry.r#type == EntryType::Object as i32 {
            return Err(RestoreError::Target {
                path: target.to_path_buf(),
                reason: "this is a bucket snapshot: restore it into a bucket (--to-target)".into(),
            });
        }
        let parent = match entry.path.iter().rposition(|b| *b == b'/') {
            Some(i) => &entry.path[..i],
            None => &[][..],
        };
        while open_dirs
            .last()
            .is_some_and(|(d, _)| d.as_slice() != parent)
        {
            open_dirs.pop();
        }
        if !parent.is_empty() && open_dirs.last().map(|(d, _)| d.as_slice()) != Some(parent) {
            return Err(RestoreError::Manifest(ManifestError::Invalid {
                index: 0,
                path: String::from_utf8_lossy(&entry.path).into_owned(),
                reason: "parent is not a directory of the manifest",
            }));
        }
        let path = target.join(OsStr::from_bytes(&entry.path));
        let mut consumed = 0;
        let written = match open_dirs.last() {
            Some((_, false)) => Err(RestoreError::Target {
                path: path.clone(),
                reason: "its directory could not be restored".into(),
            }),
            _ => writer.entry(
                &path,
                &entry,
                present,
                &mut plains,
                runtime,
                progress,
                &mut consumed,
            ),
        };
        if entry.r#type == EntryType::Dir as i32 {
            open_dirs.push((entry.path.clone(), written.is_ok()));
        }
        match written {
            Ok(()) => {}
            Err(e @ (RestoreError::Write { .. } | RestoreError::Target { .. })) => {
                writer.failed(&path, &e);
                // The file's chunks are on their way all the same: each is
                // still checked, and a damaged one stops the restore.
                if !present && entry.hardlink_to.is_empty() {
                    for _ in consumed..entry.chunks.len() {
                        next_plain(&mut plains, runtime)?;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    writer.flush(true)?;
    // Children change a directory's mtime, so directories are finished last,
    // innermost first.
    let dirs = std::mem::take(&mut writer.dirs);
    for dir in dirs.iter().rev() {
        let finished = fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode))
            .and_then(|()| filetime::set_file_mtime(&dir.path, dir.mtime))
            .map_err(|source| RestoreError::Write {
                path: dir.path.clone(),
                source,
            })
            .and_then(|()| set_owner(&dir.path, dir.uid, dir.gid))
            .and_then(|()| set_xattrs(&dir.path, &dir.xattrs));
        if let Err(e) = finished {
            writer.failed(&dir.path, &e);
        }
    }
    if let Some(pending) = writer.pending.as_mut() {
        pending.sync_made_dirs()?;
    }
    Ok(writer.report)
}

/// The state of one tree's writing.
struct TreeWriter<'a> {
    target: &'a Path,
    resume: bool,
    ids: Ids,
    report: RestoreReport,
    /// Directories made, finished once everything is in them.
    dirs: Vec<DirMeta>,
    /// Durable: files written under their temporary names, named only
    /// once flushed ([`crate::restore_durable`]).
    pending: Option<Pending>,
}

impl TreeWriter<'_> {
    /// Sends the pending files to be flushed and named; with `wait`,
    /// waits until every file sent so far has its name (a failed rename
    /// is that file's failure).
    ///
    /// # Errors
    /// A flush that fails.
    fn flush(&mut self, wait: bool) -> Result<(), RestoreError> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(());
        };
        pending.send()?;
        if !wait {
            return Ok(());
        }
        for (path, source) in pending.wait()? {
            // Counted as written when it was; it was not, in the end.
            self.report.files = self.report.files.saturating_sub(1);
            let rel = path.strip_prefix(self.target).unwrap_or(&path);
            let rel = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
            self.report.written_entries.retain(|p| *p != rel);
            self.failed(&path.clone(), &RestoreError::Write { path, source });
        }
        Ok(())
    }

    fn failed(&mut self, path: &Path, error: &RestoreError) {
        tracing::warn!(path = %path.display(), %error, "not restored");
        self.report.not_restored += 1;
        if self.report.not_restored_entries.len() < LISTED_FAILURES {
            let path = path.strip_prefix(self.target).unwrap_or(path);
            self.report.not_restored_entries.push(NotRestored {
                path: String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned(),
                reason: match error {
                    RestoreError::Write { source, .. } => source.to_string(),
                    RestoreError::Target { reason, .. } => reason.clone(),
                    other => other.to_string(),
                },
            });
        }
    }

    /// Gives `path` the entry's owner (by name where this system knows it),
    /// then its extended attributes: after the owner, since a change of
    /// owner drops some (security.capability), and with the set-id bits
    /// again, which a change of owner clears.
    fn own(&mut self, path: &Path, entry: &ManifestEntry) -> Result<(), RestoreError> {
        let (uid, gid) = (
            self.ids.uid(entry.uid, &entry.user),
            self.ids.gid(entry.gid, &entry.group),
        );
        set_owner(path, uid, gid)?;
        if entry.mode & 0o6000 != 0 && entry.r#type != EntryType::Symlink as i32 {
            fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).map_err(
                |source| RestoreError::Write {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
        }
        set_xattrs(path, &entry.xattrs)
    }

    /// Makes way for a new entry at `path` in a resumed restore: whatever
    /// is there that is not a directory goes (a directory in the way stays,
    /// and the new entry then fails).
    fn clear(&self, path: &Path) {
        if self.resume
            && fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir())
            && let Err(e) = fs::remove_file(path)
        {
            tracing::debug!(path = %path.display(), error = %e, "cannot clear the way");
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one entry's whole context")]
    fn entry(
        &mut self,
        path: &Path,
        entry: &ManifestEntry,
        present: bool,
        plains: &mut mpsc::Receiver<Plain>,
        runtime: &tokio::runtime::Handle,
        progress: &Progress,
        consumed: &mut usize,
    ) -> Result<(), RestoreError> {
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Write { path, source }
        };
        let mtime = FileTime::from_unix_time(entry.mtime_sec, entry.mtime_nsec);
        match EntryType::try_from(entry.r#type) {
            Ok(EntryType::Dir) => {
                let made = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
                if !(self.resume && made) {
                    self.clear(path);
                    fs::create_dir(path).map_err(werr(path))?;
                    if let Some(pending) = self.pending.as_mut() {
                        pending.made_dir(path);
                    }
                }
                self.dirs.push(DirMeta {
                    path: path.to_path_buf(),
                    mode: entry.mode,
                    mtime,
                    uid: self.ids.uid(entry.uid, &entry.user),
                    gid: self.ids.gid(entry.gid, &entry.group),
                    xattrs: entry.xattrs.clone(),
                });
                self.report.dirs += 1;
            }
            Ok(EntryType::Symlink) => {
                let link = OsStr::from_bytes(&entry.symlink_target);
                let made = fs::read_link(path).is_ok_and(|t| t.as_os_str() == link);
                if !(self.resume && made) {
                    self.clear(path);
                    std::os::unix::fs::symlink(link, path).map_err(werr(path))?;
                }
                filetime::set_symlink_file_times(path, mtime, mtime).map_err(werr(path))?;
                self.own(path, entry)?;
                self.report.symlinks += 1;
            }
            Ok(kind @ (EntryType::Fifo | EntryType::CharDevice | EntryType::BlockDevice)) => {
                let made = fs::symlink_metadata(path).is_ok_and(|m| same_special(&m, kind, entry));
                if !(self.resume && made) {
                    self.clear(path);
                    make_special(path, kind, entry.rdev).map_err(werr(path))?;
                }
                fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
                    .map_err(werr(path))?;
                filetime::set_symlink_file_times(path, mtime, mtime).map_err(werr(path))?;
                self.own(path, entry)?;
                self.report.specials += 1;
            }
            Ok(EntryType::File) if !entry.hardlink_to.is_empty() => {
                // The file linked to may be waiting for its name.
                self.flush(true)?;
                let first = self.target.join(OsStr::from_bytes(&entry.hardlink_to));
                if !is_restored_file(self.target, &entry.hardlink_to) {
                    return Err(RestoreError::Target {
                        path: path.to_path_buf(),
                        reason: "hard link to an entry that is not a restored file".into(),
                    });
                }
                if !(self.resume && same_file(&first, path)) {
                    self.clear(path);
                    fs::hard_link(&first, path).map_err(werr(path))?;
                }
                self.report.hardlinks += 1;
                self.report.files += 1;
            }
            Ok(EntryType::File) if present => {
                finish_path(path, entry.mode, mtime)?;
                self.own(path, entry)?;
                self.report.files += 1;
                self.report.already_present += 1;
                progress.add_files(1);
            }
            Ok(EntryType::File) => {
                // Written under a temporary name and renamed once complete and
                // verified, so a failed restore never leaves a wrong file under
                // the real name.
                let partial = partial_name(path);
                let _ = fs::remove_file(&partial);
                // Owned under the temporary name: a rename keeps it all.
                // A file its owner may not read cannot be opened again to
                // be flushed: flushed now, by the handle that wrote it.
                let sync_now = self.pending.is_some() && entry.mode & 0o400 == 0;
                let written = write_file(
                    &partial, entry, sync_now, plains, runtime, progress, consumed,
                )
                .and_then(|written| {
                    self.own(&partial, entry)?;
                    Ok(written)
                })
                .and_then(|written| {
                    match self.pending.as_mut() {
                        Some(pending) => {
                            if pending.add(partial.clone(), path.to_path_buf(), written, sync_now) {
                                pending.send()?;
                            }
                        }
                        None => fs::rename(&partial, path).map_err(werr(path))?,
                    }
                    Ok(written)
                });
                if let Err(e) = written.as_ref()
                    && !matches!(e, RestoreError::Flush { .. })
                {
                    let _ = fs::remove_file(&partial);
                }
                let written = written?;
                self.report.wrote(&entry.path);
                self.report.files += 1;
                self.report.chunks += entry.chunks.len() as u64;
                self.report.bytes += written;
                progress.add_files(1);
            }
            _ => {
                return Err(RestoreError::Target {
                    path: path.to_path_buf(),
                    reason: format!(
                        "entry type {} is not known to this agent (a newer one wrote it)",
                        entry.r#type
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Makes a named pipe or device node at `path` (owner-only until its mode
/// is set). Device nodes need root (CAP_MKNOD): elsewhere the entry is
/// reported as not restored, as tar does.
fn make_special(path: &Path, kind: EntryType, rdev: u64) -> std::io::Result<()> {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    let file_type = match kind {
        EntryType::Fifo => FileType::Fifo,
        EntryType::CharDevice => FileType::CharacterDevice,
        _ => FileType::BlockDevice,
    };
    let dev = match kind {
        EntryType::Fifo => 0,
        _ => rdev,
    };
    mknodat(CWD, path, file_type, Mode::RUSR | Mode::WUSR, dev).map_err(std::io::Error::from)
}

/// Whether `meta` is already the special file `entry` asks for.
fn same_special(meta: &fs::Metadata, kind: EntryType, entry: &ManifestEntry) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = meta.file_type();
    match kind {
        EntryType::Fifo => ft.is_fifo(),
        EntryType::CharDevice => ft.is_char_device() && meta.rdev() == entry.rdev,
        _ => ft.is_block_device() && meta.rdev() == entry.rdev,
    }
}

/// Whether `a` and `b` are one file (a hard link already made).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A file's temporary name while it is written: beside it, and short
/// whatever the name's length (a name at the file system's limit has no
/// room for a suffix), so it is derived from the name's hash.
fn partial_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().as_bytes();
    let hash = blake3::hash(name);
    path.with_file_name(format!(
        ".ferry-partial-{}",
        hex::encode(&hash.as_bytes()[..8])
    ))
}

/// Files at least this large are written past the page cache.
const DIRECT_MIN_BYTES: u64 = 1 << 20;

/// Writes one file's chunks in order and checks the size the manifest gives.
fn write_file(
    path: &Path,
    entry: &ManifestEntry,
    sync_now: bool,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
    consumed: &mut usize,
) -> Result<u64, RestoreError> {
    let werr = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    if !entry.holes.is_empty() {
        return write_sparse_file(path, entry, plains, runtime, progress, consumed);
    }
    // Large files go past the page cache (see ferry_direct): copying a
    // restore into the page cache was most of the restore's system time.
    // Small ones stay buffered, where a direct write per file would wait on
    // the disk for each.
    let mut file = match entry.size >= DIRECT_MIN_BYTES {
        true => DirectWriter::create_new(path, 0o600),
        false => DirectWriter::create_new_buffered(path, 0o600),
    }
    .map_err(werr)?;
    let written = pour(path, entry, plains, runtime, progress, consumed, |plain| {
        file.write_all(plain)
    })?;
    let file = file.finish().map_err(werr)?;
    if sync_now {
        file.sync_data().map_err(|source| RestoreError::Flush {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let mtime = FileTime::from_unix_time(entry.mtime_sec, entry.mtime_nsec);
    finish_file(&file, path, entry.mode, mtime)?;
    Ok(written)
}

/// Hands each of the entry's chunks to `write` in order, counting them in
/// `consumed` (what is left is drained if this fails), and checks that
/// they hold the bytes the manifest gives. Returns those bytes.
fn pour(
    path: &Path,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
    consumed: &mut usize,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, RestoreError> {
    let mut written = 0u64;
    for _ in &entry.chunks {
        let plain = next_plain(plains, runtime)?;
        *consumed += 1;
        write(&plain).map_err(|source| RestoreError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        written += plain.len() as u64;
        progress.add_read(plain.len() as u64);
    }
    match size_mismatch(entry, written) {
        Some(reason) => Err(RestoreError::Target {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(written),
    }
}

/// Writes a sparse file: its data where the layout puts it, its holes left
/// unwritten (buffered: O_DIRECT wants aligned writes, and holes need not
/// fall on its alignment).
fn write_sparse_file(
    path: &Path,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
    consumed: &mut usize,
) -> Result<u64, RestoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let layout =
        ferry_proto::manifest::Layout::of(entry).map_err(|reason| RestoreError::Target {
            path: path.to_path_buf(),
            reason: reason.into(),
        })?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    let mut writer = crate::sparse::DataWriter::new(&file, &layout);
    pour(path, entry, plains, runtime, progress, consumed, |plain| {
        writer.write(plain)
    })?;
    writer.finish().map_err(werr)?;
    let mtime = FileTime::from_unix_time(entry.mtime_sec, entry.mtime_nsec);
    finish_file(&file, path, entry.mode, mtime)?;
    Ok(entry.size)
}

/// Mode and times of a file kept from an earlier restore.
fn finish_path(path: &Path, mode: u32, mtime: FileTime) -> Result<(), RestoreError> {
    let werr = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(werr)?;
    filetime::set_file_times(path, mtime, mtime).map_err(werr)
}

fn finish_file(file: &File, path: &Path, mode: u32, mtime: FileTime) -> Result<(), RestoreError> {
    let werr = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(werr)?;
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime)).map_err(werr)
}

/// Sets an entry's extended attributes; one that cannot be set fails the
/// entry, which is then reported (restored, but not whole).
fn set_xattrs(path: &Path, xattrs: &[ferry_proto::v1::Xattr]) -> Result<(), RestoreError> {
    crate::xattrs::write(path, xattrs).map_err(|(name, e)| RestoreError::Target {
        path: path.to_path_buf(),
        reason: format!("restored, but not its extended attribute {name}: {e}"),
    })
}

/// Restores ownership where we may (as root); elsewhere keeps ours, as tar does.
fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<(), RestoreError> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(source) => Err(RestoreError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_hard_link_target_is_reached_through_real_directories_only() {
        let target = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"not yours").unwrap();
        std::fs::create_dir(target.path().join("dir")).unwrap();
        std::fs::write(target.path().join("dir/file"), b"restored").unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("dir/link")).unwrap();
        std::os::unix::fs::symlink("file", target.path().join("dir/file-link")).unwrap();
        assert!(is_restored_file(target.path(), b"dir/file"));
        assert!(
            !is_restored_file(target.path(), b"dir/link/secret"),
            "through a symlinked directory"
        );
        assert!(
            !is_restored_file(target.path(), b"dir/file-link"),
            "a symlink itself"
        );
        assert!(!is_restored_file(target.path(), b"dir"), "a directory");
        assert!(!is_restored_file(target.path(), b"dir/missing"));
    }
}
