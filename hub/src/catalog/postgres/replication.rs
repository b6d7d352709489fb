//! Replica cursors in PostgreSQL.

use postgres::Row;

use super::{Tx, pg};
use crate::catalog::error::to_i64;
use crate::catalog::namespace::existing_bucket;
use crate::catalog::replication::check_ack;
use crate::catalog::{
    BucketId, CatalogError, ReplicaCursor, ReplicaHold, ReplicationRead, ReplicationWrite, SiteId,
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

impl ReplicationRead for Tx<'_, '_> {
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
        let seq: i64 = self
            .tx
            .query_opt(
                "UPDATE replica_holds SET confirmed = TRUE \
                 WHERE bucket_id = $1 AND site_id = $2 RETURNING seq",
                &[&bucket.0, &site.0],
            )
            .map_err(pg("confirm replica hold"))?
            .ok_or_else(|| CatalogError::NotFound {
                what: "replica hold",
                key: format!("bucket {bucket}, site {site}"),
            })?
            .try_get(0)
            .map_err(pg("confirm replica hold"))?;
        from_i64("replica_holds.seq", seq)
    }
}
