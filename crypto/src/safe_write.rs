//! Writes a new secret file all-or-nothing, never replacing an existing one.
//!
//! Why: a key file that is half-written, world-readable for a moment, or silently
//! overwritten loses a tenant's data. So: temp file in the same directory created
//! 0600 with `create_new`, fsync, then hard-link it into place (which fails if the
//! target exists, unlike rename), drop the temp name, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rand::rngs::OsRng;

/// A failed step, for an error message that says what was being done.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub action: &'static str,
    pub source: io::Error,
}

fn fail(action: &'static str) -> impl FnOnce(io::Error) -> WriteFailure {
    move |source| WriteFailure { action, source }
}

/// Creates `path` with `contents`, mode 0600. `AlreadyExists` if `path` exists.
pub(crate) fn write_new_secret_file(path: &Path, contents: &[u8]) -> Result<(), WriteFailure> {
    let name = path.file_name().ok_or_else(|| WriteFailure {
        action: "choosing the file name",
        source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(WriteFailure {
            action: "creating",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        });
    }

    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        name.to_string_lossy(),
        OsRng.next_u64()
    ));
    let result = write_tmp(&tmp, contents).and_then(|()| link_into_place(&tmp, path));
    // The temp name is never wanted afterwards (linked, renamed, or failed).
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("syncing the directory"))
}

fn write_tmp(tmp: &Path, contents: &[u8]) -> Result<(), WriteFailure> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(tmp)
        .map_err(fail("creating the temporary file"))?;
    #[cfg(unix)]
    {
        // Exactly 0600 whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(fail("setting mode 0600 on the temporary file"))?;
    }
    file.write_all(contents)
        .map_err(fail("writing the temporary file"))?;
    file.sync_all().map_err(fail("syncing the temporary file"))
}

fn link_into_place(tmp: &Path, path: &Path) -> Result<(), WriteFailure> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(WriteFailure {
            action: "creating",
            source: e,
        }),
        // Some filesystems have no hard links: fall back to rename after re-checking
        // (a small race, but still never a partial file).
        Err(_) if fs::symlink_metadata(path).is_err() => {
            fs::rename(tmp, path).map_err(fail("renaming the temporary file into place"))
        }
        Err(_) => Err(WriteFailure {
            action: "creating",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        }),
    }
}
