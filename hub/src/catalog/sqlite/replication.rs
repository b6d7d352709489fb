//! Replica cursors in SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, sql};
use crate::catalog::error::to_i64;
use crate::catalog::namespace::existing_bucket;
use crate::catalog::replication::check_ack;
use crate::catalog::{
    BucketId, CatalogError, ReplicaCursor, ReplicaHold, ReplicationRead, ReplicationWrite, SiteId,
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
}

impl ReplicationRead for Tx<'_> {
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
        let seq: Option<i64> = self
            .conn
            .query_row(
                "UPDATE replica_holds SET confirmed = 1 \
                 WHERE bucket_id = ?1 AND site_id = ?2 RETURNING seq",
                [bucket.0, site.0],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("confirm replica hold"))?;
        let seq = seq.ok_or_else(|| CatalogError::NotFound {
            what: "replica hold",
            key: format!("bucket {bucket}, site {site}"),
        })?;
        from_i64("replica_holds.seq", seq)
    }
}
