//! The tree watcher on each kernel interface: the same changes mark the
//! same directories and paths whichever one reports them.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::{Kernel, Tree};
use crate::source::filter::Filter;
use crate::watch::Watched;

type Open<K> = fn(&Path, Filter, Arc<Watched>) -> Tree<K>;

fn set(items: &[&str]) -> BTreeSet<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn watched() -> Arc<Watched> {
    Arc::new(Watched::new(1_000_000))
}

fn creates_writes_renames_and_deletes_mark_what_they_touch<K: Kernel>(open: Open<K>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["a/b", "skip", "c"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("a/b/f"), b"x").unwrap();
    let watched = watched();
    let filter = Filter::new(&["/skip/".into()], None).unwrap();
    let mut tree = open(root, filter, watched.clone());
    assert_eq!(tree.len(), 4, "root, a, a/b, c; not the excluded skip");

    std::fs::write(root.join("a/b/f"), b"rewritten").unwrap();
    std::fs::write(root.join("skip/ignored"), b"excluded").unwrap();
    std::fs::create_dir_all(root.join("c/new/deeper")).unwrap();
    tree.drain().unwrap();
    let taken = watched.take();
    assert!(taken.lost.is_none());
    assert_eq!(taken.changes.paths, set(&["a/b/f"]));
    // c/new too where the kernel saw `deeper` made after c/new was
    // watched: it is new, and listed whole either way.
    assert!(taken.changes.dirs.contains(b"c".as_slice()));
    assert!(
        taken.changes.dirs.iter().all(|d| d.starts_with(b"c")),
        "{taken:?}"
    );
    // The new directory and the one made in it at once are watched.
    std::fs::write(root.join("c/new/deeper/g"), b"g").unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["c/new/deeper"]));

    // A renamed directory is watched under its new name only.
    std::fs::rename(root.join("a"), root.join("c/a2")).unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["", "c"]));
    std::fs::write(root.join("c/a2/b/h"), b"h").unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["c/a2/b"]));

    // A directory's own mode, and a file's, mark their paths.
    std::fs::set_permissions(root.join("c/a2"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        root.join("c/a2/b/h"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.paths, set(&["c/a2", "c/a2/b/h"]));

    std::fs::remove_dir_all(root.join("c/new")).unwrap();
    tree.drain().unwrap();
    assert!(watched.take().changes.dirs.contains(b"c".as_slice()));
    assert!(!tree.by_path.contains_key(b"c/new".as_slice()));
    assert!(!tree.by_path.contains_key(b"a".as_slice()));
    assert!(tree.by_path.contains_key(b"c/a2/b".as_slice()));
}

fn changes_outside_the_tree_are_not_its_own<K: Kernel>(open: Open<K>) {
    let dir = tempfile::tempdir().unwrap();
    let (root, beside) = (dir.path().join("root"), dir.path().join("beside"));
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::create_dir_all(&beside).unwrap();
    let watched = watched();
    let mut tree = open(&root, Filter::default(), watched.clone());
    std::fs::write(beside.join("f"), b"elsewhere").unwrap();
    std::fs::create_dir(beside.join("d")).unwrap();
    std::fs::write(dir.path().join("next to the root"), b"").unwrap();
    tree.drain().unwrap();
    let taken = watched.take();
    assert!(
        taken.changes.dirs.is_empty() && taken.changes.paths.is_empty(),
        "{taken:?}"
    );
    // Moved in from outside: listed, and watched from then on.
    std::fs::rename(beside.join("d"), root.join("in/d")).unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["in"]));
    std::fs::write(root.join("in/d/g"), b"g").unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["in/d"]));
    // Moved out: no longer watched.
    std::fs::rename(root.join("in/d"), beside.join("d")).unwrap();
    tree.drain().unwrap();
    watched.take();
    std::fs::write(beside.join("d/h"), b"h").unwrap();
    tree.drain().unwrap();
    assert!(watched.take().changes.dirs.is_empty());
}

fn an_overflowed_queue_is_a_lost_event<K: Kernel>(open: Open<K>, limit: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("c")).unwrap();
    let watched = watched();
    let mut tree = open(dir.path(), Filter::default(), watched.clone());
    let max: usize = std::fs::read_to_string(limit)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    // More distinct events than the kernel queues, none read meanwhile.
    let many = dir.path().join("c");
    for i in 0..max + 100 {
        std::fs::write(many.join(format!("f{i}")), b"").unwrap();
    }
    tree.drain().unwrap();
    let taken = watched.take();
    assert!(
        taken
            .lost
            .as_deref()
            .is_some_and(|w| w.contains("overflowed")),
        "{taken:?}"
    );
}

