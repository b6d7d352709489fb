//! Replica cursors, holds, troubles and pauses in PostgreSQL.

use postgres::Row;

use super::{Tx, pg};
use crate::catalog::error::to_i64;
use crate::catalog::namespace::existing_bucket;
use crate::catalog::replication::pause_of;
use crate::catalog::replication::{check_ack, dead_letters_row};
use crate::catalog::{
    BucketId, CatalogError, DeadCount, DeadLetter, DeadLetters, ReplicaCursor, ReplicaFailure,
    ReplicaHold, ReplicaTrouble, ReplicationPause, ReplicationRead, ReplicationWrite, SiteId,
    from_i64,
};

fn hold_of(row: &Row) -> Result<ReplicaHold, CatalogError> {
    let raw: (i64, i64, i64, i64, i64, bool) = (|| {
        Ok::<_, postgres::Error>((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
        ))
    })()
    .map_err(pg("read replica hold"))?;
    Ok(ReplicaHold {
        site: SiteId(raw.0),
        seq: from_i64("replica_holds.seq", raw.1)?,
        deletes: from_i64("replica_holds.deletes", raw.2)?,
        entries: from_i64("replica_holds.entries", raw.3)?,
        held_unix_ms: raw.4,
        confirmed: raw.5,
    })
}

