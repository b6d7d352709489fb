//! Watching a directory source for changes, so `ferry-agent run` takes a
//! snapshot soon after something changes and lists only what did.
//!
//! A watcher ([`fanotify`] where it can, [`inotify`] otherwise, both driving
//! a [`tree`]) records what changed in a [`Watched`]; the daemon takes it
//! when it snapshots. What the watcher cannot vouch for (a
//! queue overflow, more changes pending than it keeps, a directory it
//! cannot watch, the root itself moved) is recorded as *lost*, and the next
//! snapshot walks the whole tree against the index instead: a lost event
//! costs a walk, never a missed change.

pub mod fanotify;
pub mod inotify;
pub mod tree;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::source::changed::TreeChanges;
use crate::source::filter::Filter;

/// Which kernel interface watches directory sources (`[run] watcher`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatcherKind {
    /// fanotify where the kernel, the privileges and the tree allow it,
    /// inotify otherwise.
    #[default]
    Auto,
    Fanotify,
    Inotify,
}

/// Starts watching the tree at `root` with the interface `kind` asks for.
///
/// # Errors
/// The interface is unavailable or the root cannot be watched.
pub fn start(
    root: &std::path::Path,
    filter: Filter,
    watched: std::sync::Arc<Watched>,
    kind: WatcherKind,
) -> Result<tree::TreeWatcher, tree::WatchError> {
    match kind {
        WatcherKind::Inotify => inotify::start(root, filter, watched),
        WatcherKind::Fanotify => fanotify::start(root, filter, watched),
        WatcherKind::Auto => match fanotify::start(root, filter.clone(), watched.clone()) {
            Ok(watcher) => Ok(watcher),
            Err(e) => {
                tracing::info!(root = %root.display(), reason = %e, "fanotify cannot watch this tree: inotify does");
                inotify::start(root, filter, watched)
            }
        },
    }
}

/// What a watcher gathered since the last take.
#[derive(Debug, Default)]
pub struct Gathered {
    pub changes: TreeChanges,
    /// Why the changes cannot be trusted to be complete, if they cannot.
    pub lost: Option<String>,
    /// When the first of them came.
    pub since: Option<Instant>,
}

/// The changes a watcher gathered, shared with the snapshot loop.
pub struct Watched {
    state: Mutex<Gathered>,
    /// Rung at the first change after a take.
    pub wake: Notify,
    /// Changes kept before they count as lost (memory stays bounded).
    max_changes: usize,
    /// Set while part of the tree is unwatched: every take is then lost.
    degraded: Mutex<Option<String>>,
    /// Set when the watcher went blind.
    broken: Mutex<Option<String>>,
    /// [`Watched::sync`]'s requests, and the last one the watcher answered
    /// by reading its queue empty.
    sync_asked: AtomicU64,
    sync_done: AtomicU64,
}

impl Watched {
    pub fn new(max_changes: usize) -> Self {
        Self {
            state: Mutex::new(Gathered::default()),
            wake: Notify::new(),
            max_changes: max_changes.max(1),
            degraded: Mutex::new(None),
            broken: Mutex::new(None),
            sync_asked: AtomicU64::new(0),
            sync_done: AtomicU64::new(0),
        }
    }

    fn with(&self, change: impl FnOnce(&mut Gathered)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = state.changes.is_empty() && state.lost.is_none();
        change(&mut state);
        if state.lost.is_none() && state.changes.len() > self.max_changes {
            state.lost = Some(format!(
                "more than {} changes pending (run.max-changes)",
                self.max_changes
            ));
        }
        if state.lost.is_some() {
            // A walk follows: what is gathered no longer matters.
            state.changes = TreeChanges::default();
        }
        if was_empty && (state.lost.is_some() || !state.changes.is_empty()) {
            state.since.get_or_insert_with(Instant::now);
            self.wake.notify_one();
        }
    }

    /// Names came, went or were renamed in directory `dir`.
    pub fn dir_changed(&self, dir: Vec<u8>) {
        self.with(|s| {
            if s.lost.is_none() {
                s.changes.dirs.insert(dir);
            }
        });
    }

    /// The content or attributes of `path` changed.
    pub fn path_changed(&self, path: Vec<u8>) {
        self.with(|s| {
            if s.lost.is_none() {
                s.changes.paths.insert(path);
            }
        });
    }

    /// Changes may have been missed.
    pub fn lost(&self, why: String) {
        self.with(|s| {
            s.lost.get_or_insert(why);
        });
    }

    /// The watcher can no longer see the tree (its root's watch is gone, or
    /// its thread stopped): lost, and to be started anew.
    pub fn broken(&self, why: String) {
        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        self.lost(why);
    }

    /// Why the watcher must be started anew, once.
    pub fn take_broken(&self) -> Option<String> {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Why part of the tree is unwatched, if it is.
    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (at most `within`) until the watcher has read every event the
    /// kernel queued before this call: what a hook just did is then in.
    /// False if the watcher did not answer in time.
    pub async fn sync(&self, within: Duration) -> bool {
        let asked = self.sync_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let deadline = tokio::time::Instant::now() + within;
        while self.sync_done.load(Ordering::SeqCst) < asked {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The newest sync request (the watcher reads it before it looks at
    /// its queue).
    pub fn sync_asked(&self) -> u64 {
        self.sync_asked.load(Ordering::SeqCst)
    }

    /// The watcher read its queue empty after request `asked` came.
    pub fn synced(&self, asked: u64) {
        self.sync_done.fetch_max(asked, Ordering::SeqCst);
    }

    /// Part of the tree cannot be watched (`None`: all of it is again).
    pub fn set_degraded(&self, why: Option<String>) {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// What was gathered, leaving nothing.
    pub fn take(&self) -> Gathered {
        let mut taken = std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.lost.is_none()
            && let Some(why) = self
                .degraded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        {
            taken.lost = Some(why);
        }
        taken
    }

    /// Gives back what a failed snapshot took, so the retry takes it again.
    pub fn put_back(&self, taken: Gathered) {
        self.with(|s| {
            // The retry is as late as the oldest change it carries.
            s.since = match (s.since, taken.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match (taken.lost, s.lost.is_some()) {
                (Some(why), false) => s.lost = Some(why),
                (None, false) => s.changes.merge(taken.changes),
                (_, true) => {}
            }
        });
    }

    /// When the first change waiting to be taken came (`None`: nothing waits).
    pub fn pending_since(&self) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pending = state.lost.is_some() || !state.changes.is_empty();
        pending.then_some(state.since).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_changes_count_as_lost_and_keep_no_memory() {
        let w = Watched::new(3);
        w.dir_changed(b"a".to_vec());
        w.path_changed(b"a/x".to_vec());
        let first = w.pending_since().unwrap();
        let taken = w.take();
        assert_eq!(taken.changes.len(), 2);
        assert_eq!(taken.since, Some(first));
        assert!(taken.lost.is_none() && w.pending_since().is_none());

        for i in 0..10 {
            w.path_changed(format!("f{i}").into_bytes());
        }
        let taken = w.take();
        assert!(taken.lost.unwrap().contains("max-changes"));
        assert!(taken.changes.is_empty());

        // A failed snapshot's changes come back for the retry.
        w.path_changed(b"late".to_vec());
        w.put_back(Gathered {
            changes: TreeChanges {
                paths: [b"early".to_vec()].into(),
                ..Default::default()
            },
            lost: None,
            since: None,
        });
        assert_eq!(w.take().changes.paths.len(), 2);

        w.set_degraded(Some("out of watches".into()));
        assert_eq!(w.take().lost.as_deref(), Some("out of watches"));
    }
}
