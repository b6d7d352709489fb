//! A directory as the last snapshot's tree plus what changed since: the
//! source of a change-driven snapshot, which lists only what a watcher
//! said changed and reads only files whose stamp moved.
//!
//! The index (see [`crate::journal::tree`]) is streamed in tree order and
//! merged with the directory as it is now: a directory whose listing
//! changed is listed again (new names walked, gone ones dropped with
//! their subtrees), a path whose content or attributes changed is looked
//! at again, and everything else comes from the index unlooked. The index
//! must stem from a full walk, and the changes must name everything since
//! it; the caller falls back to a full walk when it cannot vouch for that.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::dir::DirSource;
use super::{Content, EntryKind, Skipped, Source, SourceEntry, SourceError};
use crate::journal::{FileStamp, Journal, JournalError, Keys};

/// What changed in a directory tree since its last snapshot, as paths
/// relative to its root (`b""` is the root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeChanges {
    /// Directories whose listing changed: names came, went or were renamed.
    pub dirs: BTreeSet<Vec<u8>>,
    /// Entries whose content or attributes changed.
    pub paths: BTreeSet<Vec<u8>>,
}

impl TreeChanges {
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.paths.is_empty()
    }

    pub fn len(&self) -> usize {
        self.dirs.len() + self.paths.len()
    }

    /// Takes in `other` too.
    pub fn merge(&mut self, other: TreeChanges) {
        self.dirs.extend(other.dirs);
        self.paths.extend(other.paths);
    }

    /// Splits these changes into those also in `seen` and the rest.
    pub fn split_by(self, seen: &TreeChanges) -> (TreeChanges, TreeChanges) {
        let (dirs_seen, dirs_new) = self.dirs.into_iter().partition(|d| seen.dirs.contains(d));
        let (paths_seen, paths_new) = self.paths.into_iter().partition(|p| seen.paths.contains(p));
        (
            TreeChanges {
                dirs: dirs_seen,
                paths: paths_seen,
            },
            TreeChanges {
                dirs: dirs_new,
                paths: paths_new,
            },
        )
    }
}

pub struct ChangedTree {
    dir: DirSource,
    journal_path: PathBuf,
    changes: TreeChanges,
}

impl ChangedTree {
    pub fn new(dir: DirSource, journal_path: PathBuf, changes: TreeChanges) -> Self {
        Self {
            dir,
            journal_path,
            changes,
        }
    }
}

impl Source for ChangedTree {
    fn describe(&self) -> String {
        format!(
            "{} (index, {} changed directories and {} changed paths)",
            self.dir.describe(),
            self.changes.dirs.len(),
            self.changes.paths.len()
        )
    }

    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError> {
        let root_dev = self.dir.root_dev()?;
        let journal = Journal::open(&self.journal_path, Keys::Tree)?;
        let mut skipped = Vec::new();
        journal.with_entries(|rows| {
            let mut merge = Merge {
                dir: &self.dir,
                changes: &self.changes,
                rows: Cursor { rows, head: None },
                visit,
                skipped: &mut skipped,
                root_dev,
            };
            merge.children(b"", false)
        })??;
        Ok(skipped)
    }

    fn open(&self, entry: &SourceEntry) -> Result<Content, SourceError> {
        self.dir.open(entry)
    }

    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError> {
        self.dir.stamp_now(entry)
    }

    fn xattrs(&self, entry: &SourceEntry) -> Result<Vec<ferry_proto::v1::Xattr>, SourceError> {
        self.dir.xattrs(entry)
    }
}

/// The index's rows, one looked ahead.
struct Cursor<'a> {
    rows: &'a mut dyn Iterator<Item = Result<SourceEntry, JournalError>>,
    head: Option<SourceEntry>,
}

impl Cursor<'_> {
    /// The next row if it lies below `dir`.
    fn peek_below(&mut self, dir: &[u8]) -> Result<Option<&SourceEntry>, JournalError> {
        if self.head.is_none() {
            self.head = self.rows.next().transpose()?;
        }
        Ok(self.head.as_ref().filter(|row| is_below(&row.path, dir)))
    }

    fn take(&mut self) -> Option<SourceEntry> {
        self.head.take()
    }

    /// Drops the rows below `dir`: a subtree that is gone or listed anew.
    fn skip_below(&mut self, dir: &[u8]) -> Result<(), JournalError> {
        while self.peek_below(dir)?.is_some() {
            self.take();
        }
        Ok(())
    }
}

