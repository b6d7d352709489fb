//! Per-bucket journals in SQLite.

use rusqlite::{Connection, params};

use super::blobs::missing_ids;
use super::namespace::{bucket_tenant, site_tenant};
use super::{Tx, sql};
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

/// A commit row as stored, before its values are checked.
struct RawCommit {
    seq: i64,
    site: i64,
    time_ms: i64,
    kind: String,
    manifest: Vec<u8>,
    body: Vec<u8>,
    files: i64,
    bytes: i64,
    mac: Option<Vec<u8>>,
}

fn raw_commit_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCommit> {
    Ok(RawCommit {
        seq: row.get(0)?,
        site: row.get(1)?,
        time_ms: row.get(2)?,
        kind: row.get(3)?,
        manifest: row.get(4)?,
        body: row.get(5)?,
        files: row.get(6)?,
        bytes: row.get(7)?,
        mac: row.get(8)?,
    })
}

impl RawCommit {
    fn decode(self) -> Result<Commit, CatalogError> {
        Ok(Commit {
            seq: from_i64("commits.seq", self.seq)?,
            site: SiteId(self.site),
            time_unix_ms: self.time_ms,
            kind: CommitKind::parse(&self.kind).ok_or_else(|| CatalogError::Corrupt {
                what: "commits.kind",
                detail: format!("unknown kind {:?}", self.kind),
            })?,
            manifest: stored_ids("commits.manifest", &self.manifest)?,
            body: self.body,
            files: from_i64("commits.files", self.files)?,
            bytes: from_i64("commits.bytes", self.bytes)?,
            mac: stored_mac(self.mac)?,
        })
    }
}

fn query_commits(
    conn: &Connection,
    op: &'static str,
    where_clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Commit>, CatalogError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COMMIT_COLUMNS} FROM commits WHERE {where_clause}"
        ))
        .map_err(sql(op))?;
    let raws = stmt
        .query_map(params, raw_commit_row)
        .map_err(sql(op))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql(op))?;
    raws.into_iter().map(RawCommit::decode).collect()
}

impl JournalRead for Tx<'_> {
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
        query_commits(
            self.conn,
            "list commits",
            "bucket_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![bucket.0, after, limit],
        )
    }

    fn commit(&mut self, bucket: BucketId, seq: u64) -> Result<Option<Commit>, CatalogError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let found = query_commits(
            self.conn,
            "read commit",
            "bucket_id = ?1 AND seq = ?2",
            params![bucket.0, seq],
        )?;
        Ok(found.into_iter().next())
    }

    fn committing_sites(&mut self, bucket: BucketId) -> Result<Vec<SiteId>, CatalogError> {
        self.conn
            .prepare_cached(
                "SELECT DISTINCT site_id FROM commits WHERE bucket_id = ?1 ORDER BY site_id",
            )
            .and_then(|mut s| {
                s.query_map([bucket.0], |r| r.get(0).map(SiteId))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("list committing sites"))
    }

    fn last_commit(&mut self, bucket: BucketId) -> Result<Option<Commit>, CatalogError> {
        let found = query_commits(
            self.conn,
            "read journal head",
            "bucket_id = ?1 ORDER BY seq DESC LIMIT 1",
            params![bucket.0],
        )?;
        Ok(found.into_iter().next())
    }

    fn latest_commit_at_or_before(
        &mut self,
        bucket: BucketId,
        time_unix_ms: i64,
    ) -> Result<Option<Commit>, CatalogError> {
        let found = query_commits(
            self.conn,
            "find commit by time",
            "bucket_id = ?1 AND time_ms <= ?2 ORDER BY seq DESC LIMIT 1",
            params![bucket.0, time_unix_ms],
        )?;
        Ok(found.into_iter().next())
    }
}

impl JournalWrite for Tx<'_> {
    fn append_commit(&mut self, bucket: BucketId, commit: &NewCommit) -> Result<u64, CatalogError> {
        let tenant = bucket_tenant(self.conn, bucket)?;
        let site_tenant = site_tenant(self.conn, commit.site)?;
        // Checked inside the write transaction, so no GC sweep or other
        // writer can slip between the check and the commit.
        // The committing site's own copies (see BlobOwner).
        let owner = BlobOwner {
            tenant,
            site: commit.site,
        };
        let missing = missing_ids(self.conn, owner, &commit.manifest)?;
        let source = existing_bucket(self, bucket)?.source_site;
        check_append(bucket, commit, tenant, site_tenant, source, &missing)?;
        let last: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM commits WHERE bucket_id = ?1",
                [bucket.0],
                |r| r.get(0),
            )
            .map_err(sql("read journal head"))?;
        let seq = next_seq(bucket, last, commit)?;
        if !self.insert_commit(bucket, seq, commit)? {
            return Err(seq_taken(bucket, seq));
        }
        self.appended = true;
        from_i64("commits.seq", seq)
    }

    fn restore_commit(
        &mut self,
        bucket: BucketId,
        seq: u64,
        commit: &NewCommit,
    ) -> Result<bool, CatalogError> {
        let tenant = bucket_tenant(self.conn, bucket)?;
        let site_tenant = site_tenant(self.conn, commit.site)?;
        let seq = check_restore(bucket, seq, commit, tenant, site_tenant)?;
        let inserted = self.insert_commit(bucket, seq, commit)?;
        self.appended |= inserted;
        Ok(inserted)
    }
}

impl Tx<'_> {
    /// Inserts `commit` at `seq` unless that number is taken; true if it was
    /// inserted.
    fn insert_commit(
        &mut self,
        bucket: BucketId,
        seq: i64,
        commit: &NewCommit,
    ) -> Result<bool, CatalogError> {
        let (files, bytes) = stored_counts(commit)?;
        let inserted = self.conn
            .execute(
                "INSERT INTO commits (bucket_id, seq, site_id, time_ms, kind, manifest, body, files, bytes, mac) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
                params![
                    bucket.0,
                    seq,
                    commit.site.0,
                    commit.time_unix_ms,
                    commit.kind.as_str(),
                    ids_bytes(&commit.manifest),
                    commit.body,
                    files,
                    bytes,
                    commit.mac.as_ref().map(|m| &m[..])
                ],
            )
            .map_err(sql("insert commit"))?;
        Ok(inserted > 0)
    }
}
