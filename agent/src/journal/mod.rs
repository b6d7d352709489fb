//! The agent's change journal for a directory source: a files index in
//! SQLite. A rescan looks each path up here; a file whose size, mtime,
//! ctime, inode and mode are unchanged reuses its chunk list unread.
//!
//! For a bucket source the same index is the object index: the path is the
//! key, the stamp holds size, last-modified and a tag of etag and version id
//! (see `source::bucket`), and `meta` the object's metadata (etag, version
//! id, content type, user metadata), so an unchanged object is neither read
//! nor asked for its metadata again.
//!
//! For a directory source the index holds every entry of the last snapshot,
//! not only its files, with what a listing gives (owner, link target,
//! device), keyed so that key order is tree order: a change-driven
//! snapshot lists the unchanged part of the tree from here (see [`tree`]).
//!
//! A backup writes what it saw into `files_next`; only after the hub has
//! committed the snapshot does `promote` make it the index. A crash or a
//! failed backup therefore leaves the last committed index in force.

use std::path::{Path, PathBuf};

use ferry_proto::v1::{ManifestEntry, ObjectMeta, Xattr};
use ferry_proto::{BlobId, ID_LEN};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

pub mod tree;
pub use tree::Keys;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: row for {file:?}: {reason}")]
    Corrupt {
        path: PathBuf,
        file: String,
        reason: String,
    },
}

/// What the index knows of an unchanged entry.
#[derive(Debug, PartialEq)]
pub struct Known {
    pub ids: Vec<BlobId>,
    /// Objects only.
    pub object: Option<Box<ObjectMeta>>,
    /// Sparse files only: the holes, as (offset, length) pairs flattened.
    pub holes: Vec<u64>,
    pub xattrs: Vec<Xattr>,
}

/// What the index keeps of an entry beyond its stamp and chunks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra<'a> {
    /// Flattened (offset, length) pairs.
    pub holes: &'a [u64],
    pub xattrs: &'a [Xattr],
    pub uid: u32,
    pub gid: u32,
    /// The device of a file with further hard links (the stamp has its inode).
    pub link_dev: Option<u64>,
    /// Device nodes: the device number.
    pub rdev: u64,
    /// Symlinks: the target.
    pub target: &'a [u8],
}

/// What identifies an unchanged file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub mode: u32,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
    keys: Keys,
}

/// Columns of `files` (the index) and `files_next` (a scan's rows).
const COLUMNS: &str = "(
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    chunks BLOB NOT NULL,
    meta BLOB,
    extra BLOB,
    uid INTEGER,
    gid INTEGER,
    link_dev INTEGER,
    rdev INTEGER,
    target BLOB
) WITHOUT ROWID";

/// Columns added since the first journals, with their types.
const ADDED_COLUMNS: [(&str, &str); 7] = [
    ("meta", "BLOB"),
    ("extra", "BLOB"),
    ("uid", "INTEGER"),
    ("gid", "INTEGER"),
    ("link_dev", "INTEGER"),
    ("rdev", "INTEGER"),
    ("target", "BLOB"),
];

/// Packed 32-byte ids sorted, each kept once; in place, no second list.
fn sorted_once(mut packed: Vec<u8>) -> Vec<u8> {
    let (ids, _) = packed.as_chunks_mut::<ID_LEN>();
    ids.sort_unstable();
    let mut kept = 0;
    for i in 0..ids.len() {
        if kept == 0 || ids[i] != ids[kept - 1] {
            ids[kept] = ids[i];
            kept += 1;
        }
    }
    packed.truncate(kept * ID_LEN);
    packed
}

