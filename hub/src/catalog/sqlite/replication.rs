//! Replica cursors, holds, troubles and pauses in SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, sql};
use crate::catalog::error::to_i64;
use crate::catalog::namespace::existing_bucket;
use crate::catalog::replication::pause_of;
use crate::catalog::replication::{check_ack, dead_letters_row};
use crate::catalog::{
    BucketId, CatalogError, DeadCount, DeadLetter, DeadLetters, ReplicaCursor, ReplicaFailure,
    ReplicaHold, ReplicaTrouble, ReplicationPause, ReplicationRead, ReplicationWrite, SiteId,
    from_i64,
};

fn cursor_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn cursor_of((site, seq, applied): (i64, i64, i64)) -> Result<ReplicaCursor, CatalogError> {
    Ok(ReplicaCursor {
        site: SiteId(site),
        seq: from_i64("replica_cursors.seq", seq)?,
        applied_unix_ms: applied,
    })
}

impl Tx<'_> {
    /// The bucket's replicas and journal head, for [`check_ack`].
    fn replicas_and_head(&mut self, bucket: BucketId) -> Result<(Vec<SiteId>, u64), CatalogError> {
        let found = existing_bucket(self, bucket)?;
        let head: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM commits WHERE bucket_id = ?1",
                [bucket.0],
                |r| r.get(0),
            )
            .map_err(sql("read journal head"))?;
        Ok((found.replicas, from_i64("commits.seq", head)?))
    }

    /// `op`: runs `update` (an UPDATE of one replica's row, `?1` the
    /// bucket and `?2` the site, RETURNING one count) and gives the count
    /// (`column` names it); `NotFound` (`what`) when no row matched.
    fn mark_replica_row(
        &mut self,
        op: &'static str,
        update: &str,
        (bucket, site): (BucketId, SiteId),
        (what, column): (&'static str, &'static str),
    ) -> Result<u64, CatalogError> {
        let value: Option<i64> = self
            .conn
            .query_row(update, [bucket.0, site.0], |r| r.get(0))
            .optional()
            .map_err(sql(op))?;
        let value = value.ok_or_else(|| CatalogError::NotFound {
            what,
            key: format!("bucket {bucket}, site {site}"),
        })?;
        from_i64(column, value)
    }
}

