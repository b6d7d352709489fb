//! Recursive inotify over a directory source: one watch per directory
//! (excluded ones, other file systems under `one-file-system` and the
//! insides of tagged caches left unwatched, as a walk leaves them out),
//! added as directories appear and dropped as they go.
//!
//! A name created, deleted or moved in a directory marks that directory's
//! listing changed; a file written or its attributes changed marks its
//! path. A new directory is watched before it is listed, so what is made
//! in it meanwhile is either seen by the listing or raises an event.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::Watched;
use crate::source::dir::join;
use crate::source::filter::Filter;

/// How often the reading thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(250);
/// Reads of the queue per drain: under a storm of events the thread still
/// comes back to look whether it should stop.
const READS_PER_DRAIN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify: {0}")]
    Init(#[source] std::io::Error),
    #[error("watching {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running watcher; stops when dropped.
pub struct TreeWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TreeWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watches of one tree.
pub struct Watches {
    fd: OwnedFd,
    root: PathBuf,
    root_dev: u64,
    filter: Filter,
    by_wd: HashMap<i32, Vec<u8>>,
    /// Byte order, so a directory's descendants are one range.
    by_path: BTreeMap<Vec<u8>, i32>,
    watched: Arc<Watched>,
}

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

impl Watches {
    /// Watches every directory of the tree at `root` that a walk with
    /// `filter` would enter. Directories that cannot be watched (the
    /// system's watch limit) leave `watched` degraded, not an error.
    ///
    /// # Errors
    /// inotify is unavailable or the root cannot be watched.
    pub fn new(root: &Path, filter: Filter, watched: Arc<Watched>) -> Result<Self, WatchError> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| WatchError::Init(e.into()))?;
        let root_dev = std::fs::metadata(root)
            .map_err(|source| WatchError::Root {
                path: root.to_path_buf(),
                source,
            })?
            .dev();
        let mut watches = Self {
            fd,
            root: root.to_path_buf(),
            root_dev,
            filter,
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            watched,
        };
        // The root may be a symlink to the directory, which a walk follows
        // too; nothing below it is followed.
        let root_events = DIR_EVENTS.difference(WatchFlags::DONT_FOLLOW);
        let wd =
            inotify::add_watch(&watches.fd, root, root_events).map_err(|e| WatchError::Root {
                path: root.to_path_buf(),
                source: e.into(),
            })?;
        watches.by_wd.insert(wd, Vec::new());
        watches.by_path.insert(Vec::new(), wd);
        watches.watch_below(b"");
        Ok(watches)
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.by_wd.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_wd.is_empty()
    }

    /// Reads the events in the queue now, recording what they say; true
    /// when it read the queue empty.
    ///
    /// # Errors
    /// Reading inotify failed (the watcher cannot go on).
    pub fn drain(&mut self) -> Result<bool, Errno> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 64 << 10];
        // Events are copied out of the buffer before they are acted on,
        // since acting adds and drops watches.
        let mut batch: Vec<(i32, ReadFlags, Option<Vec<u8>>)> = Vec::new();
        for _ in 0..READS_PER_DRAIN {
            {
                let mut reader = inotify::Reader::new(&self.fd, &mut buf);
                loop {
                    match reader.next() {
                        Ok(event) => batch.push((
                            event.wd(),
                            event.events(),
                            event.file_name().map(|n| n.to_bytes().to_vec()),
                        )),
                        Err(Errno::AGAIN) => break,
                        Err(e) => return Err(e),
                    }
                    if reader.is_buffer_empty() {
                        break;
                    }
                }
            }
            if batch.is_empty() {
                return Ok(true);
            }
            for (wd, mask, name) in batch.drain(..) {
                self.on_event(wd, mask, name);
            }
        }
        Ok(false)
    }

    fn on_event(&mut self, wd: i32, mask: ReadFlags, name: Option<Vec<u8>>) {
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            self.watched.lost(
                "the kernel's inotify queue overflowed (fs.inotify.max_queued_events)".into(),
            );
            return;
        }
        if mask.contains(ReadFlags::IGNORED) {
            if let Some(path) = self.by_wd.remove(&wd)
                && self.by_path.get(&path) == Some(&wd)
            {
                if path.is_empty() {
                    self.watched
                        .broken("the source directory's watch was dropped".into());
                }
                self.by_path.remove(&path);
            }
            return;
        }
        let Some(dir) = self.by_wd.get(&wd).cloned() else {
            return; // a watch already dropped
        };
        let is_dir = mask.contains(ReadFlags::ISDIR);
        let Some(name) = name else {
            // About the watched directory itself.
            if dir.is_empty() && mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                self.watched
                    .broken("the source directory itself was moved or deleted".into());
            } else if mask.contains(ReadFlags::UNMOUNT) {
                let why = format!("a file system under {} was unmounted", self.show(&dir));
                match dir.is_empty() {
                    true => self.watched.broken(why),
                    false => self.watched.lost(why),
                }
            } else if mask.contains(ReadFlags::ATTRIB) && !dir.is_empty() {
                self.watched.path_changed(dir);
            }
            return;
        };
        let path = join(&dir, &name);
        if self.filter.excludes(&path, is_dir) {
            return;
        }
        if self.filter.exclude_caches && name == b"CACHEDIR.TAG" && !dir.is_empty() {
            // The directory became a tagged cache (nothing below it is kept:
            // nothing to watch) or stopped being one (all of it is again).
            self.unwatch_below(&dir);
            if !self
                .filter
                .is_tagged_cache(&self.root.join(OsStr::from_bytes(&dir)))
            {
                self.watch_below(&dir);
            }
        }
        if mask.intersects(
            ReadFlags::CREATE | ReadFlags::DELETE | ReadFlags::MOVED_FROM | ReadFlags::MOVED_TO,
        ) {
            if is_dir && mask.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                self.unwatch(&path);
            }
            if is_dir && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                self.watch(path.clone());
                self.watch_below(&path);
            }
            self.watched.dir_changed(dir);
        } else if mask.intersects(ReadFlags::MODIFY | ReadFlags::CLOSE_WRITE | ReadFlags::ATTRIB) {
            // A directory that could not be watched (not readable) may be
            // now that its mode or owner changed.
            if is_dir
                && mask.contains(ReadFlags::ATTRIB)
                && !self.by_path.contains_key(&path)
                && self.watch(path.clone())
            {
                self.watch_below(&path);
                // What it holds was never seen by a watch: list it.
                self.watched.dir_changed(path.clone());
            }
            self.watched.path_changed(path);
        }
    }

    /// Watches `rel`, a directory a walk would enter; false if it is not
    /// to be (or cannot be) watched.
    fn watch(&mut self, rel: Vec<u8>) -> bool {
        let full = self.root.join(OsStr::from_bytes(&rel));
        if self.filter.one_file_system {
            match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.dev() == self.root_dev => {}
                _ => return false,
            }
        }
        match inotify::add_watch(&self.fd, &full, DIR_EVENTS) {
            Ok(wd) => {
                if let Some(old) = self.by_wd.insert(wd, rel.clone())
                    && old != rel
                {
                    self.by_path.remove(&old);
                }
                self.by_path.insert(rel, wd);
                true
            }
            // Gone or replaced since it was seen: its parent's events tell.
            Err(Errno::NOENT | Errno::NOTDIR) => false,
            Err(Errno::NOSPC) => {
                let why = "the system's inotify watch limit is reached \
                           (raise fs.inotify.max_user_watches): every snapshot walks the tree";
                tracing::error!(path = %self.show(&rel), "{why}");
                self.watched.set_degraded(Some(why.into()));
                self.watched.lost(why.into());
                false
            }
            Err(e) => {
                // An unreadable directory: the backup reports it as skipped.
                tracing::warn!(path = %self.show(&rel), error = %e, "cannot watch a directory");
                false
            }
        }
    }

    /// Watches the directories below `rel` (already watched), depth first.
    fn watch_below(&mut self, rel: &[u8]) {
        let mut pending = vec![rel.to_vec()];
        while let Some(dir) = pending.pop() {
            let full = self.root.join(OsStr::from_bytes(&dir));
            if !dir.is_empty() && self.filter.is_tagged_cache(&full) {
                continue; // only its tag is kept: nothing below to watch
            }
            let Ok(listing) = std::fs::read_dir(&full) else {
                continue;
            };
            for item in listing.flatten() {
                // The listing's type: no stat per name.
                if !item.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let child = join(&dir, item.file_name().as_bytes());
                if self.filter.excludes(&child, true) {
                    continue;
                }
                if self.watch(child.clone()) {
                    pending.push(child);
                }
            }
        }
    }

    /// Drops the watches of `rel` and everything below it.
    fn unwatch(&mut self, rel: &[u8]) {
        if let Some(wd) = self.by_path.remove(rel) {
            self.by_wd.remove(&wd);
            let _ = inotify::remove_watch(&self.fd, wd);
        }
        self.unwatch_below(rel);
    }

    /// Drops the watches below `rel` (not its own).
    fn unwatch_below(&mut self, rel: &[u8]) {
        let (mut below, mut end) = (rel.to_vec(), rel.to_vec());
        if !rel.is_empty() {
            below.push(b'/');
            end.push(b'/' + 1);
        }
        let gone: Vec<(Vec<u8>, i32)> = self
            .by_path
            .range(below..end)
            .map(|(p, w)| (p.clone(), *w))
            .collect();
        for (path, wd) in gone {
            self.by_path.remove(&path);
            self.by_wd.remove(&wd);
            // It may be gone already; the kernel then dropped it itself.
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    fn show(&self, rel: &[u8]) -> String {
        self.root.join(OsStr::from_bytes(rel)).display().to_string()
    }
}

/// Starts watching in a thread of its own until the watcher is dropped.
///
/// # Errors
/// As [`Watches::new`].
pub fn start(
    root: &Path,
    filter: Filter,
    watched: Arc<Watched>,
) -> Result<TreeWatcher, WatchError> {
    let mut watches = Watches::new(root, filter, watched.clone())?;
    tracing::info!(root = %root.display(), directories = watches.len(), "watching");
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferry-watch".into())
        .spawn(move || {
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: STOP_CHECK.as_nanos() as _,
            };
            while !stopping.load(Ordering::SeqCst) {
                // Asked before this look at the queue: answered by it.
                let asked = watched.sync_asked();
                let mut fds = [rustix::event::PollFd::new(
                    &watches.fd,
                    rustix::event::PollFlags::IN,
                )];
                let ready = match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(n) => n > 0,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        watched.broken(format!("polling inotify failed: {e}"));
                        return;
                    }
                };
                if !ready {
                    watched.synced(asked);
                    continue;
                }
                match watches.drain() {
                    Ok(true) => watched.synced(asked),
                    Ok(false) => {}
                    Err(e) => {
                        watched.broken(format!("reading inotify failed: {e}"));
                        return;
                    }
                }
            }
        })
        .map_err(WatchError::Init)?;
    Ok(TreeWatcher {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched_tree() -> (tempfile::TempDir, Arc<Watched>, Watches) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a/b", "skip", "c"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let watched = Arc::new(Watched::new(1_000_000));
        let filter = Filter::new(&["/skip/".into()], None).unwrap();
        let watches = Watches::new(dir.path(), filter, watched.clone()).unwrap();
        (dir, watched, watches)
    }

    fn set(items: &[&str]) -> std::collections::BTreeSet<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn creates_writes_renames_and_deletes_mark_what_they_touch() {
        let (dir, watched, mut watches) = watched_tree();
        let root = dir.path();
        assert_eq!(watches.len(), 4, "root, a, a/b, c; not the excluded skip");

        std::fs::write(root.join("a/b/f"), b"rewritten").unwrap();
        std::fs::write(root.join("skip/ignored"), b"excluded").unwrap();
        std::fs::create_dir_all(root.join("c/new/deeper")).unwrap();
        watches.drain().unwrap();
        let taken = watched.take();
        assert!(taken.lost.is_none());
        assert_eq!(taken.changes.paths, set(&["a/b/f"]));
        assert_eq!(taken.changes.dirs, set(&["c"]));
        // The new directory and the one made in it at once are watched.
        std::fs::write(root.join("c/new/deeper/g"), b"g").unwrap();
        watches.drain().unwrap();
        assert_eq!(watched.take().changes.dirs, set(&["c/new/deeper"]));

        // A renamed directory is watched under its new name only.
        std::fs::rename(root.join("a"), root.join("c/a2")).unwrap();
        watches.drain().unwrap();
        assert_eq!(watched.take().changes.dirs, set(&["", "c"]));
        std::fs::write(root.join("c/a2/b/h"), b"h").unwrap();
        watches.drain().unwrap();
        assert_eq!(watched.take().changes.dirs, set(&["c/a2/b"]));

        std::fs::remove_dir_all(root.join("c/new")).unwrap();
        watches.drain().unwrap();
        assert!(watched.take().changes.dirs.contains(b"c".as_slice()));
        assert!(!watches.by_path.contains_key(b"c/new".as_slice()));
    }

    #[test]
    fn an_overflowed_queue_is_a_lost_event() {
        let (dir, watched, mut watches) = watched_tree();
        let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16384);
        // More distinct events than the kernel queues, none read meanwhile.
        let many = dir.path().join("c");
        for i in 0..max + 100 {
            std::fs::write(many.join(format!("f{i}")), b"").unwrap();
        }
        watches.drain().unwrap();
        let taken = watched.take();
        assert!(
            taken
                .lost
                .as_deref()
                .is_some_and(|w| w.contains("overflowed")),
            "{taken:?}"
        );
    }

    #[test]
    fn a_cache_tag_drops_and_gives_back_the_watches_below_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cache/sub")).unwrap();
        let watched = Arc::new(Watched::new(1_000_000));
        let mut filter = Filter::default();
        filter.exclude_caches = true;
        let mut watches = Watches::new(dir.path(), filter, watched.clone()).unwrap();
        assert!(watches.by_path.contains_key(b"cache/sub".as_slice()));
        let tag = dir.path().join("cache/CACHEDIR.TAG");
        std::fs::write(&tag, crate::source::filter::CACHEDIR_SIGNATURE).unwrap();
        watches.drain().unwrap();
        assert!(!watches.by_path.contains_key(b"cache/sub".as_slice()));
        assert!(watches.by_path.contains_key(b"cache".as_slice()));
        std::fs::remove_file(&tag).unwrap();
        watches.drain().unwrap();
        assert!(watches.by_path.contains_key(b"cache/sub".as_slice()));
        assert_eq!(watched.take().changes.dirs, set(&["cache"]));
    }

    #[test]
    fn a_symlinked_root_is_watched_and_a_deleted_root_breaks_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("a")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let watched = Arc::new(Watched::new(1_000_000));
        let mut watches = Watches::new(&link, Filter::default(), watched.clone()).unwrap();
        std::fs::write(real.join("a/f"), b"f").unwrap();
        watches.drain().unwrap();
        assert_eq!(watched.take().changes.dirs, set(&["a"]));

        std::fs::remove_dir_all(&real).unwrap();
        watches.drain().unwrap();
        assert!(
            watched.take_broken().is_some(),
            "the watcher is to be started anew"
        );
        assert!(watched.take().lost.is_some());
    }

    #[test]
    fn a_directory_that_becomes_readable_is_watched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir_all(locked.join("inner")).unwrap();
        let watched = Arc::new(Watched::new(1_000_000));
        let mut watches = Watches::new(dir.path(), Filter::default(), watched.clone()).unwrap();
        // As if it had been unreadable when the watches were set.
        watches.unwatch(b"locked");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        watches.drain().unwrap();
        assert!(watches.by_path.contains_key(b"locked/inner".as_slice()));
        assert!(watched.take().changes.dirs.contains(b"locked".as_slice()));
    }
}
