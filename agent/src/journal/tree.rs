//! A directory source's index as a tree: keys whose byte order is tree
//! order, and the entries listed back from it in that order.
//!
//! Tree order (`ferry_proto::manifest::cmp_paths`) compares paths a
//! component at a time, so `a/z` comes before `a-b`; byte order puts them
//! the other way round ('-' is below '/'). A key is therefore the path with
//! each '/' made a NUL byte, which no name holds: the index's own order is
//! then tree order, a directory's subtree follows it contiguously, and a
//! change-driven snapshot streams the unchanged tree without sorting.
//! Object keys stay as they are: a bucket is listed in key byte order.

use std::borrow::Cow;

use super::{FileStamp, Journal, JournalError};
use crate::source::{EntryKind, SourceEntry};

/// How a journal's keys are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Object keys, as they are.
    Bytes,
    /// Directory paths, '/' as NUL: tree order.
    Tree,
}

impl Keys {
    /// The order for a source: objects by key bytes, files as a tree.
    pub fn of(source: &dyn crate::source::Source) -> Self {
        match source.holds_objects() {
            true => Self::Bytes,
            false => Self::Tree,
        }
    }

    /// What `PRAGMA user_version` holds for this order (0: a journal from
    /// before the order was recorded, whose keys are bytes).
    fn version(self) -> i64 {
        match self {
            Self::Bytes => 1,
            Self::Tree => 2,
        }
    }

    pub(super) fn encode(self, path: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Self::Tree if path.contains(&b'/') => Cow::Owned(
                path.iter()
                    .map(|&b| if b == b'/' { 0 } else { b })
                    .collect(),
            ),
            _ => Cow::Borrowed(path),
        }
    }

    pub(super) fn decode(self, mut key: Vec<u8>) -> Vec<u8> {
        if self == Self::Tree {
            for b in &mut key {
                if *b == 0 {
                    *b = b'/';
                }
            }
        }
        key
    }
}

/// The entry kind a stored mode says (`None`: a socket or unknown type,
/// which the index never holds).
fn kind_of(mode: u32) -> Option<EntryKind> {
    Some(match mode & 0o170000 {
        0o100000 => EntryKind::File,
        0o040000 => EntryKind::Dir,
        0o120000 => EntryKind::Symlink,
        0o010000 => EntryKind::Fifo,
        0o020000 => EntryKind::CharDevice,
        0o060000 => EntryKind::BlockDevice,
        _ => return None,
    })
}