fn a_cache_tag_drops_and_gives_back_the_watches_below_it<K: Kernel>(open: Open<K>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cache/sub")).unwrap();
    let watched = watched();
    let mut filter = Filter::default();
    filter.exclude_caches = true;
    let mut tree = open(dir.path(), filter, watched.clone());
    assert!(tree.by_path.contains_key(b"cache/sub".as_slice()));
    let tag = dir.path().join("cache/CACHEDIR.TAG");
    std::fs::write(&tag, crate::source::filter::CACHEDIR_SIGNATURE).unwrap();
    tree.drain().unwrap();
    assert!(!tree.by_path.contains_key(b"cache/sub".as_slice()));
    assert!(tree.by_path.contains_key(b"cache".as_slice()));
    std::fs::remove_file(&tag).unwrap();
    tree.drain().unwrap();
    assert!(tree.by_path.contains_key(b"cache/sub".as_slice()));
    assert_eq!(watched.take().changes.dirs, set(&["cache"]));
}

fn a_symlinked_root_is_watched_and_a_deleted_root_breaks_the_watcher<K: Kernel>(open: Open<K>) {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir_all(real.join("a")).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let watched = watched();
    let mut tree = open(&link, Filter::default(), watched.clone());
    std::fs::write(real.join("a/f"), b"f").unwrap();
    tree.drain().unwrap();
    assert_eq!(watched.take().changes.dirs, set(&["a"]));

    std::fs::remove_dir_all(&real).unwrap();
    tree.drain().unwrap();
    assert!(
        watched.take_broken().is_some(),
        "the watcher is to be started anew"
    );
    assert!(watched.take().lost.is_some());
}

use std::os::unix::fs::PermissionsExt;

macro_rules! on_kernel {
    ($module:ident, $open:expr, $limit:expr, $($test:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test($open);
                }
            )*
            #[test]
            fn an_overflowed_queue_is_a_lost_event() {
                super::an_overflowed_queue_is_a_lost_event($open, $limit);
            }
        }
    };
}

on_kernel!(
    inotify,
    |root, filter, watched| crate::watch::inotify::watches(root, filter, watched).unwrap(),
    "/proc/sys/fs/inotify/max_queued_events",
    creates_writes_renames_and_deletes_mark_what_they_touch,
    changes_outside_the_tree_are_not_its_own,
    a_cache_tag_drops_and_gives_back_the_watches_below_it,
    a_symlinked_root_is_watched_and_a_deleted_root_breaks_the_watcher
);

// fanotify's file-system marks need CAP_SYS_ADMIN: the suite runs as root.
on_kernel!(
    fanotify,
    |root, filter, watched| crate::watch::fanotify::marks(root, filter, watched).unwrap(),
    "/proc/sys/fs/fanotify/max_queued_events",
    creates_writes_renames_and_deletes_mark_what_they_touch,
    changes_outside_the_tree_are_not_its_own,
    a_cache_tag_drops_and_gives_back_the_watches_below_it,
    a_symlinked_root_is_watched_and_a_deleted_root_breaks_the_watcher
);

#[test]
fn an_inotify_directory_that_becomes_readable_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir_all(locked.join("inner")).unwrap();
    let watched = watched();
    let mut tree =
        crate::watch::inotify::watches(dir.path(), Filter::default(), watched.clone()).unwrap();
    // As if it had been unreadable when the watches were set.
    tree.unwatch(b"locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    tree.drain().unwrap();
    assert!(tree.by_path.contains_key(b"locked/inner".as_slice()));
    assert!(watched.take().changes.dirs.contains(b"locked".as_slice()));
}

#[test]
fn a_tree_reaching_onto_another_file_system_is_left_to_inotify() {
    // A tree whose root is / reaches /proc, another file system.
    let watched = watched();
    // Only what is needed to reach /proc: the rest is left out.
    let filter = Filter::new(&["/*".into(), "!/proc".into(), "/proc/*".into()], None).unwrap();
    match crate::watch::fanotify::marks(Path::new("/"), filter, watched.clone()) {
        Err(super::WatchError::Unsuitable(why)) => assert!(why.contains("/proc"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("/proc is another file system"),
    }
    assert!(watched.take_broken().is_none(), "nothing to start anew");

    // `auto` then watches with inotify; `fanotify` refuses.
    use crate::watch::{WatcherKind, start};
    let proc_only =
        || Filter::new(&["/*".into(), "!/proc".into(), "/proc/*".into()], None).unwrap();
    let auto = start(
        Path::new("/"),
        proc_only(),
        watched.clone(),
        WatcherKind::Auto,
    )
    .unwrap();
    assert_eq!(auto.kind, "inotify");
    assert!(
        start(
            Path::new("/"),
            proc_only(),
            watched.clone(),
            WatcherKind::Fanotify
        )
        .is_err()
    );
    let dir = tempfile::tempdir().unwrap();
    let auto = start(dir.path(), Filter::default(), watched, WatcherKind::Auto).unwrap();
    assert_eq!(auto.kind, "fanotify", "as root, on one file system");
}
