//! The durable event queue: S3 event notifications the webhook accepted and
//! no snapshot has taken yet, in SQLite (`events.db` in the state dir).
//!
//! Writes go through one thread that commits whatever arrived meanwhile in
//! one transaction (group commit), so a burst of requests costs one fsync,
//! not one each; a request is answered only after its transaction is durable.
//! An event is deleted only after the snapshot that took it is committed at
//! the hub, so a crash anywhere leaves it queued, and replaying it is
//! harmless: events are deduplicated on (source, key, version id, sequencer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::parse::{EventKind, ObjectEvent, cmp_sequencers};

/// Requests waiting for the writer before the webhook answers 503.
const WRITE_QUEUE: usize = 1024;
/// How often the writer counts the pending events anew.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("event queue {path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("event queue {path}: append events: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("event queue: cannot start its writer thread: {0}")]
    Thread(String),
    #[error("event queue: the writer has stopped")]
    Closed,
    #[error("event queue is full ({pending} events pending)")]
    Full { pending: u64 },
}

/// An accepted event, routed to the source that protects its bucket and
/// with the key relative to that source's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Shared with the route: no copy per event.
    pub source: Arc<str>,
    pub event: ObjectEvent,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    removed INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    sequencer TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    event_time TEXT NOT NULL,
    UNIQUE (source, key, version_id, sequencer)
);
-- What a snapshot takes and then clears, oldest first, without sorting the backlog.
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, id);
-- A mark per source; `mark` counts how often it was set, so a snapshot
-- clears only the mark it took, never one set while it ran.
CREATE TABLE IF NOT EXISTS gaps (
    source TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    mark INTEGER NOT NULL DEFAULT 1
);
";

fn open(path: &Path) -> Result<Connection, QueueError> {
    let err = |op| {
        let path = path.to_path_buf();
        move |source| QueueError::Sqlite { path, op, source }
    };
    let conn = Connection::open(path).map_err(err("open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err("set busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err("set WAL mode"))?;
    // FULL: a commit is on disk before the webhook says 2xx.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err("set synchronous"))?;
    conn.execute_batch(SCHEMA).map_err(err("create schema"))?;
    // Queues made before `mark` existed.
    let has_mark: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('gaps') WHERE name = 'mark'",
            [],
            |r| r.get(0),
        )
        .map_err(err("read the gaps table's columns"))?;
    if !has_mark {
        conn.execute_batch("ALTER TABLE gaps ADD COLUMN mark INTEGER NOT NULL DEFAULT 1")
            .map_err(err("add gaps.mark"))?;
    }
    Ok(conn)
}

struct Write {
    events: Vec<QueuedEvent>,
    gap: Option<(Vec<String>, String)>,
    reply: oneshot::Sender<Result<usize, QueueError>>,
}

/// The webhook's handle on the queue: appends events durably.
#[derive(Clone)]
pub struct QueueWriter {
    tx: mpsc::Sender<Write>,
}

impl QueueWriter {
    /// Opens (creating) the queue at `path` and starts its writer thread.
    ///
    /// # Errors
    /// The database cannot be opened.
    pub fn start(path: &Path, max_pending: u64) -> Result<Self, QueueError> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("event-queue".into())
            .spawn(move || write_loop(conn, &owned, rx, max_pending))
            .map_err(|e| QueueError::Thread(e.to_string()))?;
        Ok(Self { tx })
    }

    /// Appends `events`; returns how many were new once they are durable.
    ///
    /// # Errors
    /// `Full` when the queue holds too many events or its writer is behind
    /// (the caller answers 503 and the sender retries), `Sqlite` if the
    /// write failed (nothing of it is acknowledged).
    pub async fn append(&self, events: Vec<QueuedEvent>) -> Result<usize, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Write {
                events,
                gap: None,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full {
                    pending: WRITE_QUEUE as u64,
                },
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            })?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Records that events for `sources` may have been lost (a 503 was
    /// answered): their next snapshot lists the bucket in full.
    pub async fn mark_gap(&self, sources: Vec<String>, reason: &str) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Write {
                events: Vec::new(),
                gap: Some((sources, reason.to_owned())),
                reply,
            })
            .await
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?.map(drop)
    }
}