fn is_below(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// The directory `path` is in (`b""`: the root).
fn parent_of(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&b| b == b'/')
        .map_or(&path[..0], |i| &path[..i])
}

/// The component of `path` right below `dir`.
fn child_name<'p>(path: &'p [u8], dir: &[u8]) -> &'p [u8] {
    let rest = match dir.is_empty() {
        true => path,
        false => &path[dir.len() + 1..],
    };
    rest.split(|&b| b == b'/').next().unwrap_or(rest)
}

struct Merge<'a, 'v> {
    dir: &'a DirSource,
    changes: &'a TreeChanges,
    rows: Cursor<'a>,
    visit: &'v mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    skipped: &'a mut Vec<Skipped>,
    root_dev: u64,
}

impl Merge<'_, '_> {
    /// Visits what is below directory `dir` now, consuming the index's
    /// rows below it. `dir`'s own entry has been visited.
    /// `relist`: list it now even if no change named it.
    fn children(&mut self, dir: &[u8], relist: bool) -> Result<(), SourceError> {
        if (relist || self.changes.dirs.contains(dir))
            && let Some(now) = self.dir.children_now(dir, self.root_dev, self.skipped)?
        {
            return self.listed_anew(dir, now);
        }
        // Unchanged listing (or one that cannot be read now, which keeps
        // what the index has): the index's children, in its order.
        while let Some(row) = self.rows.peek_below(dir)? {
            if parent_of(&row.path) != dir {
                // A row whose directory the index lacks: nothing to hang it on.
                tracing::debug!(path = %String::from_utf8_lossy(&row.path), "index row without its directory");
                self.rows.take();
                continue;
            }
            let Some(row) = self.rows.take() else { break };
            // A directory whose listing changed has a new stamp of its own;
            // a file with further links may have been written through
            // another of its names, which raises events only there.
            let looked_at = self.changes.paths.contains(&row.path)
                || (row.kind == EntryKind::Dir && self.changes.dirs.contains(&row.path))
                || row.link_key.is_some();
            let now = match looked_at {
                true => self.dir.entry_at(&row.path, self.root_dev, self.skipped)?,
                false => Some(row.clone()),
            };
            let was = (row.kind == EntryKind::Dir).then_some(row.stamp);
            match now {
                Some(entry) => self.one(entry, was)?,
                None => self.rows.skip_below(&row.path)?,
            }
        }
        Ok(())
    }

    /// `dir`'s children as listed now, merged with the index's rows below it.
    fn listed_anew(&mut self, dir: &[u8], now: Vec<SourceEntry>) -> Result<(), SourceError> {
        for entry in now {
            let name = child_name(&entry.path, dir).to_vec();
            // Rows of names before this one are gone, subtrees and all.
            while let Some(row) = self.rows.peek_below(dir)? {
                if child_name(&row.path, dir) >= name.as_slice() {
                    break;
                }
                self.rows.take();
            }
            let was = match self.rows.peek_below(dir)? {
                Some(row) if row.path == entry.path => self
                    .rows
                    .take()
                    .filter(|row| row.kind == EntryKind::Dir)
                    .map(|row| row.stamp),
                _ => None,
            };
            self.one(entry, was)?;
        }
        self.rows.skip_below(dir)?;
        Ok(())
    }

