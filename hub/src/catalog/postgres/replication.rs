//! Replica cursors in PostgreSQL.

use postgres::Row;

use super::{Tx, pg};
use crate::catalog::replication::check_ack;
use crate::catalog::{
    BucketId, CatalogError, NamespaceRead, ReplicaCursor, ReplicationRead, ReplicationWrite,
    SiteId, from_i64,
};

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
        let found = self.bucket(bucket)?.ok_or_else(|| CatalogError::NotFound {
            what: "bucket",
            key: bucket.to_string(),
        })?;
        let head: i64 = self
            .tx
            .query_one(
                "SELECT coalesce(max(seq), 0)::BIGINT FROM commits WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .and_then(|r| r.try_get(0))
            .map_err(pg("read journal head"))?;
        check_ack(&found.replicas, from_i64("commits.seq", head)?, site, seq)?;
        let seq = i64::try_from(seq).map_err(|_| CatalogError::Invalid {
            field: "ack.seq",
            reason: "out of range".into(),
        })?;
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
}