fn write_loop(mut conn: Connection, path: &Path, mut rx: mpsc::Receiver<Write>, max_pending: u64) {
    let mut pending = count_pending(&conn).unwrap_or(0);
    let mut last_count = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        // Refuse what does not fit before writing anything of it.
        let mut accepted = Vec::new();
        for write in group {
            if write.gap.is_none() && pending + write.events.len() as u64 > max_pending {
                let _ = write.reply.send(Err(QueueError::Full { pending }));
            } else {
                pending += write.events.len() as u64;
                accepted.push(write);
            }
        }
        match commit_group(&mut conn, &accepted) {
            Ok(new_counts) => {
                // Counted as they were offered; duplicates come off here.
                let offered: u64 = accepted.iter().map(|w| w.events.len() as u64).sum();
                let new: u64 = new_counts.iter().map(|n| *n as u64).sum();
                pending = pending.saturating_sub(offered - new);
                for (write, new) in accepted.into_iter().zip(new_counts) {
                    let _ = write.reply.send(Ok(new));
                }
            }
            Err(source) => {
                tracing::error!(path = %path.display(), error = %source, "event queue write failed");
                for write in accepted {
                    let _ = write.reply.send(Err(QueueError::Write {
                        path: path.to_path_buf(),
                        reason: source.to_string(),
                    }));
                }
            }
        }
        // Snapshots delete what they took: recount now and then (a count
        // scans the table, too slow to do per group under load). Between
        // counts the figure is high, never low, so the bound holds.
        if last_count.elapsed() >= RECOUNT_EVERY {
            if let Ok(n) = count_pending(&conn) {
                pending = n;
            }
            last_count = std::time::Instant::now();
        }
    }
}

