//! Deleting from a replica's directory what the snapshot it applies does
//! not hold, in one pass beside the manifest: both are walked in tree order
//! (a directory, then its entries by name, each subtree whole), so memory
//! holds one listing per level, not the tree.

use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use ferry_proto::v1::{EntryType, ManifestEntry};

use super::tombstones::Tombstones;
use crate::source::dir::join;

/// A path's place in tree order: '/' sorts before every other byte.
fn tree_key(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect()
}

/// A directory being walked and its entries (name, whether a directory)
/// not yet reached, last first.
type Level = (Vec<u8>, Vec<(Vec<u8>, bool)>);

/// The replica's directory, walked in tree order as the manifest goes.
pub struct Pruner {
    root: PathBuf,
    /// One per level being walked.
    levels: Vec<Level>,
    last: Option<Vec<u8>>,
    /// The manifest was not in tree order: nothing more is deleted.
    pub out_of_order: bool,
    pub removed: u64,
    /// Count only: nothing is removed (`removed` says what would be).
    dry_run: bool,
    /// Entries the copy holds, as far as walked (deleted directories'
    /// contents included).
    pub entries: u64,
    /// Deleted entries go into a batch of tombstones instead.
    tombstones: Option<Burying>,
    /// Files moved back from their tombstones.
    pub taken_back: u64,
    /// The first entries removed (or buried), by path.
    removed_paths: Vec<String>,
}

/// Where a burying pruner puts what it deletes, and the batches there
/// were when it started (listed once, not once per file it takes back).
struct Burying {
    stones: Tombstones,
    batch: PathBuf,
    batches: Vec<(i64, PathBuf)>,
}

/// What a prune pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed (or with `counting`, that would be).
    pub removed: u64,
    /// Entries the copy held.
    pub entries: u64,
    /// The first of those removed, up to a thousand (none when counting).
    pub removed_paths: Vec<String>,
}

impl Pruner {
    /// # Errors
    /// The directory cannot be listed.
    pub fn new(root: &Path) -> io::Result<Self> {
        Self::start(root, false)
    }

