//! Each bucket's referenced blob ids in SQLite.

use std::collections::HashSet;

use rusqlite::params;

use super::namespace::bucket_tenant;
use super::{Tx, sql};
use crate::catalog::{BucketId, CatalogError, ReferenceRead, ReferenceWrite, Referenced};
use ferry_proto::BlobId;

impl ReferenceRead for Tx<'_> {
    fn referenced(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<Referenced, CatalogError> {
        let unindexed = self
            .conn
            .prepare_cached("SELECT 1 FROM reference_backfill WHERE bucket_id = ?1")
            .and_then(|mut s| s.exists([bucket.0]))
            .map_err(sql("look up reference backfill"))?;
        if unindexed {
            return Ok(Referenced::Unindexed);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM bucket_references WHERE bucket_id = ?1 AND id = ?2")
            .map_err(sql("look up references"))?;
        let mut found = HashSet::new();
        for id in ids {
            if !found.contains(id)
                && stmt
                    .exists(params![bucket.0, &id.0[..]])
                    .map_err(sql("look up references"))?
            {
                found.insert(*id);
            }
        }
        Ok(Referenced::Only(found))
    }

    fn unindexed_buckets(&mut self) -> Result<Vec<BucketId>, CatalogError> {
        self.all(
            "list reference backfill",
            "SELECT bucket_id FROM reference_backfill ORDER BY bucket_id",
            [],
            |r| Ok(BucketId(r.get(0)?)),
        )
    }
}

impl ReferenceWrite for Tx<'_> {
    fn add_references(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<(), CatalogError> {
        bucket_tenant(self.conn, bucket)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO bucket_references (bucket_id, id) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )
            .map_err(sql("record references"))?;
        for id in ids {
            stmt.execute(params![bucket.0, &id.0[..]])
                .map_err(sql("record references"))?;
        }
        Ok(())
    }

    fn add_reference_part(
        &mut self,
        bucket: BucketId,
        part: &[u8; 32],
        ids: &[BlobId],
    ) -> Result<bool, CatalogError> {
        bucket_tenant(self.conn, bucket)?;
        let new = self
            .conn
            .prepare_cached(
                "INSERT INTO bucket_reference_parts (bucket_id, hash) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![bucket.0, &part[..]]))
            .map_err(sql("record reference part"))?
            > 0;
        if new {
            self.add_references(bucket, ids)?;
        }
        Ok(new)
    }

    fn mark_references_indexed(&mut self, bucket: BucketId) -> Result<(), CatalogError> {
        self.conn
            .prepare_cached("DELETE FROM reference_backfill WHERE bucket_id = ?1")
            .and_then(|mut s| s.execute([bucket.0]))
            .map_err(sql("end reference backfill"))?;
        Ok(())
    }
}
