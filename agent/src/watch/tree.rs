//! What a watcher does with a tree, whichever kernel interface tells it
//! of changes ([`super::inotify`], [`super::fanotify`]): it keeps the
//! directories a walk would enter (excluded ones, other file systems under
//! `one-file-system` and the insides of tagged caches left out) known to
//! the kernel by a key, adds them as they appear and drops them as they go.
//!
//! A name created, deleted or moved in a directory marks that directory's
//! listing changed; a file written or its attributes changed marks its
//! path. A new directory is known before it is listed, so what is made in
//! it meanwhile is either seen by the listing or raises an event.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::hash::Hash;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::Watched;
use crate::source::dir::join;
use crate::source::filter::Filter;

/// How often the reading thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(250);
/// How often it checks that the root is still the directory it watches
/// (an unmount or a replacement raises no event on every interface).
const ROOT_CHECK: Duration = Duration::from_secs(2);
/// Reads of the queue per drain: under a storm of events the thread still
/// comes back to look whether it should stop.
const READS_PER_DRAIN: usize = 64;

/// Why a directory is not watched.
#[derive(Debug)]
pub enum AddError {
    /// Gone or replaced since it was seen: its parent's events tell.
    Gone,
    /// A system limit: the watcher cannot cover the tree.
    Limit(&'static str),
    /// On a file system the interface does not cover.
    OtherFs,
    Other(Errno),
}

/// A kernel interface that reports changes in directories.
pub trait Kernel: Send + 'static {
    /// How the kernel names a watched directory in its events.
    type Key: Clone + Eq + Hash + Send;
    /// Its name, for the log and the operator.
    const NAME: &'static str;
    /// What its queue's overflow means, for the operator.
    const OVERFLOW: &'static str;
    /// Starts watching the source's root (a final symlink followed).
    fn add_root(&mut self, root: &Path) -> std::io::Result<Self::Key>;
    /// Starts watching the directory at `path`.
    fn add(&mut self, path: &Path) -> Result<Self::Key, AddError>;
    fn remove(&mut self, key: &Self::Key);
    fn fd(&self) -> BorrowedFd<'_>;
    /// Reads the events queued now into `out` (none: the queue is empty).
    fn read(&mut self, out: &mut Vec<Event<Self::Key>>) -> Result<(), Errno>;
}

/// What an event says about a name in a directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct What {
    /// Created or moved in.
    pub added: bool,
    /// Deleted or moved out.
    pub removed: bool,
    /// Written.
    pub written: bool,
    /// Mode, owner, times or extended attributes changed.
    pub attrib: bool,
}

#[derive(Debug)]
pub enum Event<K> {
    Overflow,
    /// The kernel stopped watching a directory of its own accord.
    Dropped(K),
    /// About a watched directory itself.
    OnSelf {
        dir: K,
        gone: bool,
        unmounted: bool,
        attrib: bool,
    },
    /// About a name in a watched directory.
    Child {
        dir: K,
        name: Vec<u8>,
        is_dir: bool,
        what: What,
    },
}

/// The watched directories of one tree.
pub struct Tree<K: Kernel> {
    pub(super) kernel: K,
    root: PathBuf,
    root_id: (u64, u64),
    filter: Filter,
    by_key: HashMap<K::Key, Vec<u8>>,
    /// Byte order, so a directory's descendants are one range.
    pub(super) by_path: BTreeMap<Vec<u8>, K::Key>,
    watched: Arc<Watched>,
    /// A directory on a file system the kernel interface does not cover.
    pub(super) other_fs: Option<Vec<u8>>,
    /// Set once the first watches are set: from then on a directory that
    /// cannot be covered breaks the watcher (to be started anew).
    started: bool,
}

/// Why a tree cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Init(#[source] std::io::Error),
    #[error("watching {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsuitable(String),
}