    /// A pruner that removes nothing and counts what it would remove, and
    /// what the copy holds.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn counting(root: &Path) -> io::Result<Self> {
        Self::start(root, true)
    }

    /// A pruner that moves what it deletes into `batch` of `tombstones`,
    /// and a file the snapshot holds again back from its tombstone.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn burying(root: &Path, tombstones: Tombstones, batch: PathBuf) -> io::Result<Self> {
        let mut pruner = Self::start(root, false)?;
        pruner.tombstones = Some(Burying {
            batches: tombstones.batches()?,
            stones: tombstones,
            batch,
        });
        Ok(pruner)
    }

    fn start(root: &Path, dry_run: bool) -> io::Result<Self> {
        let mut pruner = Self {
            root: root.to_path_buf(),
            levels: Vec::new(),
            last: None,
            out_of_order: false,
            removed: 0,
            dry_run,
            entries: 0,
            tombstones: None,
            taken_back: 0,
            removed_paths: Vec::new(),
        };
        pruner.enter(Vec::new())?;
        Ok(pruner)
    }

    fn enter(&mut self, dir: Vec<u8>) -> io::Result<()> {
        let full = self.root.join(std::ffi::OsStr::from_bytes(&dir));
        let mut items = Vec::new();
        for item in fs::read_dir(full)? {
            let item = item?;
            let is_dir = item.file_type()?.is_dir();
            items.push((item.file_name().into_vec(), is_dir));
        }
        items.sort_by(|a, b| b.0.cmp(&a.0));
        self.levels.push((dir, items));
        Ok(())
    }

    /// The next entry of the walk, not taken.
    fn peek(&mut self) -> Option<(Vec<u8>, bool)> {
        while let Some((dir, items)) = self.levels.last() {
            match items.last() {
                Some((name, is_dir)) => return Some((join(dir, name), *is_dir)),
                None => {
                    self.levels.pop();
                }
            }
        }
        None
    }

    fn take(&mut self) {
        if let Some((_, items)) = self.levels.last_mut() {
            items.pop();
            self.entries += 1;
        }
    }

    fn remove(&mut self, rel: &[u8], is_dir: bool) -> io::Result<()> {
        let full = self.root.join(std::ffi::OsStr::from_bytes(rel));
        if self.dry_run {
            let below = match is_dir {
                true => count_below(&full)?,
                false => 0,
            };
            self.entries += below;
            self.removed += 1 + below;
            return Ok(());
        }
        let done = match (&self.tombstones, is_dir) {
            (Some(b), _) => b.stones.bury(&b.batch, &full, rel),
            (None, true) => fs::remove_dir_all(&full),
            (None, false) => fs::remove_file(&full),
        };
        match done {
            Ok(()) => {
                self.removed += 1;
                if self.removed_paths.len() < crate::restore::LISTED_ENTRIES {
                    self.removed_paths
                        .push(String::from_utf8_lossy(rel).into_owned());
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("removing {}: {e}", full.display()),
            )),
        }
    }

    /// As [`Pruner::keep`] for a whole manifest entry: a file the copy
    /// lacks is moved back from its tombstone when one holds it as the
    /// snapshot has it (the restore then finds it written).
    ///
    /// # Errors
    /// As [`Pruner::keep`], or a tombstone that cannot be moved back.
    pub fn keep_entry(&mut self, entry: &ManifestEntry) -> io::Result<()> {
        let is_dir = entry.r#type == EntryType::Dir as i32;
        if self.keep(&entry.path, is_dir)? {
            return Ok(());
        }
        if let Some(burying) = &self.tombstones
            && Tombstones::take_back(&self.root, &burying.batches, entry)?
        {
            self.taken_back += 1;
        }
        Ok(())
    }

    /// The manifest's next entry, `path` (a directory when `is_dir`):
    /// whatever the walk holds before it is not in the snapshot, and goes;
    /// the same path of another kind goes too (the restore writes it anew).
    /// Gives whether the copy holds the entry (true too when no longer
    /// walking: nothing is then done).
    ///
    /// # Errors
    /// An entry that cannot be removed, or a directory listed.
    pub fn keep(&mut self, path: &[u8], is_dir: bool) -> io::Result<bool> {
        if self.out_of_order || path.is_empty() {
            return Ok(true);
        }
        let key = tree_key(path);
        if self.last.as_ref().is_some_and(|last| *last >= key) {
            tracing::warn!(path = %String::from_utf8_lossy(path), "a manifest out of tree order: the replica is not pruned further");
            self.out_of_order = true;
            return Ok(true);
        }
        let mut held = false;
        while let Some((rel, was_dir)) = self.peek() {
            match tree_key(&rel).cmp(&key) {
                std::cmp::Ordering::Less => {
                    self.take();
                    self.remove(&rel, was_dir)?;
                }
                std::cmp::Ordering::Equal => {
                    self.take();
                    match (was_dir, is_dir) {
                        (true, true) => {
                            self.enter(rel)?;
                            held = true;
                        }
                        (false, false) => held = true,
                        _ => self.remove(&rel, was_dir)?,
                    }
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        self.last = Some(key);
        Ok(held)
    }

    /// As [`Pruner::finish`], telling all it did.
    ///
    /// # Errors
    /// As [`Pruner::keep`].
    pub fn finish_counts(mut self) -> io::Result<Pruned> {
        if !self.out_of_order {
            while let Some((rel, was_dir)) = self.peek() {
                self.take();
                self.remove(&rel, was_dir)?;
            }
        }
        Ok(Pruned {
            removed: self.removed,
            entries: self.entries,
            removed_paths: self.removed_paths,
        })
    }

    /// Removes what the walk holds past the manifest's last entry; gives
    /// how many entries went.
    ///
    /// # Errors
    /// As [`Pruner::keep`].
    pub fn finish(self) -> io::Result<u64> {
        self.finish_counts().map(|p| p.removed)
    }
}

/// How many entries are below the directory `dir`.
fn count_below(dir: &Path) -> io::Result<u64> {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in fs::read_dir(&dir)? {
            let item = item?;
            count += 1;
            if item.file_type()?.is_dir() {
                pending.push(item.path());
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[&str], dirs: &[&str]) {
        for d in dirs {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in files {
            fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            fs::write(root.join(f), f.as_bytes()).unwrap();
        }
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for item in fs::read_dir(&dir).unwrap() {
                let path = item.unwrap().path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if path.is_dir() && !path.is_symlink() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn what_the_snapshot_does_not_hold_goes_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(
            root,
            &[
                "a/keep",
                "a/gone",
                "a-b/x",
                "old/deep/f",
                "z",
                "kind/was-file",
                "swap",
            ],
            &["a/emptied", "kind"],
        );
        // The snapshot, in tree order: "a/..." before "a-b" ('/' first).
        let snapshot: &[(&str, bool)] = &[
            ("", true),
            ("a", true),
            ("a/emptied", true),
            ("a/keep", false),
            ("a-b", true),
            ("kind", true),
            ("kind/was-file", true), // a directory now
            ("swap", true),          // a file before
            ("z", false),
        ];
        let mut pruner = Pruner::new(root).unwrap();
        for (path, is_dir) in snapshot {
            pruner.keep(path.as_bytes(), *is_dir).unwrap();
        }
        let removed = pruner.finish().unwrap();
        assert_eq!(
            listing(root),
            ["a", "a-b", "a/emptied", "a/keep", "kind", "z"],
            "a/gone, a-b/x, old (whole) go; kind/was-file and swap are of \
             another kind and go, for the restore to write"
        );
        assert_eq!(removed, 5);
    }

    #[test]
    fn counting_removes_nothing_and_counts_deleted_directories_whole() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["keep", "old/a", "old/b/c"], &[]);
        let before = listing(dir.path());
        let mut pruner = Pruner::counting(dir.path()).unwrap();
        pruner.keep(b"keep", false).unwrap();
        // old, old/a, old/b, old/b/c would go, of 5 entries.
        let pruned = pruner.finish_counts().unwrap();
        assert_eq!((pruned.removed, pruned.entries), (4, 5));
        assert!(pruned.removed_paths.is_empty());
        assert_eq!(listing(dir.path()), before);
    }

    #[test]
    fn a_manifest_out_of_order_prunes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["b", "c", "d"], &[]);
        let mut pruner = Pruner::new(dir.path()).unwrap();
        pruner.keep(b"c", false).unwrap(); // b goes
        pruner.keep(b"a", false).unwrap(); // backwards: stop
        assert!(pruner.out_of_order);
        assert_eq!(pruner.finish().unwrap(), 1);
        assert_eq!(listing(dir.path()), ["c", "d"]);
    }
}
