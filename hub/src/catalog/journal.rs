//! The journal area: each bucket's ordered, append-only list of commits
//! (snapshots and batches).

use super::{BucketId, CatalogError, Commit, NewCommit, SiteId};

/// Journal reads.
pub trait JournalRead {
    /// Up to `limit` commits of `bucket` with sequence numbers above
    /// `after_seq`, in order.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored row cannot be decoded.
    fn commits(
        &mut self,
        bucket: BucketId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Commit>, CatalogError>;

    /// The commit of `bucket` with sequence number `seq`.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if the stored row cannot be decoded.
    fn commit(&mut self, bucket: BucketId, seq: u64) -> Result<Option<Commit>, CatalogError>;

    /// The sites that have committed to `bucket`, in id order: whose copies
    /// its snapshots reference (a bucket that failed over has several).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn committing_sites(&mut self, bucket: BucketId) -> Result<Vec<SiteId>, CatalogError>;

    /// The commit of `bucket` with the highest sequence number: where the
    /// next append goes after.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if the stored row cannot be decoded.
    fn last_commit(&mut self, bucket: BucketId) -> Result<Option<Commit>, CatalogError>;

    /// The commit with the highest sequence number among those of `bucket`
    /// timed at or before `time_unix_ms`.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if the stored row cannot be decoded.
    fn latest_commit_at_or_before(
        &mut self,
        bucket: BucketId,
        time_unix_ms: i64,
    ) -> Result<Option<Commit>, CatalogError>;
}

/// Journal appends.
pub trait JournalWrite: JournalRead {
    /// Appends a commit to `bucket`'s journal and returns its sequence
    /// number (1 for the first commit, then gapless, however many writers
    /// append at once).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket or site, `Invalid` if the site is of
    /// another tenant or a count does not fit, `MissingBlobs` if the
    /// manifest references a blob the bucket's tenant has not stored,
    /// `Conflict` if the commit claims a sequence number that is not next.
    fn append_commit(&mut self, bucket: BucketId, commit: &NewCommit) -> Result<u64, CatalogError>;

    /// Puts a commit read back from the pools (`ferry-hub recover`) at
    /// sequence number `seq` of `bucket`'s journal. Returns false, changing
    /// nothing, if the bucket already has a commit at `seq` (so a rerun
    /// adds only what is missing). Gaps are allowed, where a segment was
    /// lost; the next append goes after the highest number. The manifest
    /// is not checked against the blob index: what a damaged pack lost is
    /// for the recovery to report, not to hide.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket or site, `Invalid` for a site of
    /// another tenant, a zero `seq` or a count that does not fit.
    fn restore_commit(
        &mut self,
        bucket: BucketId,
        seq: u64,
        commit: &NewCommit,
    ) -> Result<bool, CatalogError>;
}

/// The checks every engine makes before restoring a commit.
///
/// # Errors
///
/// `Invalid` for a zero or too large `seq` or a site of another tenant.
pub(crate) fn check_restore(
    bucket: BucketId,
    seq: u64,
    commit: &NewCommit,
    bucket_tenant: super::TenantId,
    site_tenant: super::TenantId,
) -> Result<i64, CatalogError> {
    // A recovered commit was made by whichever site was the source then.
    check_append(bucket, commit, bucket_tenant, site_tenant, commit.site, &[])?;
    match super::error::to_i64("commit.seq", seq)? {
        0 => Err(CatalogError::Invalid {
            field: "commit.seq",
            reason: "sequence numbers start at 1".to_owned(),
        }),
        seq => Ok(seq),
    }
}

/// A commit's counts as the engines store them.
///
/// # Errors
///
/// `Invalid` naming the count that does not fit.
pub(crate) fn stored_counts(commit: &NewCommit) -> Result<(i64, i64), CatalogError> {
    use super::error::to_i64;
    Ok((
        to_i64("commit.files", commit.files)?,
        to_i64("commit.bytes", commit.bytes)?,
    ))
}

/// The checks every engine makes before appending, once it has read the
/// tenants of the bucket and the site and which manifest blobs are missing.
///
/// # Errors
///
/// `Invalid` for a site of another tenant, `MissingBlobs` for a manifest
/// blob the tenant has not stored.
pub(crate) fn check_append(
    bucket: BucketId,
    commit: &NewCommit,
    bucket_tenant: super::TenantId,
    site_tenant: super::TenantId,
    source: super::SiteId,
    missing: &[ferry_proto::BlobId],
) -> Result<(), CatalogError> {
    if site_tenant != bucket_tenant {
        return Err(CatalogError::Invalid {
            field: "commit.site",
            reason: format!("site {} is not of bucket {bucket}'s tenant", commit.site),
        });
    }
    // Checked in the append's own transaction: a site the bucket failed
    // over from is fenced at once, whatever session it still holds.
    if commit.site != source {
        return Err(CatalogError::Conflict {
            what: "bucket",
            key: bucket.to_string(),
            reason: format!(
                "site {} is not its source (site {source} is: the bucket failed over)",
                commit.site
            ),
        });
    }
    match missing.first() {
        Some(first) => Err(CatalogError::MissingBlobs {
            count: missing.len(),
            first: *first,
        }),
        None => Ok(()),
    }
}

/// An append that found its sequence number taken: another writer won
/// a race the engine's locking should have prevented.
pub(crate) fn seq_taken(bucket: BucketId, seq: i64) -> CatalogError {
    CatalogError::Conflict {
        what: "commit",
        key: format!("{bucket}/{seq}"),
        reason: "the sequence number was taken by another writer".to_owned(),
    }
}

/// The sequence number after `last`, which `commit` must claim if it claims
/// one.
///
/// # Errors
///
/// `Corrupt` if the bucket's sequence is exhausted, `Conflict` if the
/// commit claims another number (the journal moved on since its writer
/// looked).
pub(crate) fn next_seq(
    bucket: BucketId,
    last: i64,
    commit: &NewCommit,
) -> Result<i64, CatalogError> {
    let next = last.checked_add(1).ok_or_else(|| CatalogError::Corrupt {
        what: "commits.seq",
        detail: format!("bucket {bucket}: sequence exhausted"),
    })?;
    match commit.seq {
        Some(claimed) if i64::try_from(claimed) != Ok(next) => Err(CatalogError::Conflict {
            what: "commit",
            key: format!("{bucket}/{claimed}"),
            reason: format!("the journal's next sequence number is {next}"),
        }),
        _ => Ok(next),
    }
}

/// A stored MAC column: empty or NULL for none, else 32 bytes.
///
/// # Errors
///
/// `Corrupt` for any other length.
pub(crate) fn stored_mac(mac: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, CatalogError> {
    match mac {
        None => Ok(None),
        Some(bytes) if bytes.is_empty() => Ok(None),
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| CatalogError::Corrupt {
                what: "commits.mac",
                detail: format!("{} bytes, not 32", bytes.len()),
            }),
    }
}
