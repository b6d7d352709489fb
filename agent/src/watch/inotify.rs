//! Recursive inotify: one watch per directory of the tree ([`super::tree`]
//! decides which), for any user and any kernel. The system's watch limit
//! (`fs.inotify.max_user_watches`) bounds how many directories it covers.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::Watched;
use super::tree::{AddError, Event, Kernel, Tree, TreeWatcher, WatchError, What};
use crate::source::filter::Filter;

const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

/// An inotify instance; its watch descriptors name directories.
pub struct Inotify {
    fd: OwnedFd,
    buf: Box<[MaybeUninit<u8>]>,
}

impl Inotify {
    /// # Errors
    /// inotify is unavailable (its instance limit reached).
    pub fn new() -> std::io::Result<Self> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        Ok(Self {
            fd,
            buf: vec![MaybeUninit::uninit(); 64 << 10].into_boxed_slice(),
        })
    }
}

impl Kernel for Inotify {
    type Key = i32;
    const NAME: &'static str = "inotify";
    const OVERFLOW: &'static str =
        "the kernel's inotify queue overflowed (fs.inotify.max_queued_events)";

    fn add_root(&mut self, root: &Path) -> std::io::Result<i32> {
        // The root may be a symlink to the directory, which a walk follows
        // too; nothing below it is followed.
        Ok(inotify::add_watch(
            &self.fd,
            root,
            DIR_EVENTS.difference(WatchFlags::DONT_FOLLOW),
        )?)
    }

    fn add(&mut self, path: &Path) -> Result<i32, AddError> {
        inotify::add_watch(&self.fd, path, DIR_EVENTS).map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR => AddError::Gone,
            Errno::NOSPC => AddError::Limit(
                "the system's inotify watch limit is reached \
                 (raise fs.inotify.max_user_watches): every snapshot walks the tree",
            ),
            e => AddError::Other(e),
        })
    }

    fn remove(&mut self, wd: &i32) {
        let _ = inotify::remove_watch(&self.fd, *wd);
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn read(&mut self, out: &mut Vec<Event<i32>>) -> Result<(), Errno> {
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN) => return Ok(()),
                Err(e) => return Err(e),
            };
            let mask = event.events();
            out.push(if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
                Event::Overflow
            } else if mask.contains(ReadFlags::IGNORED) {
                Event::Dropped(event.wd())
            } else if let Some(name) = event.file_name() {
                Event::Child {
                    dir: event.wd(),
                    name: name.to_bytes().to_vec(),
                    is_dir: mask.contains(ReadFlags::ISDIR),
                    what: What {
                        added: mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO),
                        removed: mask.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM),
                        written: mask.intersects(ReadFlags::MODIFY | ReadFlags::CLOSE_WRITE),
                        attrib: mask.contains(ReadFlags::ATTRIB),
                    },
                }
            } else {
                Event::OnSelf {
                    dir: event.wd(),
                    gone: mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF),
                    unmounted: mask.contains(ReadFlags::UNMOUNT),
                    attrib: mask.contains(ReadFlags::ATTRIB),
                }
            });
            if reader.is_buffer_empty() {
                return Ok(());
            }
        }
    }
}

/// The inotify watches of one tree.
pub type Watches = Tree<Inotify>;

/// Watches `root` with inotify.
///
/// # Errors
/// inotify is unavailable or the root cannot be watched.
pub fn watches(root: &Path, filter: Filter, watched: Arc<Watched>) -> Result<Watches, WatchError> {
    Tree::new(
        Inotify::new().map_err(WatchError::Init)?,
        root,
        filter,
        watched,
    )
}

/// Starts watching with inotify in a thread of its own until the watcher
/// is dropped.
///
/// # Errors
/// As [`watches`].
pub fn start(
    root: &Path,
    filter: Filter,
    watched: Arc<Watched>,
) -> Result<TreeWatcher, WatchError> {
    super::tree::run(watches(root, filter, watched)?)
}
