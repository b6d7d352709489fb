//! Extended attributes (POSIX ACLs are kept as two of them,
//! `system.posix_acl_access` and `system.posix_acl_default`), read and
//! written without following symlinks.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ferry_proto::v1::Xattr;
use rustix::fs::{XattrFlags, fgetxattr, flistxattr, lgetxattr, llistxattr, lsetxattr};
use rustix::io::Errno;

/// The largest name list and value Linux allows (XATTR_LIST_MAX, XATTR_SIZE_MAX).
const MAX_BYTES: usize = 64 << 10;
/// A first try: most entries have no attributes, or a few small ones.
const FIRST_TRY: usize = 4 << 10;

/// Calls `op` with a buffer, a small one first, the largest allowed if it
/// is too small.
fn with_buffer(mut op: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FIRST_TRY];
    let len = match op(&mut buf) {
        Err(Errno::RANGE) => {
            buf.resize(MAX_BYTES, 0);
            op(&mut buf)?
        }
        other => other?,
    };
    buf.truncate(len);
    Ok(buf)
}

/// Every extended attribute of `path`, sorted by name: none where the file
/// system keeps none.
///
/// # Errors
///
/// The list or a value cannot be read.
pub fn read(path: &Path) -> io::Result<Vec<Xattr>> {
    collect(
        |buf| llistxattr(path, buf),
        |name, buf| lgetxattr(path, name, buf),
    )
}

/// [`read`] through an open file: no second lookup of its path, and the
/// attributes of the very file that was read.
///
/// # Errors
///
/// The list or a value cannot be read.
pub fn read_open(file: &std::fs::File) -> io::Result<Vec<Xattr>> {
    collect(
        |buf| flistxattr(file, buf),
        |name, buf| fgetxattr(file, name, buf),
    )
}

fn collect(
    mut list: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut get: impl FnMut(&OsStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<Xattr>> {
    let names = match with_buffer(&mut list) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error()) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_str = OsStr::from_bytes(name);
        match with_buffer(|buf| get(name_str, buf)) {
            Ok(value) => out.push(Xattr {
                name: name.to_vec(),
                value,
            }),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(Errno::NODATA.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets `xattrs` on `path`.
///
/// # Errors
///
/// The first attribute that cannot be set, by name, and why.
pub fn write(path: &Path, xattrs: &[Xattr]) -> Result<(), (String, io::Error)> {
    for x in xattrs {
        let name = OsStr::from_bytes(&x.name);
        lsetxattr(path, name, &x.value, XattrFlags::empty())
            .map_err(|e| (String::from_utf8_lossy(&x.name).into_owned(), e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn attributes_round_trip_and_a_plain_file_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        assert!(read(&b).unwrap().is_empty());
        assert!(
            read_open(&std::fs::File::open(&b).unwrap())
                .unwrap()
                .is_empty()
        );
        let set = vec![
            Xattr {
                name: b"user.big".to_vec(),
                value: vec![7; 10_000],
            },
            Xattr {
                name: b"user.small".to_vec(),
                value: b"v".to_vec(),
            },
        ];
        if write(&a, &set).is_err() {
            // A file system without user attributes: nothing to test.
            return;
        }
        assert_eq!(read(&a).unwrap(), set);
    }
}