impl<K: Kernel> Tree<K> {
    /// Watches every directory of the tree at `root` that a walk with
    /// `filter` would enter. Directories that cannot be watched (a system
    /// limit) leave `watched` degraded, not an error.
    ///
    /// # Errors
    /// The root cannot be watched.
    pub fn new(
        mut kernel: K,
        root: &Path,
        filter: Filter,
        watched: Arc<Watched>,
    ) -> Result<Self, WatchError> {
        let root_err = |source| WatchError::Root {
            path: root.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(root).map_err(root_err)?;
        let key = kernel.add_root(root).map_err(root_err)?;
        let mut tree = Self {
            kernel,
            root: root.to_path_buf(),
            root_id: (meta.dev(), meta.ino()),
            filter,
            by_key: HashMap::from([(key.clone(), Vec::new())]),
            by_path: BTreeMap::from([(Vec::new(), key)]),
            watched,
            other_fs: None,
            started: false,
        };
        tree.watch_below(b"");
        tree.started = true;
        Ok(tree)
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Reads the events in the queue now, recording what they say; true
    /// when it read the queue empty.
    ///
    /// # Errors
    /// Reading the queue failed (the watcher cannot go on).
    pub fn drain(&mut self) -> Result<bool, Errno> {
        // Events are read out before they are acted on, since acting adds
        // and drops watches.
        let mut batch = Vec::new();
        for _ in 0..READS_PER_DRAIN {
            self.kernel.read(&mut batch)?;
            if batch.is_empty() {
                return Ok(true);
            }
            for event in batch.drain(..) {
                self.on_event(event);
            }
        }
        Ok(false)
    }

    fn on_event(&mut self, event: Event<K::Key>) {
        let (dir, name, is_dir, what) = match event {
            Event::Overflow => return self.watched.lost(K::OVERFLOW.into()),
            Event::Dropped(key) => {
                if let Some(path) = self.by_key.remove(&key)
                    && self.by_path.get(&path) == Some(&key)
                {
                    if path.is_empty() {
                        self.watched
                            .broken("the source directory's watch was dropped".into());
                    }
                    self.by_path.remove(&path);
                }
                return;
            }
            Event::OnSelf {
                dir,
                gone,
                unmounted,
                attrib,
            } => {
                let Some(dir) = self.by_key.get(&dir).cloned() else {
                    return;
                };
                if dir.is_empty() && gone {
                    self.watched
                        .broken("the source directory itself was moved or deleted".into());
                } else if unmounted {
                    let why = format!("a file system under {} was unmounted", self.show(&dir));
                    match dir.is_empty() {
                        true => self.watched.broken(why),
                        false => self.watched.lost(why),
                    }
                } else if attrib && !dir.is_empty() {
                    self.watched.path_changed(dir);
                }
                return;
            }
            Event::Child {
                dir,
                name,
                is_dir,
                what,
            } => match self.by_key.get(&dir) {
                Some(dir) => (dir.clone(), name, is_dir, what),
                None => return, // not watched (dropped, excluded or outside)
            },
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
        if what.added || what.removed {
            if is_dir && what.removed {
                self.unwatch(&path);
            }
            if is_dir && what.added {
                self.watch(path.clone());
                self.watch_below(&path);
            }
            self.watched.dir_changed(dir);
        } else if what.written || what.attrib {
            // A directory that could not be watched (not readable) may be
            // now that its mode or owner changed.
            if is_dir
                && what.attrib
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
                Ok(meta) if meta.dev() == self.root_id.0 => {}
                _ => return false,
            }
        }
        match self.kernel.add(&full) {
            Ok(key) => {
                if let Some(old) = self.by_key.insert(key.clone(), rel.clone())
                    && old != rel
                {
                    self.by_path.remove(&old);
                }
                self.by_path.insert(rel, key);
                true
            }
            Err(AddError::Gone) => false,
            Err(AddError::Limit(why)) => {
                tracing::error!(path = %self.show(&rel), "{why}");
                self.watched.set_degraded(Some(why.into()));
                self.watched.lost(why.into());
                false
            }
            Err(AddError::OtherFs) => {
                if self.started {
                    let why = format!(
                        "{} is on another file system, which this watcher does not cover",
                        self.show(&rel)
                    );
                    self.watched.lost(why.clone());
                    self.watched.broken(why);
                }
                self.other_fs = Some(rel);
                false
            }
            Err(AddError::Other(e)) => {
                // An unreadable directory: the backup reports it as skipped.
                tracing::warn!(path = %self.show(&rel), error = %e, "cannot watch a directory");
                false
            }
        }
    }

    /// Watches the directories below `rel` (already watched), depth first.
    pub(super) fn watch_below(&mut self, rel: &[u8]) {
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
    pub(super) fn unwatch(&mut self, rel: &[u8]) {
        if let Some(key) = self.by_path.remove(rel) {
            self.by_key.remove(&key);
            self.kernel.remove(&key);
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
        let gone: Vec<(Vec<u8>, K::Key)> = self
            .by_path
            .range(below..end)
            .map(|(p, k)| (p.clone(), k.clone()))
            .collect();
        for (path, key) in gone {
            self.by_path.remove(&path);
            self.by_key.remove(&key);
            // It may be gone already; the kernel then dropped it itself.
            self.kernel.remove(&key);
        }
    }

    /// Whether the root is still the directory first watched (not
    /// unmounted, replaced or gone).
    fn root_is_same(&self) -> bool {
        std::fs::metadata(&self.root).is_ok_and(|m| (m.dev(), m.ino()) == self.root_id)
    }

    fn show(&self, rel: &[u8]) -> String {
        self.root.join(OsStr::from_bytes(rel)).display().to_string()
    }
}

/// A running watcher; stops when dropped.
pub struct TreeWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Which kernel interface it uses.
    pub kind: &'static str,
}

impl Drop for TreeWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads `tree`'s events in a thread of its own until the watcher is dropped.
///
/// # Errors
/// The thread cannot be started.
pub fn run<K: Kernel>(mut tree: Tree<K>) -> Result<TreeWatcher, WatchError> {
    let (watched, kind) = (tree.watched.clone(), K::NAME);
    tracing::info!(root = %tree.root.display(), directories = tree.len(), "watching with {kind}");
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferry-watch".into())
        .spawn(move || {
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: STOP_CHECK.as_nanos() as _,
            };
            let mut root_checked = Instant::now();
            while !stopping.load(Ordering::SeqCst) {
                if root_checked.elapsed() >= ROOT_CHECK {
                    root_checked = Instant::now();
                    if !tree.root_is_same() {
                        let why = "the source directory was replaced, unmounted or removed";
                        watched.lost(why.into());
                        watched.broken(why.into());
                        return;
                    }
                }
                // Asked before this look at the queue: answered by it.
                let asked = watched.sync_asked();
                let polled = {
                    let fd = tree.kernel.fd();
                    let mut fds = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::IN,
                    )];
                    rustix::event::poll(&mut fds, Some(&timeout))
                };
                let ready = match polled {
                    Ok(n) => n > 0,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        watched.broken(format!("polling {kind} failed: {e}"));
                        return;
                    }
                };
                if !ready {
                    watched.synced(asked);
                    continue;
                }
                match tree.drain() {
                    Ok(true) => watched.synced(asked),
                    Ok(false) => {}
                    Err(e) => {
                        watched.broken(format!("reading {kind} failed: {e}"));
                        return;
                    }
                }
            }
        })
        .map_err(WatchError::Init)?;
    Ok(TreeWatcher {
        stop,
        thread: Some(thread),
        kind,
    })
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