impl Tx<'_, '_> {
    /// The bucket's replicas and journal head, for [`check_ack`].
    fn replicas_and_head(&mut self, bucket: BucketId) -> Result<(Vec<SiteId>, u64), CatalogError> {
        let found = existing_bucket(self, bucket)?;
        let head: i64 = self
            .tx
            .query_one(
                "SELECT coalesce(max(seq), 0)::BIGINT FROM commits WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .and_then(|r| r.try_get(0))
            .map_err(pg("read journal head"))?;
        Ok((found.replicas, from_i64("commits.seq", head)?))
    }

    /// `op`: runs `update` (an UPDATE of one replica's row, `$1` the
    /// bucket and `$2` the site, RETURNING one count) and gives the count
    /// (`column` names it); `NotFound` (`what`) when no row matched.
    fn mark_replica_row(
        &mut self,
        op: &'static str,
        update: &str,
        (bucket, site): (BucketId, SiteId),
        (what, column): (&'static str, &'static str),
    ) -> Result<u64, CatalogError> {
        let value: i64 = self
            .tx
            .query_opt(update, &[&bucket.0, &site.0])
            .map_err(pg(op))?
            .ok_or_else(|| CatalogError::NotFound {
                what,
                key: format!("bucket {bucket}, site {site}"),
            })?
            .try_get(0)
            .map_err(pg(op))?;
        from_i64(column, value)
    }
}

fn cursor_of(row: &Row) -> Result<ReplicaCursor, CatalogError> {
    let (site, seq, applied): (i64, i64, i64) =
        (|| Ok::<_, postgres::Error>((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))()
            .map_err(pg("read replica cursor"))?;
    Ok(ReplicaCursor {
        site: SiteId(site),
        seq: from_i64("replica_cursors.seq", seq)?,
        applied_unix_ms: applied,
    })
}

fn trouble_of(row: &Row) -> Result<ReplicaTrouble, CatalogError> {
    type Raw = (i64, i64, String, i64, i64, i64, bool);
    let raw: Raw = (|| {
        Ok::<_, postgres::Error>((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
        ))
    })()
    .map_err(pg("read replica trouble"))?;
    let (site, error_seq, error, error_ms, dead_seq, dead_total, replay) = raw;
    let last_error = match error_seq {
        0 => None,
        seq => Some(ReplicaFailure {
            seq: from_i64("replica_troubles.error_seq", seq)?,
            message: error,
            at_unix_ms: error_ms,
        }),
    };
    let dead = match dead_seq {
        0 => None,
        seq => Some(DeadCount {
            seq: from_i64("replica_troubles.dead_seq", seq)?,
            total: from_i64("replica_troubles.dead_total", dead_total)?,
        }),
    };
    Ok(ReplicaTrouble {
        site: SiteId(site),
        last_error,
        dead,
        replay_requested: replay,
    })
}

impl ReplicationRead for Tx<'_, '_> {
    fn replica_troubles(&mut self, bucket: BucketId) -> Result<Vec<ReplicaTrouble>, CatalogError> {
        let rows = self
            .tx
            .query(
                "SELECT site_id, error_seq, error, error_ms, dead_seq, dead_total, replay \
                 FROM replica_troubles WHERE bucket_id = $1 ORDER BY site_id",
                &[&bucket.0],
            )
            .map_err(pg("read replica troubles"))?;
        rows.iter().map(trouble_of).collect()
    }

    fn dead_letters(
        &mut self,
        bucket: BucketId,
        site: SiteId,
    ) -> Result<Vec<DeadLetter>, CatalogError> {
        self.tx
            .query(
                "SELECT path, reason FROM replica_dead_letters \
                 WHERE bucket_id = $1 AND site_id = $2 ORDER BY path COLLATE \"C\"",
                &[&bucket.0, &site.0],
            )
            .map_err(pg("read dead letters"))?
            .iter()
            .map(|r| {
                Ok(DeadLetter {
                    path: r.try_get(0)?,
                    reason: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(pg("read dead letters"))
    }

    fn replication_pause(&mut self, bucket: BucketId) -> Result<ReplicationPause, CatalogError> {
        let row = self
            .tx
            .query_opt(
                "SELECT paused_ms, resumed_ms FROM replication_pauses WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .map_err(pg("read replication pause"))?
            .map(|r| Ok::<_, postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
            .map_err(pg("read replication pause"))?;
        Ok(pause_of(row))
    }

    fn replica_holds(&mut self, bucket: BucketId) -> Result<Vec<ReplicaHold>, CatalogError> {
        self.tx
            .query(
                "SELECT site_id, seq, deletes, entries, held_ms, confirmed FROM replica_holds \
                 WHERE bucket_id = $1 ORDER BY site_id",
                &[&bucket.0],
            )
            .map_err(pg("read replica holds"))?
            .iter()
            .map(hold_of)
            .collect()
    }

    fn replica_cursors(&mut self, bucket: BucketId) -> Result<Vec<ReplicaCursor>, CatalogError> {
        self.tx
            .query(
                "SELECT site_id, seq, applied_ms FROM replica_cursors \
                 WHERE bucket_id = $1 ORDER BY site_id",
                &[&bucket.0],
            )
            .map_err(pg("read replica cursors"))?
            .iter()
            .map(cursor_of)
            .collect()
    }
}

impl ReplicationWrite for Tx<'_, '_> {
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
        self.tx
            .execute(
                "DELETE FROM replica_holds WHERE bucket_id = $1 AND site_id = $2 AND seq <= $3",
                &[&bucket.0, &site.0, &seq],
            )
            .map_err(pg("end replica hold"))?;
        // GREATEST: a cursor never moves back.
        let row = self
            .tx
            .query_one(
                "INSERT INTO replica_cursors (bucket_id, site_id, seq, applied_ms) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   applied_ms = CASE WHEN excluded.seq > replica_cursors.seq \
                     THEN excluded.applied_ms ELSE replica_cursors.applied_ms END, \
                   seq = GREATEST(replica_cursors.seq, excluded.seq) \
                 RETURNING site_id, seq, applied_ms",
                &[&bucket.0, &site.0, &seq, &applied_unix_ms],
            )
            .map_err(pg("acknowledge replica"))?;
        cursor_of(&row)
    }

    fn hold_replica(&mut self, bucket: BucketId, hold: &ReplicaHold) -> Result<(), CatalogError> {
        let (replicas, head) = self.replicas_and_head(bucket)?;
        check_ack(&replicas, head, hold.site, hold.seq)?;
        self.tx
            .execute(
                "INSERT INTO replica_holds \
                 (bucket_id, site_id, seq, deletes, entries, held_ms, confirmed) \
                 VALUES ($1, $2, $3, $4, $5, $6, FALSE) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   confirmed = (replica_holds.seq = excluded.seq AND replica_holds.confirmed), \
                   seq = excluded.seq, deletes = excluded.deletes, \
                   entries = excluded.entries, held_ms = excluded.held_ms",
                &[
                    &bucket.0,
                    &hold.site.0,
                    &to_i64("hold.seq", hold.seq)?,
                    &to_i64("hold.deletes", hold.deletes)?,
                    &to_i64("hold.entries", hold.entries)?,
                    &hold.held_unix_ms,
                ],
            )
            .map_err(pg("hold replica"))?;
        Ok(())
    }

    fn confirm_hold(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError> {
        self.mark_replica_row(
            "confirm replica hold",
            "UPDATE replica_holds SET confirmed = TRUE \
             WHERE bucket_id = $1 AND site_id = $2 RETURNING seq",
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
        self.tx
            .execute(
                "INSERT INTO replica_troubles (bucket_id, site_id, error_seq, error, error_ms) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   error_seq = excluded.error_seq, error = excluded.error, \
                   error_ms = excluded.error_ms",
                &[
                    &bucket.0,
                    &site.0,
                    &to_i64("failure.seq", failure.seq)?,
                    &failure.message,
                    &failure.at_unix_ms,
                ],
            )
            .map_err(pg("record replica error"))?;
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
        self.tx
            .execute(
                "INSERT INTO replica_troubles (bucket_id, site_id, dead_seq, dead_total) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (bucket_id, site_id) DO UPDATE SET \
                   dead_seq = excluded.dead_seq, dead_total = excluded.dead_total, \
                   replay = CASE WHEN $5 THEN FALSE ELSE replica_troubles.replay END",
                &[&bucket.0, &site.0, &seq, &total, &replayed],
            )
            .map_err(pg("record dead letters"))?;
        self.tx
            .execute(
                "DELETE FROM replica_dead_letters WHERE bucket_id = $1 AND site_id = $2",
                &[&bucket.0, &site.0],
            )
            .map_err(pg("replace dead letters"))?;
        for letter in dead.map_or(&[][..], |d| &d.letters) {
            self.tx
                .execute(
                    "INSERT INTO replica_dead_letters (bucket_id, site_id, path, reason) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (bucket_id, site_id, path) DO UPDATE SET reason = excluded.reason",
                    &[&bucket.0, &site.0, &letter.path, &letter.reason],
                )
                .map_err(pg("record dead letters"))?;
        }
        Ok(())
    }

    fn request_replay(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError> {
        self.mark_replica_row(
            "request replay",
            "UPDATE replica_troubles SET replay = TRUE \
             WHERE bucket_id = $1 AND site_id = $2 AND dead_seq > 0 RETURNING dead_total",
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
                 VALUES ($1, $2, 0) ON CONFLICT (bucket_id) DO UPDATE SET paused_ms = \
                   CASE WHEN replication_pauses.paused_ms > 0 \
                   THEN replication_pauses.paused_ms ELSE $2 END"
            }
            false => {
                "INSERT INTO replication_pauses (bucket_id, paused_ms, resumed_ms) \
                 VALUES ($1, 0, 0) ON CONFLICT (bucket_id) DO UPDATE SET \
                   resumed_ms = CASE WHEN replication_pauses.paused_ms > 0 \
                     THEN $2 ELSE replication_pauses.resumed_ms END, \
                   paused_ms = 0"
            }
        };
        self.tx
            .execute(sql_text, &[&bucket.0, &at_unix_ms])
            .map_err(pg("pause replication"))?;
        Ok(())
    }
}