    /// Visits `entry` and, for a directory, what is below it: from the
    /// index if the same directory (by inode) was there, else walked.
    /// `was`: the index's stamp of the directory at this path, if it had one.
    fn one(&mut self, entry: SourceEntry, was: Option<FileStamp>) -> Result<(), SourceError> {
        let path = entry.path.clone();
        let stamp = entry.stamp;
        let is_dir = entry.kind == EntryKind::Dir;
        (self.visit)(entry)?;
        match (is_dir, was) {
            // Another directory renamed onto this name: its own subtree,
            // not the index's of the one that was here.
            (true, Some(was)) if was.inode == stamp.inode => {
                // A listing that changed with no change named is listed
                // anyway: the stamp is the directory's own word.
                self.children(&path, was.mtime_ns != stamp.mtime_ns)
            }
            (true, _) => {
                self.rows.skip_below(&path)?;
                self.dir
                    .walk_below(&path, self.root_dev, self.visit, self.skipped)
            }
            (false, _) => Ok(self.rows.skip_below(&path)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Records a full scan of `root` as the committed index.
    fn index(root: &std::path::Path, journal: &std::path::Path) {
        let mut j = Journal::open(journal, Keys::Tree).unwrap();
        j.begin_scan().unwrap();
        for e in crate::source::scan_all(&DirSource::new(root)) {
            if e.kind != EntryKind::Socket {
                let listing = crate::backup::scan::listing(&e);
                j.record(&e.path, &e.stamp, &[], None, listing).unwrap();
            }
        }
        j.end_scan().unwrap();
        j.promote().unwrap();
    }

    fn changes(dirs: &[&str], paths: &[&str]) -> TreeChanges {
        TreeChanges {
            dirs: dirs.iter().map(|d| d.as_bytes().to_vec()).collect(),
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    fn without_atime_noise(mut entries: Vec<SourceEntry>) -> Vec<SourceEntry> {
        for e in &mut entries {
            e.sparse = false;
        }
        entries
    }

    #[test]
    fn the_index_and_the_changes_give_what_a_full_walk_gives() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["a/deep/er", "a-b", "c/d", "gone/sub", "moved", "stay"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "a/deep/er/f",
            "a/x",
            "a-b/y",
            "gone/sub/z",
            "moved/m",
            "stay/s",
            "top",
        ] {
            std::fs::write(root.join(f), f).unwrap();
        }
        symlink("top", root.join("link")).unwrap();
        for d in ["rot/x", "rot/y", "links/a", "links/b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("rot/x/only-in-x"), b"x").unwrap();
        std::fs::write(root.join("rot/y/only-in-y"), b"y").unwrap();
        std::fs::write(root.join("links/a/f"), b"linked").unwrap();
        std::fs::hard_link(root.join("links/a/f"), root.join("links/b/f")).unwrap();
        let journal = dir.path().join("j.db");
        index(&root, &journal);

        // Create, overwrite, rename a directory, delete a subtree, swap a
        // file for a directory, and leave most of it alone.
        std::fs::write(root.join("a/new"), b"new").unwrap();
        std::fs::write(root.join("stay/s"), b"rewritten, longer").unwrap();
        std::fs::rename(root.join("moved"), root.join("a/deep/moved")).unwrap();
        std::fs::remove_dir_all(root.join("gone")).unwrap();
        std::fs::remove_file(root.join("top")).unwrap();
        std::fs::create_dir(root.join("top")).unwrap();
        std::fs::write(root.join("top/inside"), b"i").unwrap();
        std::fs::write(root.join("a-b/y2"), b"beside y").unwrap();
        // A changed listing below an unchanged directory: its own stamp moved.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(root.join("c/d/n"), b"n").unwrap();
        // Two directories trade names: each keeps its own contents.
        std::fs::rename(root.join("rot/x"), root.join("rot/t")).unwrap();
        std::fs::rename(root.join("rot/y"), root.join("rot/x")).unwrap();
        std::fs::rename(root.join("rot/t"), root.join("rot/y")).unwrap();
        // A file written through one of its two names: the watcher hears
        // of the other name's directory nothing.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join("links/b/f"))
                .unwrap();
            f.write_all(b" and more").unwrap();
        }
        let told = changes(
            &["", "a", "a/deep", "a-b", "c/d", "rot"],
            &["stay/s", "links/b/f"],
        );

        let tree = ChangedTree::new(DirSource::new(&root), journal.clone(), told);
        let merged = without_atime_noise(crate::source::scan_all(&tree));
        let walked = without_atime_noise(crate::source::scan_all(&DirSource::new(&root)));
        let paths = |v: &[SourceEntry]| {
            v.iter()
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(&merged), paths(&walked));
        // Directories' own stamps moved with their listings; equal means
        // each changed directory was looked at again.
        assert_eq!(merged, walked);

        // Changes the watcher did not report are not seen: the index
        // answers for what no change named (why a lost event means a walk).
        std::fs::write(root.join("a-b/y"), b"unreported change").unwrap();
        let tree = ChangedTree::new(DirSource::new(&root), journal, TreeChanges::default());
        let stale = crate::source::scan_all(&tree);
        let y = stale.iter().find(|e| e.path == b"a-b/y").unwrap();
        assert_eq!(y.stamp.size, 5, "from the index, not the file's 17 bytes");
    }
}