fn count_pending(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

fn commit_group(conn: &mut Connection, group: &[Write]) -> rusqlite::Result<Vec<usize>> {
    let tx = conn.transaction()?;
    let mut counts = Vec::with_capacity(group.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
             (source, key, removed, version_id, sequencer, etag, size, event_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut gap = tx.prepare_cached(
            "INSERT INTO gaps (source, reason) VALUES (?1, ?2) \
                 ON CONFLICT (source) DO UPDATE SET reason = excluded.reason, mark = gaps.mark + 1",
        )?;
        for write in group {
            let mut new = 0;
            for q in &write.events {
                let e = &q.event;
                new += insert.execute(params![
                    &*q.source,
                    e.key,
                    i64::from(e.kind == EventKind::Removed),
                    e.version_id,
                    e.sequencer,
                    e.etag,
                    i64::try_from(e.size).unwrap_or(i64::MAX),
                    e.event_time,
                ])?;
            }
            if let Some((sources, reason)) = &write.gap {
                for source in sources {
                    gap.execute(params![source, reason])?;
                }
            }
            counts.push(new);
        }
    }
    tx.commit()?;
    Ok(counts)
}

/// What a snapshot takes from the queue for one source: the last event per
/// key (by sequencer) among those up to `last_id`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub last_id: i64,
    pub keys: BTreeMap<String, EventKind>,
    /// Events may have been lost: list the bucket in full instead.
    pub gap: Option<String>,
    /// Which setting of the gap mark was taken (see the `gaps` table).
    pub gap_mark: i64,
}

/// The backup side of the queue (its own connection).
pub struct QueueReader {
    conn: Connection,
    path: PathBuf,
}

impl QueueReader {
    /// # Errors
    /// The database cannot be opened.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        Ok(Self {
            conn: open(path)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError + '_ {
        move |source| QueueError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Up to `limit` pending events of `source`, folded per key in sequencer order.
    ///
    /// # Errors
    /// The read fails.
    pub fn changes(&self, source: &str, limit: usize) -> Result<Changes, QueueError> {
        let gap: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT reason, mark FROM gaps WHERE source = ?1",
                [source],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(self.err("read gaps"))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, key, removed, sequencer FROM events WHERE source = ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(self.err("read events"))?;
        let rows = stmt
            .query_map(
                params![source, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? != 0,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .map_err(self.err("read events"))?;
        let (gap, gap_mark) = gap.map_or((None, 0), |(reason, mark)| (Some(reason), mark));
        let mut changes = Changes {
            gap,
            gap_mark,
            ..Changes::default()
        };
        // Per key, the event with the greatest sequencer wins; among equal
        // (or absent) sequencers, the one that arrived last.
        let mut latest: BTreeMap<String, (String, EventKind)> = BTreeMap::new();
        for row in rows {
            let (id, key, removed, sequencer) = row.map_err(self.err("read events"))?;
            changes.last_id = changes.last_id.max(id);
            let kind = if removed {
                EventKind::Removed
            } else {
                EventKind::Created
            };
            match latest.get(&key) {
                Some((seen, _)) if cmp_sequencers(&sequencer, seen).is_lt() => {}
                _ => {
                    latest.insert(key, (sequencer, kind));
                }
            }
        }
        changes.keys = latest.into_iter().map(|(k, (_, kind))| (k, kind)).collect();
        Ok(changes)
    }

    /// The snapshot that took `changes` is committed: forget them.
    ///
    /// # Errors
    /// The delete fails (the events stay and are taken again: harmless).
    pub fn acknowledge(&self, source: &str, changes: &Changes) -> Result<(), QueueError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE source = ?1 AND id <= ?2",
                params![source, changes.last_id],
            )
            .map_err(self.err("delete taken events"))?;
        if changes.gap.is_some() {
            // A mark set again while the snapshot ran stays for the next one.
            self.conn
                .execute(
                    "DELETE FROM gaps WHERE source = ?1 AND mark = ?2",
                    params![source, changes.gap_mark],
                )
                .map_err(self.err("clear gap"))?;
        }
        Ok(())
    }

    /// Pending events of all sources.
    ///
    /// # Errors
    /// The read fails.
    pub fn pending(&self) -> Result<u64, QueueError> {
        count_pending(&self.conn).map_err(self.err("count events"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(key: &str, kind: EventKind, sequencer: &str) -> QueuedEvent {
        QueuedEvent {
            source: "photos".into(),
            event: ObjectEvent {
                bucket: "b".into(),
                key: key.into(),
                kind,
                event_name: "ObjectCreated:Put".into(),
                version_id: String::new(),
                sequencer: sequencer.into(),
                etag: String::new(),
                size: 0,
                event_time: "2026-11-23T00:00:00.000Z".into(),
            },
        }
    }

    #[tokio::test]
    async fn deduplicates_folds_by_sequencer_and_forgets_only_what_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let writer = QueueWriter::start(&path, 100).unwrap();
        let first = vec![
            event("a", EventKind::Created, "0A"),
            // Arrives later but happened earlier: must not win.
            event("a", EventKind::Removed, "09"),
            event("b", EventKind::Created, "01"),
        ];
        assert_eq!(writer.append(first.clone()).await.unwrap(), 3);
        assert_eq!(
            writer.append(first).await.unwrap(),
            0,
            "replayed events are dropped"
        );

        let reader = QueueReader::open(&path).unwrap();
        let changes = reader.changes("photos", 1000).unwrap();
        assert_eq!(
            changes.keys,
            BTreeMap::from([
                ("a".into(), EventKind::Created),
                ("b".into(), EventKind::Created)
            ])
        );
        assert!(changes.gap.is_none());
        // An event arriving after the snapshot took its changes stays queued.
        writer
            .append(vec![event("b", EventKind::Removed, "02")])
            .await
            .unwrap();
        reader.acknowledge("photos", &changes).unwrap();
        let next = reader.changes("photos", 1000).unwrap();
        assert_eq!(
            next.keys,
            BTreeMap::from([("b".into(), EventKind::Removed)])
        );
        assert!(reader.changes("other", 1000).unwrap().keys.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_gap_is_remembered_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let writer = QueueWriter::start(&path, 2).unwrap();
        let two = vec![
            event("a", EventKind::Created, "1"),
            event("b", EventKind::Created, "1"),
        ];
        assert_eq!(writer.append(two).await.unwrap(), 2);
        let err = writer
            .append(vec![event("c", EventKind::Created, "1")])
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Full { .. }), "{err}");
        writer
            .mark_gap(vec!["photos".into()], "503 answered")
            .await
            .unwrap();
        drop(writer);

        // Everything acknowledged survives a reopen (the writer thread is gone).
        let reader = QueueReader::open(&path).unwrap();
        assert_eq!(reader.pending().unwrap(), 2);
        let changes = reader.changes("photos", 1000).unwrap();
        assert_eq!(changes.gap.as_deref(), Some("503 answered"));
        reader.acknowledge("photos", &changes).unwrap();
        assert_eq!(reader.pending().unwrap(), 0);
        assert!(reader.changes("photos", 1000).unwrap().gap.is_none());
    }

    /// A 503 answered while a snapshot runs marks a gap the snapshot did
    /// not cover: acknowledging the snapshot must not clear it.
    #[tokio::test]
    async fn a_gap_marked_during_a_snapshot_survives_its_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let writer = QueueWriter::start(&path, 10).unwrap();
        writer
            .mark_gap(vec!["photos".into()], "first 503")
            .await
            .unwrap();
        let reader = QueueReader::open(&path).unwrap();
        let taken = reader.changes("photos", 1000).unwrap();
        assert_eq!(taken.gap.as_deref(), Some("first 503"));
        writer
            .mark_gap(vec!["photos".into()], "second 503")
            .await
            .unwrap();
        reader.acknowledge("photos", &taken).unwrap();
        let next = reader.changes("photos", 1000).unwrap();
        assert_eq!(
            next.gap.as_deref(),
            Some("second 503"),
            "the later gap was lost"
        );
        reader.acknowledge("photos", &next).unwrap();
        assert!(reader.changes("photos", 1000).unwrap().gap.is_none());
    }
}