impl Journal {
    /// Rewrites the index in this journal's key order if it was kept in
    /// the other (a journal from before directory indexes were trees).
    pub(super) fn settle_keys(&mut self) -> Result<(), JournalError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err("read key order"))?;
        let want = self.keys.version();
        if version == want {
            // Nothing written: another connection may be mid-scan.
            return Ok(());
        }
        let stored = match version {
            2 => Keys::Tree,
            _ => Keys::Bytes,
        };
        if stored == self.keys {
            // Records the order of a journal from before it was recorded.
            return self
                .conn
                .pragma_update(None, "user_version", want)
                .map_err(self.err("record key order"));
        }
        let rewrite = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            tx.execute_batch(&format!(
                "DELETE FROM files_next; CREATE TABLE files_rekeyed {}",
                super::COLUMNS
            ))?;
            {
                let mut read = tx.prepare("SELECT path FROM files")?;
                let mut copy = tx.prepare(
                    "INSERT INTO files_rekeyed SELECT ?1, size, mtime_ns, ctime_ns, inode, mode,
                     chunks, meta, extra, uid, gid, link_dev, rdev, target FROM files WHERE path = ?2",
                )?;
                let mut rows = read.query([])?;
                while let Some(row) = rows.next()? {
                    let key: Vec<u8> = row.get(0)?;
                    let path = stored.decode(key.clone());
                    copy.execute(rusqlite::params![self.keys.encode(&path).as_ref(), key])?;
                }
            }
            tx.execute_batch(&format!(
                "DROP TABLE files; ALTER TABLE files_rekeyed RENAME TO files; PRAGMA user_version = {want}"
            ))?;
            tx.commit()
        };
        rewrite().map_err(self.err("rewrite the index in tree order"))
    }

    /// Hands `each` the committed index's entries in tree order, streaming:
    /// what a listing of the tree gave at the last snapshot. A directory
    /// source's journal only ([`Keys::Tree`]).
    ///
    /// # Errors
    /// The index cannot be read; a row that is not a whole entry is named.
    pub fn with_entries<R>(
        &self,
        each: impl FnOnce(&mut dyn Iterator<Item = Result<SourceEntry, JournalError>>) -> R,
    ) -> Result<R, JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, size, mtime_ns, ctime_ns, inode, mode, uid, gid, link_dev, rdev, target
                 FROM files ORDER BY path",
            )
            .map_err(self.err("list the tree"))?;
        let keys = self.keys;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    FileStamp {
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        ctime_ns: r.get(3)?,
                        inode: r.get::<_, i64>(4)? as u64,
                        mode: r.get::<_, i64>(5)? as u32,
                    },
                    r.get::<_, Option<u32>>(6)?.unwrap_or(0),
                    r.get::<_, Option<u32>>(7)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?.unwrap_or(0) as u64,
                    r.get::<_, Option<Vec<u8>>>(10)?.unwrap_or_default(),
                ))
            })
            .map_err(self.err("list the tree"))?;
        let mut entries = rows.map(|row| {
            let (key, stamp, uid, gid, link_dev, rdev, target) =
                row.map_err(self.err("list the tree"))?;
            let path = keys.decode(key);
            let kind = kind_of(stamp.mode).ok_or_else(|| JournalError::Corrupt {
                path: self.path.clone(),
                file: String::from_utf8_lossy(&path).into_owned(),
                reason: format!("mode {:o} is no kind of entry the index keeps", stamp.mode),
            })?;
            Ok(SourceEntry {
                path,
                kind,
                stamp,
                uid,
                gid,
                target,
                link_key: link_dev.map(|dev| (dev as u64, stamp.inode)),
                object: None,
                rdev,
                sparse: false,
            })
        });
        Ok(each(&mut entries))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Extra;
    use super::*;

    fn stamp(mode: u32) -> FileStamp {
        FileStamp {
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            inode: 4,
            mode,
        }
    }

    fn listed(j: &Journal) -> Vec<(String, EntryKind)> {
        j.with_entries(|rows| {
            rows.map(|e| {
                let e = e.unwrap();
                (String::from_utf8(e.path).unwrap(), e.kind)
            })
            .collect()
        })
        .unwrap()
    }

    #[test]
    fn the_tree_comes_back_in_tree_order_with_what_a_listing_gave() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.db"), Keys::Tree).unwrap();
        j.begin_scan().unwrap();
        for (path, mode) in [
            ("a-b", 0o100644),
            ("a", 0o040755),
            ("a/z", 0o100644),
            ("a/link", 0o120777),
            ("a.c", 0o010644),
        ] {
            let extra = Extra {
                uid: 1000,
                target: if mode == 0o120777 { b"../a-b" } else { b"" },
                link_dev: (path == "a/z").then_some(9),
                ..Default::default()
            };
            j.record(path.as_bytes(), &stamp(mode), &[], None, extra)
                .unwrap();
        }
        j.end_scan().unwrap();
        j.promote().unwrap();
        assert_eq!(
            listed(&j),
            [
                ("a".into(), EntryKind::Dir),
                ("a/link".into(), EntryKind::Symlink),
                ("a/z".into(), EntryKind::File),
                ("a-b".into(), EntryKind::File),
                ("a.c".into(), EntryKind::Fifo),
            ]
        );
        let link = j
            .with_entries(|rows| rows.map(Result::unwrap).find(|e| e.path == b"a/link"))
            .unwrap()
            .unwrap();
        assert_eq!((link.uid, link.target.as_slice()), (1000, &b"../a-b"[..]));
        let z = j
            .with_entries(|rows| rows.map(Result::unwrap).find(|e| e.path == b"a/z"))
            .unwrap()
            .unwrap();
        assert_eq!(z.link_key, Some((9, 4)));
        assert!(j.unchanged(b"a/z", &stamp(0o100644)).unwrap().is_some());
    }

    #[test]
    fn a_journal_kept_in_byte_order_is_rewritten_once_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut j = Journal::open(&path, Keys::Bytes).unwrap();
        j.begin_scan().unwrap();
        for p in ["a-b", "a/z"] {
            j.record(
                p.as_bytes(),
                &stamp(0o100644),
                &[ferry_proto::BlobId([7; 32])],
                None,
                Extra::default(),
            )
            .unwrap();
        }
        j.end_scan().unwrap();
        j.promote().unwrap();
        // As a journal from before the order was recorded.
        j.conn.pragma_update(None, "user_version", 0).unwrap();
        drop(j);

        let j = Journal::open(&path, Keys::Tree).unwrap();
        let names: Vec<_> = listed(&j).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, ["a/z", "a-b"]);
        let known = j.unchanged(b"a/z", &stamp(0o100644)).unwrap().unwrap();
        assert_eq!(known.ids, [ferry_proto::BlobId([7; 32])]);
        drop(j);
        let j = Journal::open(&path, Keys::Tree).unwrap();
        assert_eq!(j.file_count().unwrap(), 2);
    }
}
