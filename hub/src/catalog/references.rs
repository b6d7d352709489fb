//! The reference area: which blob ids each bucket's commits reach (the
//! manifest chunks and the data chunks the manifests list), so a site reads
//! through a bucket only what that bucket's snapshots hold, never the rest
//! of what the tenant stored.
//!
//! Ids are recorded as the bucket's source site declares them (its
//! reference checks and commits): the source can always show its own data
//! to its bucket's readers by committing it, so a declared id that never
//! reached a commit exposes nothing more. Session headers are not
//! recorded; they hold only wrapped keys.

use std::collections::HashSet;

use ferry_proto::BlobId;

use super::{BucketId, CatalogError};

/// What a bucket's reference index says of some ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Referenced {
    /// The ids of those asked that the bucket's commits reference.
    Only(HashSet<BlobId>),
    /// The bucket has commits from before references were recorded, not yet
    /// read back from their segments: the index cannot say (until the hub's
    /// backfill has run, reads of the bucket are not limited by it).
    Unindexed,
}

impl Referenced {
    /// Whether `id` may be read through the bucket.
    pub fn allows(&self, id: &BlobId) -> bool {
        match self {
            Self::Only(ids) => ids.contains(id),
            Self::Unindexed => true,
        }
    }
}

/// Reference lookups.
pub trait ReferenceRead {
    /// Of `ids`, those `bucket`'s commits reference (or
    /// [`Referenced::Unindexed`]).
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored id cannot be decoded.
    fn referenced(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<Referenced, CatalogError>;

    /// The buckets whose commits from before references were recorded are
    /// not yet indexed, in id order.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn unindexed_buckets(&mut self) -> Result<Vec<BucketId>, CatalogError>;
}

/// Reference changes.
pub trait ReferenceWrite: ReferenceRead {
    /// Records that `bucket`'s commits reference `ids`; an id recorded
    /// already is left as it is.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket.
    fn add_references(&mut self, bucket: BucketId, ids: &[BlobId]) -> Result<(), CatalogError>;

    /// Records `ids`, the reference part hashing to `part`, as `bucket`'s
    /// references, unless that part was recorded for the bucket before:
    /// then returns false, changing nothing. An unchanged tree sends the
    /// same parts snapshot after snapshot, so each is written once.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket.
    fn add_reference_part(
        &mut self,
        bucket: BucketId,
        part: &[u8; 32],
        ids: &[BlobId],
    ) -> Result<bool, CatalogError>;

    /// Marks `bucket`'s index complete: every commit's references were read
    /// back from its segment. A no-op for an indexed bucket.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn mark_references_indexed(&mut self, bucket: BucketId) -> Result<(), CatalogError>;
}
