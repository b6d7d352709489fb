//! fanotify with file identifiers: one mark on the source's whole file
//! system, so no watch is set per directory, none is missed while a new
//! directory is being watched, and no per-user watch limit applies. Needs
//! `CAP_SYS_ADMIN` and Linux 6.5 or later (handles comparable with the
//! events' own, `AT_HANDLE_FID`); where either is missing, or the tree spans
//! file systems, the watcher is inotify's ([`super::start`]).
//!
//! Events name a directory by file handle and the changed entry by name;
//! [`super::tree`] turns handles back into paths with the handles it took
//! of each directory as it began watching it. Events elsewhere on the file
//! system carry handles it does not know, and are dropped.

pub mod records;

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use ferry_fhandle::HandleError;
use nix::sys::fanotify::{EventFFlags, Fanotify as Group, InitFlags, MarkFlags, MaskFlags};
use rustix::io::Errno;

use super::Watched;
use super::tree::{AddError, Event, Kernel, Tree, TreeWatcher, WatchError, What};
use crate::source::filter::Filter;

const CREATE: u64 = libc::FAN_CREATE;
const DELETE: u64 = libc::FAN_DELETE;
const MOVED_FROM: u64 = libc::FAN_MOVED_FROM;
const MOVED_TO: u64 = libc::FAN_MOVED_TO;
const MODIFY: u64 = libc::FAN_MODIFY;
const CLOSE_WRITE: u64 = libc::FAN_CLOSE_WRITE;
const ATTRIB: u64 = libc::FAN_ATTRIB;
const DELETE_SELF: u64 = libc::FAN_DELETE_SELF;
const MOVE_SELF: u64 = libc::FAN_MOVE_SELF;
const ONDIR: u64 = libc::FAN_ONDIR;
const OVERFLOW: u64 = libc::FAN_Q_OVERFLOW;

const CHILD_EVENTS: u64 = CREATE | DELETE | MOVED_FROM | MOVED_TO | MODIFY | CLOSE_WRITE | ATTRIB;
const SELF_EVENTS: u64 = DELETE_SELF | MOVE_SELF;

/// A fanotify group marking one file system; file handles name directories.
pub struct Fanotify {
    group: Group,
    buf: Vec<u8>,
    /// The root's mount and device: a directory elsewhere is not covered.
    root_mount: i32,
    root_dev: u64,
}

impl Fanotify {
    /// # Errors
    /// fanotify is unavailable here: no `CAP_SYS_ADMIN` (EPERM), or a
    /// kernel without file-identifier reports (EINVAL).
    pub fn new() -> std::io::Result<Self> {
        let flags = InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::from_bits_retain(libc::FAN_REPORT_DFID_NAME | libc::FAN_REPORT_FID);
        let group = Group::init(flags, EventFFlags::O_RDONLY)?;
        Ok(Self {
            group,
            buf: vec![0; 64 << 10],
            root_mount: 0,
            root_dev: 0,
        })
    }
}

impl Kernel for Fanotify {
    type Key = Vec<u8>;
    const NAME: &'static str = "fanotify";
    const OVERFLOW: &'static str =
        "the kernel's fanotify queue overflowed (fs.fanotify.max_queued_events)";

    fn add_root(&mut self, root: &Path) -> std::io::Result<Vec<u8>> {
        let handle = ferry_fhandle::of_path(root, true).map_err(std::io::Error::other)?;
        self.root_mount = handle.mount_id;
        self.root_dev = std::fs::metadata(root)?.dev();
        let mask = MaskFlags::from_bits_retain(CHILD_EVENTS | SELF_EVENTS | ONDIR);
        self.group.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            rustix::fs::CWD,
            Some(root),
        )?;
        Ok(handle.key)
    }

    fn add(&mut self, path: &Path) -> Result<Vec<u8>, AddError> {
        let handle = ferry_fhandle::of_path(path, false).map_err(|e| match e {
            HandleError::Unsupported { .. } => AddError::OtherFs,
            e => match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => AddError::Gone,
                Some(e) => AddError::Other(e),
                None => AddError::Other(Errno::INVAL),
            },
        })?;
        // Another mount may still be the same file system (a bind mount),
        // which the mark covers.
        if handle.mount_id != self.root_mount {
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.dev() == self.root_dev => {}
                Ok(_) => return Err(AddError::OtherFs),
                Err(_) => return Err(AddError::Gone),
            }
        }
        Ok(handle.key)
    }

    fn remove(&mut self, _: &Vec<u8>) {
        // One mark covers the file system: nothing per directory to drop.
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }

    fn read(&mut self, out: &mut Vec<Event<Vec<u8>>>) -> Result<(), Errno> {
        let n = match rustix::io::read(&self.group, &mut self.buf) {
            Ok(n) => n,
            Err(Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut parsed = Vec::new();
        let fault = records::parse(&self.buf[..n], &mut parsed);
        for record in parsed {
            events_of(record, out);
        }
        fault.map_err(|e| {
            tracing::error!(error = %e, "fanotify gave an event that cannot be read");
            Errno::PROTO
        })
    }
}

/// What one fanotify event says, for the tree.
fn events_of(record: records::Record, out: &mut Vec<Event<Vec<u8>>>) {
    let mask = record.mask;
    if mask & OVERFLOW != 0 {
        out.push(Event::Overflow);
        return;
    }
    let what = What {
        added: mask & (CREATE | MOVED_TO) != 0,
        removed: mask & (DELETE | MOVED_FROM) != 0,
        written: mask & (MODIFY | CLOSE_WRITE) != 0,
        attrib: mask & ATTRIB != 0,
    };
    match record.dir {
        Some((dir, Some(name))) if mask & CHILD_EVENTS != 0 => out.push(Event::Child {
            dir,
            name,
            is_dir: mask & ONDIR != 0,
            what,
        }),
        // About a directory itself, named by its own handle.
        Some((dir, None)) => out.push(Event::OnSelf {
            dir,
            gone: mask & SELF_EVENTS != 0,
            unmounted: false,
            attrib: what.attrib,
        }),
        _ => {}
    }
    if mask & SELF_EVENTS != 0
        && let Some(object) = record.object
    {
        out.push(Event::OnSelf {
            dir: object,
            gone: true,
            unmounted: false,
            attrib: false,
        });
    }
}

/// The fanotify watch of one tree.
pub type Marks = Tree<Fanotify>;

/// Watches `root` with fanotify.
///
/// # Errors
/// fanotify is unavailable, the root cannot be watched, or the tree
/// reaches onto another file system (which inotify is to watch instead).
pub fn marks(root: &Path, filter: Filter, watched: Arc<Watched>) -> Result<Marks, WatchError> {
    let tree = Tree::new(
        Fanotify::new().map_err(WatchError::Init)?,
        root,
        filter,
        watched,
    )?;
    if let Some(other) = &tree.other_fs {
        return Err(WatchError::Unsuitable(format!(
            "{} is on another file system than the source's root",
            root.join(std::ffi::OsStr::from_bytes(other)).display()
        )));
    }
    Ok(tree)
}

/// Starts watching with fanotify in a thread of its own until the watcher
/// is dropped.
///
/// # Errors
/// As [`marks`].
pub fn start(
    root: &Path,
    filter: Filter,
    watched: Arc<Watched>,
) -> Result<TreeWatcher, WatchError> {
    super::tree::run(marks(root, filter, watched)?)
}
