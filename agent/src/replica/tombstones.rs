//! Delayed deletes: a directory replica with a `delete-delay` moves what a
//! commit deletes into a tombstone tree beside the copy instead of
//! removing it, and removes it for good only once the delay has passed
//! and the bucket's replication is not paused. A mass delete at the source
//! can so be stopped (`ferry-hub bucket pause-replication`) and undone:
//! when a later snapshot holds an entry again, the file is moved back from
//! its tombstone rather than fetched, and while paused an operator can
//! take the tombstones back by hand.
//!
//! Tombstones are kept in batches by time of deletion, each an hour long
//! (or the delay, when shorter), `<tombstones>/<start-unix-ms>/<path>`: a
//! batch goes whole once its end is older than the delay, and a lookup
//! looks in about delay/1 h + 1 batches at most.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_proto::v1::ManifestEntry;

const HOUR_MS: i64 = 3_600_000;
/// The shortest batch: a delay of less makes batches of a second.
const MIN_SPAN_MS: i64 = 1_000;

/// A replica's tombstone tree and how long entries stay in it.
#[derive(Clone, Debug)]
pub struct Tombstones {
    pub root: PathBuf,
    pub delay: Duration,
}

/// Where tombstones go by default: beside the copy (on its file system,
/// so a delete is a rename), `<parent>/.<name>.ferry-tombstones`.
pub fn default_root(copy: &Path) -> PathBuf {
    let name = copy
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "copy".into());
    copy.with_file_name(format!(".{name}.ferry-tombstones"))
}

impl Tombstones {
    fn delay_ms(&self) -> i64 {
        i64::try_from(self.delay.as_millis()).unwrap_or(i64::MAX)
    }

    /// How long a batch is: an hour, or the delay when shorter.
    fn span_ms(&self) -> i64 {
        self.delay_ms().clamp(MIN_SPAN_MS, HOUR_MS)
    }

    /// The batch entries deleted at `now_unix_ms` go into.
    pub fn batch_at(&self, now_unix_ms: i64) -> PathBuf {
        let start = now_unix_ms - now_unix_ms.rem_euclid(self.span_ms());
        self.root.join(start.to_string())
    }

    /// How often to look for batches past the delay: a quarter of the
    /// delay, from a second to a minute.
    pub fn purge_every(&self) -> Duration {
        (self.delay / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// The batches there are, newest first, with their start.
    ///
    /// # Errors
    /// The tombstone tree cannot be listed.
    pub fn batches(&self) -> io::Result<Vec<(i64, PathBuf)>> {
        let mut out = Vec::new();
        let listing = match fs::read_dir(&self.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for item in listing {
            let item = item?;
            // Anything else in the tree is not ours to touch.
            if let Some(start) = item.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push((start, item.path()));
            }
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        Ok(out)
    }

    /// Moves `full` (the copy's entry `rel`) into the batch `batch`, or,
    /// when that batch holds the path or something in the way of it (an
    /// older tombstone of it, or of a parent that was a file or a symlink),
    /// into a batch of its own: no tombstone is replaced, and none is
    /// reached through.
    ///
    /// # Errors
    /// The rename fails; across file systems, saying where to put the tree.
    pub fn bury(&self, batch: &Path, full: &Path, rel: &[u8]) -> io::Result<()> {
        let mut batch = batch.to_path_buf();
        let mut fresh = batch
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
        while !room_in(&batch, rel)? {
            fresh += 1;
            batch = self.root.join(fresh.to_string());
        }
        let grave = batch.join(std::ffi::OsStr::from_bytes(rel));
        if let Some(parent) = grave.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(full, &grave).map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV) => io::Error::new(
                e.kind(),
                format!(
                    "moving {} to its tombstone {}: another file system; set `tombstones` to a directory on the copy's",
                    full.display(),
                    grave.display()
                ),
            ),
            _ => io::Error::new(
                e.kind(),
                format!("moving {} to its tombstone: {e}", full.display()),
            ),
        })
    }

