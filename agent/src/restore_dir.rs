//! The directory writer of a restore: creates the manifest's entries in an
//! empty directory, pours each file's plaintext chunks into it (large files
//! with O_DIRECT), and applies modes, times and owners last.

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

use crate::progress::Progress;
use crate::restore::{Plain, RestoreError, RestoreReport, next_plain, size_mismatch};

pub(crate) fn prepare_target(target: &Path) -> Result<(), RestoreError> {
    let bad = |reason: String| RestoreError::Target {
        path: target.to_path_buf(),
        reason,
    };
    match fs::read_dir(target) {
        Ok(mut items) => {
            if items.next().is_some() {
                return Err(bad(
                    "exists and is not empty; restore into a new or empty directory".into(),
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
}

/// The writer: runs on a blocking thread.
pub(crate) fn write_tree(
    target: &Path,
    mut entries: mpsc::Receiver<ManifestEntry>,
    mut plains: mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
) -> Result<RestoreReport, RestoreError> {
    let mut report = RestoreReport::default();
    let mut dirs: Vec<DirMeta> = Vec::new();
    // Directories of the manifest enclosing the current entry, innermost last.
    // A path is written only below a directory the manifest itself made, so a
    // symlink in the manifest can never redirect a later write outside the target.
    let mut open_dirs: Vec<Vec<u8>> = Vec::new();
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Write { path, source }
    };
    while let Some(entry) = entries.blocking_recv() {
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
        while open_dirs.last().is_some_and(|d| d.as_slice() != parent) {
            open_dirs.pop();
        }
        if !parent.is_empty() && open_dirs.last().map(Vec::as_slice) != Some(parent) {
            return Err(RestoreError::Manifest(ManifestError::Invalid {
                index: 0,
                path: String::from_utf8_lossy(&entry.path).into_owned(),
                reason: "parent is not a directory of the manifest",
            }));
        }
        let path = target.join(OsStr::from_bytes(&entry.path));
        let mtime = FileTime::from_unix_time(entry.mtime_sec, entry.mtime_nsec);
        match EntryType::try_from(entry.r#type) {
            Ok(EntryType::Dir) => {
                fs::create_dir(&path).map_err(werr(&path))?;
                open_dirs.push(entry.path.clone());
                dirs.push(DirMeta {
                    path,
                    mode: entry.mode,
                    mtime,
                    uid: entry.uid,
                    gid: entry.gid,
                });
                report.dirs += 1;
            }
            Ok(EntryType::Symlink) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&entry.symlink_target), &path)
                    .map_err(werr(&path))?;
                filetime::set_symlink_file_times(&path, mtime, mtime).map_err(werr(&path))?;
                set_owner(&path, entry.uid, entry.gid)?;
                report.symlinks += 1;
            }
            Ok(EntryType::File) if !entry.hardlink_to.is_empty() => {
                let first = target.join(OsStr::from_bytes(&entry.hardlink_to));
                if !is_restored_file(target, &entry.hardlink_to) {
                    return Err(RestoreError::Target {
                        path: path.clone(),
                        reason: "hard link to an entry that is not a restored file".into(),
                    });
                }
                fs::hard_link(&first, &path).map_err(werr(&path))?;
                report.hardlinks += 1;
                report.files += 1;
            }
            Ok(EntryType::File) => {
                // Written under a temporary name and renamed once complete and
                // verified, so a failed restore never leaves a wrong file under
                // the real name.
                let partial = partial_name(&path);
                let written = write_file(&partial, &entry, &mut plains, runtime, progress)
                    .and_then(|written| {
                        fs::rename(&partial, &path).map_err(werr(&path))?;
                        Ok(written)
                    });
                let written = match written {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = fs::remove_file(&partial);
                        return Err(e);
                    }
                };
                set_owner(&path, entry.uid, entry.gid)?;
                report.files += 1;
                report.chunks += entry.chunks.len() as u64;
                report.bytes += written;
                progress.add_files(1);
            }
            _ => {
                return Err(RestoreError::Manifest(ManifestError::Invalid {
                    index: 0,
                    path: String::from_utf8_lossy(&entry.path).into_owned(),
                    reason: "unknown entry type",
                }));
            }
        }
    }
    // Children change a directory's mtime, so directories are finished last,
    // innermost first.
    for dir in dirs.iter().rev() {
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode))
            .map_err(werr(&dir.path))?;
        filetime::set_file_mtime(&dir.path, dir.mtime).map_err(werr(&dir.path))?;
        set_owner(&dir.path, dir.uid, dir.gid)?;
    }
    Ok(report)
}

fn partial_name(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".ferry-partial");
    path.with_file_name(name)
}

/// Files at least this large are written past the page cache.
const DIRECT_MIN_BYTES: u64 = 1 << 20;

/// Writes one file's chunks in order and checks the size the manifest gives.
fn write_file(
    path: &Path,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
) -> Result<u64, RestoreError> {
    let werr = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Large files go past the page cache (see ferry_direct): copying a
    // restore into the page cache was most of the restore's system time.
    // Small ones stay buffered, where a direct write per file would wait on
    // the disk for each.
    let mut file = match entry.size >= DIRECT_MIN_BYTES {
        true => DirectWriter::create_new(path, 0o600),
        false => DirectWriter::create_new_buffered(path, 0o600),
    }
    .map_err(werr)?;
    let mut written = 0u64;
    for _ in &entry.chunks {
        let plain = next_plain(plains, runtime)?;
        file.write_all(&plain).map_err(werr)?;
        written += plain.len() as u64;
        progress.add_read(plain.len() as u64);
    }
    let file = file.finish().map_err(werr)?;
    if let Some(reason) = size_mismatch(entry, written) {
        return Err(RestoreError::Target {
            path: path.to_path_buf(),
            reason,
        });
    }
    let mtime = FileTime::from_unix_time(entry.mtime_sec, entry.mtime_nsec);
    finish_file(&file, path, entry.mode, mtime)?;
    Ok(written)
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