impl Journal {
    /// Opens (or makes) the journal at `path`, its keys in `keys` order: a
    /// journal kept in the other order is rewritten once.
    pub fn open(path: &Path, keys: Keys) -> Result<Self, JournalError> {
        let err = |op| {
            let path = path.to_path_buf();
            move |source| JournalError::Sqlite { path, op, source }
        };
        let conn = Connection::open(path).map_err(err("open"))?;
        // A backup reads through one connection while it writes through another.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("set WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err("set synchronous"))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS files {COLUMNS};
             CREATE TABLE IF NOT EXISTS files_next {COLUMNS};"
        ))
        .map_err(err("create schema"))?;
        // Journals written before objects existed lack the `meta` column,
        // before sparse files the `extra` one (a ManifestEntry holding only
        // what the stamp does not: the holes), and before change-driven
        // directory snapshots the listing's columns.
        for table in ["files", "files_next"] {
            for (column, kind) in ADDED_COLUMNS {
                let has: bool = conn
                    .query_row(
                        &format!(
                            "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
                        ),
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n > 0)
                    .map_err(err("read schema"))?;
                if !has {
                    conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                        .map_err(err("add a column"))?;
                }
            }
        }
        let mut journal = Self {
            conn,
            path: path.to_path_buf(),
            keys,
        };
        journal.settle_keys()?;
        Ok(journal)
    }

    /// A row whose chunk list is not whole 32-byte ids.
    fn torn_chunk_list(&self, file: &[u8], len: usize) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            file: String::from_utf8_lossy(file).into_owned(),
            reason: format!("chunk list of {len} bytes (not a multiple of {ID_LEN})"),
        }
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> JournalError + '_ {
        move |source| JournalError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Starts a scan: clears what an interrupted scan left in `files_next`
    /// and opens the transaction the scan's rows go into.
    pub fn begin_scan(&mut self) -> Result<(), JournalError> {
        self.conn
            .execute_batch("DELETE FROM files_next; BEGIN")
            .map_err(self.err("begin scan"))
    }

    /// Whether the index holds no file at all (a source's first backup).
    pub fn index_is_empty(&self) -> Result<bool, JournalError> {
        self.conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM files)", [], |r| r.get(0))
            .map_err(self.err("count files"))
    }

    /// The chunk list recorded for `path` if its stamp is unchanged.
    pub fn unchanged(&self, path: &[u8], stamp: &FileStamp) -> Result<Option<Known>, JournalError> {
        type Row = (
            i64,
            i64,
            i64,
            i64,
            i64,
            Vec<u8>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT size, mtime_ns, ctime_ns, inode, mode, chunks, meta, extra FROM files WHERE path = ?1",
            )
            .and_then(|mut st| {
                st.query_row([self.keys.encode(path).as_ref()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .optional()
            })
            .map_err(self.err("look up file"))?;
        let Some((size, mtime, ctime, inode, mode, chunks, meta, extra)) = row else {
            return Ok(None);
        };
        let same = size as u64 == stamp.size
            && mtime == stamp.mtime_ns
            && ctime == stamp.ctime_ns
            && inode as u64 == stamp.inode
            && mode as u32 == stamp.mode;
        if !same {
            return Ok(None);
        }
        let corrupt = |reason: String| JournalError::Corrupt {
            path: self.path.clone(),
            file: String::from_utf8_lossy(path).into_owned(),
            reason,
        };
        let ids = decode_chunks(&chunks).ok_or_else(|| self.torn_chunk_list(path, chunks.len()))?;
        let object = meta
            .map(|m| ObjectMeta::decode(m.as_slice()).map(Box::new))
            .transpose()
            .map_err(|e| corrupt(format!("object metadata: {e}")))?;
        let (holes, xattrs) = match extra {
            Some(bytes) => {
                let extra = ManifestEntry::decode(bytes.as_slice())
                    .map_err(|e| corrupt(format!("file layout and attributes: {e}")))?;
                (extra.holes, extra.xattrs)
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(Some(Known {
            ids,
            object,
            holes,
            xattrs,
        }))
    }

    /// Records what this scan saw of a file.
    pub fn record(
        &self,
        path: &[u8],
        stamp: &FileStamp,
        chunks: &[BlobId],
        object: Option<&ObjectMeta>,
        extra: Extra<'_>,
    ) -> Result<(), JournalError> {
        let layout = (!extra.holes.is_empty() || !extra.xattrs.is_empty()).then(|| {
            ManifestEntry {
                holes: extra.holes.to_vec(),
                xattrs: extra.xattrs.to_vec(),
                ..Default::default()
            }
            .encode_to_vec()
        });
        let mut blob = Vec::with_capacity(chunks.len() * ID_LEN);
        for c in chunks {
            blob.extend_from_slice(c.as_bytes());
        }
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO files_next
                 (path, size, mtime_ns, ctime_ns, inode, mode, chunks, meta, extra, uid, gid, link_dev, rdev, target)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.keys.encode(path).as_ref(),
                    stamp.size as i64,
                    stamp.mtime_ns,
                    stamp.ctime_ns,
                    stamp.inode as i64,
                    stamp.mode as i64,
                    blob,
                    object.map(Message::encode_to_vec),
                    layout,
                    // Zero owners, links and devices (most rows) are kept as NULL.
                    (extra.uid != 0).then_some(extra.uid),
                    (extra.gid != 0).then_some(extra.gid),
                    extra.link_dev.map(|d| d as i64),
                    (extra.rdev != 0).then_some(extra.rdev as i64),
                    (!extra.target.is_empty()).then_some(extra.target),
                ])
            })
            .map_err(self.err("record file"))?;
        Ok(())
    }

    /// The data chunk ids the scan's rows reference (what a commit lists),
    /// as 32-byte ids back to back, handed to `each` in parts of at most
    /// `part_ids` ids, each part sorted and listing an id once (another part
    /// may list it again). Read back from the rows rather than kept through
    /// the scan, and a part at a time, so memory stays flat however many
    /// files there are: the whole list takes 32 bytes a chunk, 32 MiB for a
    /// million files.
    pub fn pending_chunk_id_parts<E: From<JournalError>>(
        &self,
        part_ids: usize,
        mut each: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let part_bytes = part_ids.max(1) * ID_LEN;
        let mut part = Vec::with_capacity(part_bytes);
        let mut stmt = self
            .conn
            .prepare("SELECT path, chunks FROM files_next")
            .map_err(self.err("list chunks"))?;
        let mut rows = stmt.query([]).map_err(self.err("list chunks"))?;
        while let Some(row) = rows.next().map_err(self.err("list chunks"))? {
            let chunks = row
                .get_ref(1)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(self.err("list chunks"))?;
            if !chunks.len().is_multiple_of(ID_LEN) {
                let path: Vec<u8> = row.get(0).unwrap_or_default();
                let path = self.keys.decode(path);
                return Err(self.torn_chunk_list(&path, chunks.len()).into());
            }
            // A file of many chunks may fill several parts.
            let mut rest = chunks;
            while !rest.is_empty() {
                let (now, later) = rest.split_at((part_bytes - part.len()).min(rest.len()));
                part.extend_from_slice(now);
                rest = later;
                if part.len() == part_bytes {
                    let full = std::mem::replace(&mut part, Vec::with_capacity(part_bytes));
                    each(sorted_once(full))?;
                }
            }
        }
        if !part.is_empty() {
            each(sorted_once(part))?;
        }
        Ok(())
    }

    /// Ends the scan's transaction; the rows stay pending until `promote`.
    pub fn end_scan(&mut self) -> Result<(), JournalError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(self.err("end scan"))
    }

    /// The hub has committed the snapshot: the scan becomes the index.
    pub fn promote(&mut self) -> Result<(), JournalError> {
        // The scan's table becomes the index by name: no row is copied, and
        // the old index's pages go to the free list.
        self.conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DROP TABLE files;
                 ALTER TABLE files_next RENAME TO files;
                 CREATE TABLE files_next {COLUMNS};
                 COMMIT;"
            ))
            .inspect_err(|_| {
                // Leave no half-done transaction open on the connection.
                let _ = self.conn.execute_batch("ROLLBACK");
            })
            .map_err(self.err("promote scan"))
    }

    /// Calls `visit` for every row of the committed index, in key order
    /// (byte order for objects), streaming (the index may hold millions of rows).
    ///
    /// # Errors
    /// A journal error, or the first error `visit` returns.
    pub fn for_each_indexed<E: From<JournalError>>(
        &self,
        visit: &mut dyn FnMut(Vec<u8>, FileStamp, Option<Box<ObjectMeta>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, size, mtime_ns, ctime_ns, inode, mode, meta FROM files ORDER BY path",
            )
            .map_err(self.err("list index"))?;
        let mut rows = stmt.query([]).map_err(self.err("list index"))?;
        while let Some(row) = rows.next().map_err(self.err("list index"))? {
            let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    FileStamp {
                        size: row.get::<_, i64>(1)? as u64,
                        mtime_ns: row.get(2)?,
                        ctime_ns: row.get(3)?,
                        inode: row.get::<_, i64>(4)? as u64,
                        mode: row.get::<_, i64>(5)? as u32,
                    },
                    row.get::<_, Option<Vec<u8>>>(6)?,
                ))
            };
            let (path, stamp, meta) = read(row).map_err(self.err("list index"))?;
            let path = self.keys.decode(path);
            let meta = meta
                .map(|m| ObjectMeta::decode(m.as_slice()).map(Box::new))
                .transpose()
                .map_err(|e| JournalError::Corrupt {
                    path: self.path.clone(),
                    file: String::from_utf8_lossy(&path).into_owned(),
                    reason: format!("object metadata: {e}"),
                })?;
            visit(path, stamp, meta)?;
        }
        Ok(())
    }

    pub fn file_count(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM files", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err("count files"))
    }
}

