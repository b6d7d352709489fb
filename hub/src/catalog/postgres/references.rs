//! Each bucket's referenced blob ids in PostgreSQL.

use std::collections::HashSet;

use super::blobs::BATCH;
use super::{Tx, pg};
use crate::catalog::error::stored_id;
use crate::catalog::{BucketId, CatalogError, ReferenceRead, ReferenceWrite, Referenced};
use ferry_proto::BlobId;

impl ReferenceRead for Tx<'_, '_> {
    fn referenced(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<Referenced, CatalogError> {
        if self.exists(
            "look up reference backfill",
            "SELECT 1 FROM reference_backfill WHERE bucket_id = $1",
            &[&bucket.0],
        )? {
            return Ok(Referenced::Unindexed);
        }
        let mut found = HashSet::new();
        for batch in ids.chunks(BATCH) {
            let asked: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
            let rows = self
                .tx
                .query(
                    "SELECT id FROM bucket_references WHERE bucket_id = $1 AND id = ANY($2)",
                    &[&bucket.0, &asked],
                )
                .map_err(pg("look up references"))?;
            for row in rows {
                let raw: &[u8] = row.try_get(0).map_err(pg("read reference"))?;
                found.insert(stored_id("bucket_references.id", raw)?);
            }
        }
        Ok(Referenced::Only(found))
    }

    fn unindexed_buckets(&mut self) -> Result<Vec<BucketId>, CatalogError> {
        self.all(
            "list reference backfill",
            "SELECT bucket_id FROM reference_backfill ORDER BY bucket_id",
            &[],
            |r| Ok(BucketId(r.try_get(0)?)),
        )
    }
}

impl ReferenceWrite for Tx<'_, '_> {
    fn add_references(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<(), CatalogError> {
        self.bucket_tenant(bucket, false)?;
        for batch in ids.chunks(BATCH) {
            let adding: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
            self.tx
                .execute(
                    "INSERT INTO bucket_references (bucket_id, id) \
                     SELECT $1, id FROM UNNEST($2::bytea[]) AS t(id) \
                     ON CONFLICT DO NOTHING",
                    &[&bucket.0, &adding],
                )
                .map_err(pg("record references"))?;
        }
        Ok(())
    }

    fn add_reference_part(
        &mut self,
        bucket: BucketId,
        part: &[u8; 32],
        ids: &[BlobId],
    ) -> Result<bool, CatalogError> {
        self.bucket_tenant(bucket, false)?;
        let new = self
            .tx
            .execute(
                "INSERT INTO bucket_reference_parts (bucket_id, hash) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&bucket.0, &&part[..]],
            )
            .map_err(pg("record reference part"))?
            > 0;
        if new {
            self.add_references(bucket, ids)?;
        }
        Ok(new)
    }

    fn mark_references_indexed(&mut self, bucket: BucketId) -> Result<(), CatalogError> {
        self.tx
            .execute(
                "DELETE FROM reference_backfill WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .map_err(pg("end reference backfill"))?;
        Ok(())
    }
}
