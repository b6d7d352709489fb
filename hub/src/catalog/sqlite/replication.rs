//! Replica cursors in SQLite.

use rusqlite::params;

use super::{Tx, sql};
use crate::catalog::replication::check_ack;
use crate::catalog::{
    BucketId, CatalogError, NamespaceRead, ReplicaCursor, ReplicationRead, ReplicationWrite,
    SiteId, from_i64,
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

impl ReplicationRead for Tx<'_> {
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
        let found = self.bucket(bucket)?.ok_or_else(|| CatalogError::NotFound {
            what: "bucket",
            key: bucket.to_string(),
        })?;
        let head: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM commits WHERE bucket_id = ?1",
                [bucket.0],
                |r| r.get(0),
            )
            .map_err(sql("read journal head"))?;
        check_ack(&found.replicas, from_i64("commits.seq", head)?, site, seq)?;
        let seq = i64::try_from(seq).map_err(|_| CatalogError::Invalid {
            field: "ack.seq",
            reason: "out of range".into(),
        })?;
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
}
