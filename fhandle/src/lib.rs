//! The handle by which fanotify names a directory in its events.
//!
//! fanotify in its file-identifier modes reports "directory F, name N"
//! where F is a file handle, not a path. The watcher learns each
//! directory's handle when it starts watching it and turns events back into
//! paths with that map; no descriptor is opened per event and no privilege
//! beyond fanotify's own is needed (`open_by_handle_at` is not used).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Handles are at most this long (`MAX_HANDLE_SZ`).
const MAX_BYTES: usize = 128;

/// A file's identity on its file system, in the shape fanotify reports it
/// (handle type, then the handle's bytes), and the mount it was found on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// `handle_type` (little-endian i32) followed by `f_handle`.
    pub key: Vec<u8>,
    /// The mount the path was resolved on (`mount_id`).
    pub mount_id: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The file system or kernel gives no handles fit to compare with
    /// fanotify's (no `AT_HANDLE_FID`, or no export support).
    #[error("{}: the file system gives no file handles ({source})", path.display())]
    Unsupported {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HandleError {
    /// The errno behind it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Unsupported { source, .. } | Self::Io { source, .. } => source.raw_os_error(),
        }
    }
}

/// The identifying handle of `path` (`AT_HANDLE_FID`: the kind fanotify
/// reports, which the kernel documents as comparable with its events).
/// A final symlink is followed only when `follow`.
///
/// # Errors
/// The path cannot be resolved, or its file system has no such handles.
pub fn of_path(path: &Path, follow: bool) -> Result<FileHandle, HandleError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| HandleError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    let mut flags = libc::AT_HANDLE_FID;
    if follow {
        flags |= libc::AT_SYMLINK_FOLLOW;
    }
    let mut buf = Raw {
        handle_bytes: MAX_BYTES as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_BYTES],
    };
    let mut mount_id: libc::c_int = 0;
    name_to_handle_at(&c_path, &mut buf, &mut mount_id, flags).map_err(|source| {
        match source.raw_os_error() {
            // EINVAL: a kernel before 6.5 (no AT_HANDLE_FID).
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::EOVERFLOW) => HandleError::Unsupported {
                path: path.to_path_buf(),
                source,
            },
            _ => HandleError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    })?;
    let len = (buf.handle_bytes as usize).min(MAX_BYTES);
    Ok(FileHandle {
        key: key_of(buf.handle_type, &buf.f_handle[..len]),
        mount_id,
    })
}

/// The map key of a handle: as [`FileHandle::key`].
pub fn key_of(handle_type: i32, bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + bytes.len());
    key.extend_from_slice(&handle_type.to_le_bytes());
    key.extend_from_slice(bytes);
    key
}

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct Raw {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_BYTES],
}

#[allow(unsafe_code)]
fn name_to_handle_at(
    path: &CString,
    buf: &mut Raw,
    mount_id: &mut libc::c_int,
    flags: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated; `buf` is a `struct file_handle`
    // whose `handle_bytes` says how much room follows it (the kernel writes
    // no more, and fails with EOVERFLOW if the handle is longer); `mount_id`
    // is a valid int. Nothing is kept past the call.
    let done = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            path.as_ptr(),
            (buf as *mut Raw).cast::<libc::file_handle>(),
            mount_id,
            flags,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_handle_across_a_rename_and_differs_from_another() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        // Linux 6.5 or later on ext4, as the suite's machines are.
        let first = of_path(&a, false).unwrap();
        assert_ne!(first.key, of_path(&b, false).unwrap().key);
        let moved = dir.path().join("moved");
        std::fs::rename(&a, &moved).unwrap();
        assert_eq!(of_path(&moved, false).unwrap().key, first.key);
        assert!(matches!(of_path(&a, false), Err(HandleError::Io { .. })));
    }

    #[test]
    fn a_symlink_is_followed_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let target = of_path(&real, false).unwrap();
        assert_eq!(of_path(&link, true).unwrap().key, target.key);
        // A symlink's own handle, where the file system gives one, is not its target's.
        if let Ok(own) = of_path(&link, false) {
            assert_ne!(own.key, target.key);
        }
    }
}
