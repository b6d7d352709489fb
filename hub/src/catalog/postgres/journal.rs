//! Per-bucket journals in PostgreSQL.

use postgres::Row;
use postgres::types::ToSql;

use super::blobs::missing_ids;
use super::{Tx, pg};
use crate::catalog::error::{from_i64, ids_bytes, stored_ids};
use crate::catalog::journal::{
    check_append, check_restore, next_seq, seq_taken, stored_counts, stored_mac,
};
use crate::catalog::namespace::existing_bucket;
use crate::catalog::{
    BlobOwner, BucketId, CatalogError, Commit, CommitKind, JournalRead, JournalWrite, NewCommit,
    SiteId,
};

const COMMIT_COLUMNS: &str = "seq, site_id, time_ms, kind, manifest, body, files, bytes, mac";

fn decode_commit(row: &Row) -> Result<Commit, CatalogError> {
    let read = |source| CatalogError::unavailable("read commit", source);
    let seq: i64 = row.try_get(0).map_err(read)?;
    let site: i64 = row.try_get(1).map_err(read)?;
    let time_ms: i64 = row.try_get(2).map_err(read)?;
    let kind: String = row.try_get(3).map_err(read)?;
    let manifest: Vec<u8> = row.try_get(4).map_err(read)?;
    let body: Vec<u8> = row.try_get(5).map_err(read)?;
    let files: i64 = row.try_get(6).map_err(read)?;
    let bytes: i64 = row.try_get(7).map_err(read)?;
    let mac: Option<Vec<u8>> = row.try_get(8).map_err(read)?;
    Ok(Commit {
        seq: from_i64("commits.seq", seq)?,
        site: SiteId(site),
        time_unix_ms: time_ms,
        kind: CommitKind::parse(&kind).ok_or_else(|| CatalogError::Corrupt {
            what: "commits.kind",
            detail: format!("unknown kind {kind:?}"),
        })?,
        manifest: stored_ids("commits.manifest", &manifest)?,
        body,
        files: from_i64("commits.files", files)?,
        bytes: from_i64("commits.bytes", bytes)?,
        mac: stored_mac(mac)?,
    })
}

impl Tx<'_, '_> {
    fn query_commits(
        &mut self,
        op: &'static str,
        where_clause: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Commit>, CatalogError> {
        let rows = self
            .tx
            .query(
                &format!("SELECT {COMMIT_COLUMNS} FROM commits WHERE {where_clause}"),
                params,
            )
            .map_err(pg(op))?;
        rows.iter().map(decode_commit).collect()
    }
}

impl JournalRead for Tx<'_, '_> {
    fn commits(
        &mut self,
        bucket: BucketId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Commit>, CatalogError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_commits(
            "list commits",
            "bucket_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&bucket.0, &after, &limit],
        )
    }

    fn commit(&mut self, bucket: BucketId, seq: u64) -> Result<Option<Commit>, CatalogError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let found = self.query_commits(
            "read commit",
            "bucket_id = $1 AND seq = $2",
            &[&bucket.0, &seq],
        )?;
        Ok(found.into_iter().next())
    }

    fn committing_sites(&mut self, bucket: BucketId) -> Result<Vec<SiteId>, CatalogError> {
        let rows = self
            .tx
            .query(
                "SELECT DISTINCT site_id FROM commits WHERE bucket_id = $1 ORDER BY site_id",
                &[&bucket.0],
            )
            .map_err(pg("list committing sites"))?;
        rows.iter()
            .map(|r| {
                r.try_get(0)
                    .map(SiteId)
                    .map_err(pg("list committing sites"))
            })
            .collect()
    }

    fn last_commit(&mut self, bucket: BucketId) -> Result<Option<Commit>, CatalogError> {
        let found = self.query_commits(
            "read journal head",
            "bucket_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&bucket.0],
        )?;
        Ok(found.into_iter().next())
    }

    fn latest_commit_at_or_before(
        &mut self,
        bucket: BucketId,
        time_unix_ms: i64,
    ) -> Result<Option<Commit>, CatalogError> {
        let found = self.query_commits(
            "find commit by time",
            "bucket_id = $1 AND time_ms <= $2 ORDER BY seq DESC LIMIT 1",
            &[&bucket.0, &time_unix_ms],
        )?;
        Ok(found.into_iter().next())
    }
}

impl JournalWrite for Tx<'_, '_> {
    fn append_commit(&mut self, bucket: BucketId, commit: &NewCommit) -> Result<u64, CatalogError> {
        // The bucket's row stays locked until the transaction ends: appends
        // from every hub take sequence numbers one at a time.
        let tenant = self.bucket_tenant(bucket, true)?;
        let site_tenant = self.site_tenant(commit.site)?;
        // The committing site's own copies (see BlobOwner).
        let owner = BlobOwner {
            tenant,
            site: commit.site,
        };
        let missing = missing_ids(self.tx, owner, &commit.manifest)?;
        let source = existing_bucket(self, bucket)?.source_site;
        check_append(bucket, commit, tenant, site_tenant, source, &missing)?;
        let last: i64 = self
            .tx
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM commits WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .and_then(|r| r.try_get(0))
            .map_err(pg("read journal head"))?;
        let seq = next_seq(bucket, last, commit)?;
        if !self.insert_commit(bucket, seq, commit)? {
            return Err(seq_taken(bucket, seq));
        }
        from_i64("commits.seq", seq)
    }

    fn restore_commit(
        &mut self,
        bucket: BucketId,
        seq: u64,
        commit: &NewCommit,
    ) -> Result<bool, CatalogError> {
        let tenant = self.bucket_tenant(bucket, true)?;
        let site_tenant = self.site_tenant(commit.site)?;
        let seq = check_restore(bucket, seq, commit, tenant, site_tenant)?;
        self.insert_commit(bucket, seq, commit)
    }
}

impl Tx<'_, '_> {
    /// Inserts `commit` at `seq` unless that number is taken; true if it was
    /// inserted.
    fn insert_commit(
        &mut self,
        bucket: BucketId,
        seq: i64,
        commit: &NewCommit,
    ) -> Result<bool, CatalogError> {
        let (files, bytes) = stored_counts(commit)?;
        let inserted = self.tx
            .execute(
                "INSERT INTO commits (bucket_id, seq, site_id, time_ms, kind, manifest, body, files, bytes, mac) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                &[
                    &bucket.0,
                    &seq,
                    &commit.site.0,
                    &commit.time_unix_ms,
                    &commit.kind.as_str(),
                    &ids_bytes(&commit.manifest),
                    &commit.body,
                    &files,
                    &bytes,
                    &commit.mac.as_ref().map(|m| &m[..]),
                ],
            )
            .map_err(pg("insert commit"))?;
        Ok(inserted > 0)
    }
}