impl ReplicationRead for Tx<'_> {
    fn dead_letters(
        &mut self,
        bucket: BucketId,
        site: SiteId,
    ) -> Result<Vec<DeadLetter>, CatalogError> {
        self.conn
            .prepare_cached(
                "SELECT path, reason FROM replica_dead_letters \
                 WHERE bucket_id = ?1 AND site_id = ?2 ORDER BY path",
            )
            .and_then(|mut s| {
                s.query_map([bucket.0, site.0], |r| {
                    Ok(DeadLetter {
                        path: r.get(0)?,
                        reason: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("read dead letters"))
    }

    fn replica_troubles(&mut self, bucket: BucketId) -> Result<Vec<ReplicaTrouble>, CatalogError> {
        type Row = (i64, i64, String, i64, i64, i64, i64);
        let rows: Vec<Row> = self
            .conn
            .prepare_cached(
                "SELECT site_id, error_seq, error, error_ms, dead_seq, dead_total, replay \
                 FROM replica_troubles WHERE bucket_id = ?1 ORDER BY site_id",
            )
            .and_then(|mut s| {
                s.query_map([bucket.0], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("read replica troubles"))?;
        let mut out = Vec::with_capacity(rows.len());
        for (site, error_seq, error, error_ms, dead_seq, dead_total, replay) in rows {
            let dead = match dead_seq {
                0 => None,
                seq => Some(DeadCount {
                    seq: from_i64("replica_troubles.dead_seq", seq)?,
                    total: from_i64("replica_troubles.dead_total", dead_total)?,
                }),
            };
            out.push(ReplicaTrouble {
                site: SiteId(site),
                last_error: (error_seq != 0)
                    .then(|| {
                        Ok::<_, CatalogError>(ReplicaFailure {
                            seq: from_i64("replica_troubles.error_seq", error_seq)?,
                            message: error,
                            at_unix_ms: error_ms,
                        })
                    })
                    .transpose()?,
                dead,
                replay_requested: replay != 0,
            });
        }
        Ok(out)
    }

    fn replication_pause(&mut self, bucket: BucketId) -> Result<ReplicationPause, CatalogError> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT paused_ms, resumed_ms FROM replication_pauses WHERE bucket_id = ?1",
                [bucket.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read replication pause"))?;
        Ok(pause_of(row))
    }

    fn replica_holds(&mut self, bucket: BucketId) -> Result<Vec<ReplicaHold>, CatalogError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT site_id, seq, deletes, entries, held_ms, confirmed FROM replica_holds \
                 WHERE bucket_id = ?1 ORDER BY site_id",
            )
            .and_then(|mut s| {
                s.query_map([bucket.0], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("read replica holds"))?;
        rows.into_iter()
            .map(|(site, seq, deletes, entries, held, confirmed)| {
                Ok(ReplicaHold {
                    site: SiteId(site),
                    seq: from_i64("replica_holds.seq", seq)?,
                    deletes: from_i64("replica_holds.deletes", deletes)?,
                    entries: from_i64("replica_holds.entries", entries)?,
                    held_unix_ms: held,
                    confirmed: confirmed != 0,
                })
            })
            .collect()
    }

    fn replica_cursors(&mut self, bucket: BucketId) -> Result<Vec<ReplicaCursor>, CatalogError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT site_id, seq, applied_ms FROM replica_cursors \
                 WHERE bucket_id = ?1 ORDER BY site_id",
            )
            .and_then(|mut s| {
                s.query_map([bucket.0], cursor_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("read replica cursors"))?;
        rows.into_iter().map(cursor_of).collect()
    }
}

impl ReplicationWrite for Tx<'_> {
    fn ack_replica(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        seq: u64,
        applied_unix_ms: i64,
    ) -> Result<ReplicaCursor, CatalogError> {
        let (replicas, head) = self.replicas_and_head(bucket)?;
        check_ack(&replicas, head, site, seq)?;
        let seq = to_i64("ack.seq", seq)?;
        // A hold of a commit now applied is over.
        self.conn
            .execute(
                "DELETE FROM replica_holds WHERE bucket_id = ?1 AND site_id = ?2 AND seq <= ?3",
                params![bucket.0, site.0, seq],
            )
            .map_err(sql("end replica hold"))?;
        let row = self.conn.query_row(
            "INSERT INTO replica_cursors (bucket_id, site_id, seq, applied_ms) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   seq = excluded.seq, applied_ms = excluded.applied_ms \
                 WHERE excluded.seq > replica_cursors.seq \
                 RETURNING site_id, seq, applied_ms",
            params![bucket.0, site.0, seq, applied_unix_ms],
            cursor_row,
        );
        match row {
            Ok(row) => cursor_of(row),
            // Not moved (an older seq): the stored cursor stands.
            Err(rusqlite::Error::QueryReturnedNoRows) => self
                .replica_cursors(bucket)?
                .into_iter()
                .find(|c| c.site == site)
                .ok_or_else(|| CatalogError::Corrupt {
                    what: "replica cursor",
                    detail: "neither written nor found".into(),
                }),
            Err(e) => Err(sql("acknowledge replica")(e)),
        }
    }

    fn hold_replica(&mut self, bucket: BucketId, hold: &ReplicaHold) -> Result<(), CatalogError> {
        let (replicas, head) = self.replicas_and_head(bucket)?;
        check_ack(&replicas, head, hold.site, hold.seq)?;
        self.conn
            .execute(
                "INSERT INTO replica_holds \
                 (bucket_id, site_id, seq, deletes, entries, held_ms, confirmed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   confirmed = (replica_holds.seq = excluded.seq AND replica_holds.confirmed), \
                   seq = excluded.seq, deletes = excluded.deletes, \
                   entries = excluded.entries, held_ms = excluded.held_ms",
                params![
                    bucket.0,
                    hold.site.0,
                    to_i64("hold.seq", hold.seq)?,
                    to_i64("hold.deletes", hold.deletes)?,
                    to_i64("hold.entries", hold.entries)?,
                    hold.held_unix_ms
                ],
            )
            .map_err(sql("hold replica"))?;
        Ok(())
    }

    fn confirm_hold(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError> {
        self.mark_replica_row(
            "confirm replica hold",
            "UPDATE replica_holds SET confirmed = 1 \
             WHERE bucket_id = ?1 AND site_id = ?2 RETURNING seq",
            (bucket, site),
            ("replica hold", "replica_holds.seq"),
        )
    }

    fn record_replica_error(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        failure: &ReplicaFailure,
    ) -> Result<(), CatalogError> {
        let (replicas, head) = self.replicas_and_head(bucket)?;
        check_ack(&replicas, head, site, failure.seq)?;
        self.conn
            .execute(
                "INSERT INTO replica_troubles (bucket_id, site_id, error_seq, error, error_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   error_seq = excluded.error_seq, error = excluded.error, \
                   error_ms = excluded.error_ms",
                params![
                    bucket.0,
                    site.0,
                    to_i64("failure.seq", failure.seq)?,
                    failure.message,
                    failure.at_unix_ms
                ],
            )
            .map_err(sql("record replica error"))?;
        Ok(())
    }

    fn set_dead_letters(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        dead: Option<&DeadLetters>,
        replayed: bool,
    ) -> Result<(), CatalogError> {
        let (replicas, head) = self.replicas_and_head(bucket)?;
        let (seq, total) = dead_letters_row(&replicas, head, site, dead)?;
        self.conn
            .execute(
                "INSERT INTO replica_troubles (bucket_id, site_id, dead_seq, dead_total) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   dead_seq = excluded.dead_seq, dead_total = excluded.dead_total, \
                   replay = CASE WHEN ?5 THEN 0 ELSE replica_troubles.replay END",
                params![bucket.0, site.0, seq, total, replayed],
            )
            .map_err(sql("record dead letters"))?;
        self.conn
            .execute(
                "DELETE FROM replica_dead_letters WHERE bucket_id = ?1 AND site_id = ?2",
                [bucket.0, site.0],
            )
            .map_err(sql("replace dead letters"))?;
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO replica_dead_letters (bucket_id, site_id, path, reason) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql("record dead letters"))?;
        for letter in dead.map_or(&[][..], |d| &d.letters) {
            insert
                .execute(params![bucket.0, site.0, letter.path, letter.reason])
                .map_err(sql("record dead letters"))?;
        }
        Ok(())
    }

    fn request_replay(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError> {
        self.mark_replica_row(
            "request replay",
            "UPDATE replica_troubles SET replay = 1 \
             WHERE bucket_id = ?1 AND site_id = ?2 AND dead_seq > 0 RETURNING dead_total",
            (bucket, site),
            ("dead letters", "replica_troubles.dead_total"),
        )
    }

    fn set_replication_paused(
        &mut self,
        bucket: BucketId,
        paused: bool,
        at_unix_ms: i64,
    ) -> Result<(), CatalogError> {
        existing_bucket(self, bucket)?;
        // In an UPDATE every column read is the row's old value.
        let sql_text = match paused {
            true => {
                "INSERT INTO replication_pauses (bucket_id, paused_ms, resumed_ms) \
                 VALUES (?1, ?2, 0) ON CONFLICT (bucket_id) DO UPDATE SET \
                   paused_ms = CASE WHEN paused_ms > 0 THEN paused_ms ELSE ?2 END"
            }
            false => {
                "INSERT INTO replication_pauses (bucket_id, paused_ms, resumed_ms) \
                 VALUES (?1, 0, 0) ON CONFLICT (bucket_id) DO UPDATE SET \
                   resumed_ms = CASE WHEN paused_ms > 0 THEN ?2 ELSE resumed_ms END, \
                   paused_ms = 0"
            }
        };
        self.conn
            .execute(sql_text, params![bucket.0, at_unix_ms])
            .map_err(sql("pause replication"))?;
        Ok(())
    }
}