fn decode_chunks(blob: &[u8]) -> Option<Vec<BlobId>> {
    if !blob.len().is_multiple_of(ID_LEN) {
        return None;
    }
    Some(
        blob.chunks_exact(ID_LEN)
            .filter_map(|c| <[u8; ID_LEN]>::try_from(c).ok().map(BlobId))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> FileStamp {
        FileStamp {
            size,
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
            mode: 0o644,
        }
    }

    /// The parts `pending_chunk_id_parts` hands out, `part_ids` ids at most each.
    fn parts(j: &Journal, part_ids: usize) -> Result<Vec<Vec<u8>>, JournalError> {
        let mut parts = Vec::new();
        j.pending_chunk_id_parts(part_ids, |p| {
            parts.push(p);
            Ok::<_, JournalError>(())
        })?;
        Ok(parts)
    }

    #[test]
    fn pending_chunk_ids_are_this_scans_in_sorted_parts_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.db"), Keys::Bytes).unwrap();
        j.begin_scan().unwrap();
        j.record(
            b"old",
            &stamp(1),
            &[BlobId([9; 32])],
            None,
            Extra::default(),
        )
        .unwrap();
        j.end_scan().unwrap();
        j.promote().unwrap();

        j.begin_scan().unwrap();
        j.record(
            b"b",
            &stamp(2),
            &[BlobId([3; 32]), BlobId([1; 32])],
            None,
            Extra::default(),
        )
        .unwrap();
        j.record(
            b"a",
            &stamp(2),
            &[BlobId([1; 32]), BlobId([2; 32])],
            None,
            Extra::default(),
        )
        .unwrap();
        j.record(b"empty", &stamp(0), &[], None, Extra::default())
            .unwrap();
        j.end_scan().unwrap();
        let want: Vec<u8> = [[1u8; 32], [2; 32], [3; 32]].concat();
        assert_eq!(
            parts(&j, 100).unwrap(),
            [want],
            "one part; the promoted scan's [9; 32] is not this scan's"
        );

        // Parts of 3: the rows' four ids (in the table's order, "a" first)
        // split after the third, the second file's list across two parts.
        let split = parts(&j, 3).unwrap();
        assert_eq!(split.len(), 2, "{split:?}");
        assert_eq!(split[0], [[1u8; 32], [2; 32], [3; 32]].concat());
        assert_eq!(split[1], [1u8; 32]);
        // One id per part: every reference, none lost.
        let ones = parts(&j, 1).unwrap();
        assert_eq!(ones.len(), 4);
        assert!(ones.iter().all(|p| p.len() == 32));

        // A row whose chunk list is torn is named, not misread.
        j.conn
            .execute(
                "INSERT INTO files_next (path, size, mtime_ns, ctime_ns, inode, mode, chunks)
                 VALUES (X'746f726e', 1, 1, 1, 1, 1, X'0102')",
                [],
            )
            .unwrap();
        let err = parts(&j, 100).unwrap_err().to_string();
        assert!(
            err.contains("\"torn\"") && err.contains("not a multiple of 32"),
            "{err}"
        );
    }

    #[test]
    fn unchanged_only_after_promote_and_with_same_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.db"), Keys::Bytes).unwrap();
        let ids = vec![BlobId([1; 32]), BlobId([2; 32])];
        j.begin_scan().unwrap();
        j.record(b"a", &stamp(5), &ids, None, Extra::default())
            .unwrap();
        let meta = ObjectMeta {
            etag: "\"e1\"".into(),
            content_type: "text/plain".into(),
            ..Default::default()
        };
        j.record(b"obj", &stamp(1), &[], Some(&meta), Extra::default())
            .unwrap();
        j.end_scan().unwrap();
        assert_eq!(
            j.unchanged(b"a", &stamp(5)).unwrap(),
            None,
            "not promoted yet"
        );
        assert!(j.index_is_empty().unwrap());
        j.promote().unwrap();
        assert!(!j.index_is_empty().unwrap());
        assert_eq!(j.unchanged(b"a", &stamp(5)).unwrap().unwrap().ids, ids);
        assert_eq!(
            j.unchanged(b"obj", &stamp(1)).unwrap().unwrap().object,
            Some(Box::new(meta))
        );
        assert_eq!(j.unchanged(b"a", &stamp(6)).unwrap(), None);
        // A scan that is never promoted leaves the index as it was.
        j.begin_scan().unwrap();
        j.end_scan().unwrap();
        drop(j);
        let j = Journal::open(&dir.path().join("j.db"), Keys::Bytes).unwrap();
        assert_eq!(j.file_count().unwrap(), 2);
    }
}