    /// Moves the file `entry` back from the newest of `batches` (as
    /// [`Tombstones::batches`] gave them, once per pass) that holds it as
    /// the snapshot has it (size and time), into `copy`; gives whether one
    /// did.
    ///
    /// # Errors
    /// A rename or directory made failing.
    pub fn take_back(
        copy: &Path,
        batches: &[(i64, PathBuf)],
        entry: &ManifestEntry,
    ) -> io::Result<bool> {
        if batches.is_empty()
            || entry.r#type != ferry_proto::v1::EntryType::File as i32
            || !entry.hardlink_to.is_empty()
        {
            return Ok(false);
        }
        if !real_dirs_to(copy, &entry.path) {
            // A symlink in the copy on the way: the restore sees to it.
            return Ok(false);
        }
        for (_, batch) in batches {
            if crate::restore_dir::already_restored(batch, entry) {
                let rel = std::ffi::OsStr::from_bytes(&entry.path);
                let to = copy.join(rel);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::rename(batch.join(rel), &to)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes the batches that ended longer than the delay before
    /// `now_unix_ms`, unless replication was resumed (at `resumed_unix_ms`)
    /// more recently than that: a pause stops the clock, and the delay
    /// runs again from its end. Gives how many batches went.
    ///
    /// # Errors
    /// A batch that cannot be removed.
    pub fn purge(&self, now_unix_ms: i64, resumed_unix_ms: i64) -> io::Result<u64> {
        let (span, delay) = (self.span_ms(), self.delay_ms());
        let mut purged = 0;
        if resumed_unix_ms.saturating_add(delay) > now_unix_ms {
            return Ok(0);
        }
        for (start, batch) in self.batches()? {
            if start.saturating_add(span).saturating_add(delay) <= now_unix_ms {
                fs::remove_dir_all(&batch)?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

/// Whether `rel` can go into `batch`: nothing there yet under its path,
/// and each parent on the way a real directory or not there.
fn room_in(batch: &Path, rel: &[u8]) -> io::Result<bool> {
    let mut at = batch.to_path_buf();
    let mut parts = rel.split(|b| *b == b'/').peekable();
    while let Some(part) = parts.next() {
        at.push(std::ffi::OsStr::from_bytes(part));
        match fs::symlink_metadata(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
            Ok(meta) if parts.peek().is_some() && meta.is_dir() => {}
            Ok(_) => return Ok(false),
        }
    }
    Ok(false)
}

/// Whether each parent of `rel` below `copy` is a real directory (or not
/// there yet): nothing taken back goes through a symlink.
fn real_dirs_to(copy: &Path, rel: &[u8]) -> bool {
    let mut at = copy.to_path_buf();
    let mut parts = rel.split(|b| *b == b'/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return true;
        }
        at.push(std::ffi::OsStr::from_bytes(part));
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_of(path: &Path, rel: &str) -> ManifestEntry {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).unwrap();
        ManifestEntry {
            path: rel.as_bytes().to_vec(),
            r#type: ferry_proto::v1::EntryType::File as i32,
            size: meta.len(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            ..Default::default()
        }
    }

    #[test]
    fn buried_entries_come_back_as_they_were_and_go_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy");
        fs::create_dir_all(copy.join("docs")).unwrap();
        fs::write(copy.join("docs/a.txt"), "alpha").unwrap();
        let a = entry_of(&copy.join("docs/a.txt"), "docs/a.txt");
        let stones = Tombstones {
            root: default_root(&copy),
            delay: Duration::from_secs(2 * 3600),
        };
        assert_eq!(stones.root, dir.path().join(".copy.ferry-tombstones"));
        let t0 = 10 * HOUR_MS + 5;
        let batch = stones.batch_at(t0);
        assert_eq!(batch, stones.root.join((10 * HOUR_MS).to_string()));
        stones.bury(&batch, &copy.join("docs"), b"docs").unwrap();
        assert!(!copy.join("docs").exists());

        // Below a directory buried already in the same hour: beside what
        // it holds. The same path again: a batch of its own, the first
        // tombstone kept.
        fs::create_dir_all(copy.join("docs")).unwrap();
        fs::write(copy.join("docs/other"), "x").unwrap();
        let second = stones.batch_at(t0 + 1000);
        assert_eq!(second, batch);
        stones
            .bury(&second, &copy.join("docs/other"), b"docs/other")
            .unwrap();
        assert!(batch.join("docs/a.txt").exists());
        assert_eq!(fs::read_to_string(batch.join("docs/other")).unwrap(), "x");
        fs::write(copy.join("docs/other"), "y").unwrap();
        stones
            .bury(&second, &copy.join("docs/other"), b"docs/other")
            .unwrap();
        assert_eq!(fs::read_to_string(batch.join("docs/other")).unwrap(), "x");
        let own = stones.root.join((10 * HOUR_MS + 1).to_string());
        assert_eq!(fs::read_to_string(own.join("docs/other")).unwrap(), "y");

        // A symlink buried, then a directory of its name and a file in it:
        // the file's tombstone does not go through the buried symlink.
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, copy.join("d")).unwrap();
        stones.bury(&batch, &copy.join("d"), b"d").unwrap();
        fs::create_dir_all(copy.join("d")).unwrap();
        fs::write(copy.join("d/f"), "in d").unwrap();
        stones.bury(&batch, &copy.join("d/f"), b"d/f").unwrap();
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing went outside"
        );
        assert!(fs::symlink_metadata(batch.join("d")).unwrap().is_symlink());

        // Another content under the name is not taken back; the same is.
        let mut changed = a.clone();
        changed.size += 1;
        let batches = stones.batches().unwrap();
        assert!(!Tombstones::take_back(&copy, &batches, &changed).unwrap());
        assert!(Tombstones::take_back(&copy, &batches, &a).unwrap());
        assert_eq!(
            fs::read_to_string(copy.join("docs/a.txt")).unwrap(),
            "alpha"
        );
        assert!(
            !Tombstones::take_back(&copy, &batches, &a).unwrap(),
            "taken once"
        );

        // Kept until its hour's end plus the delay, and the delay after
        // a resume.
        let due = 11 * HOUR_MS + 2 * 3600 * 1000;
        assert_eq!(stones.purge(due - 1, 0).unwrap(), 0);
        assert!(batch.exists());
        assert_eq!(stones.purge(due, due - 1000).unwrap(), 0);
        assert!(batch.exists());
        assert_eq!(stones.purge(due, 0).unwrap(), 1);
        assert!(!batch.exists());
    }
}
