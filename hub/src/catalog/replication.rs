//! The replication area: how far each replica site has applied each
//! bucket's journal (its cursor, and when it got there), from which lag is
//! told and a restarted replica resumes.

use super::{BucketId, CatalogError, SiteId};

/// A replica's position in a bucket's journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCursor {
    pub site: SiteId,
    /// The last commit applied (0: none yet).
    pub seq: u64,
    /// When the replica acknowledged it (0: never).
    pub applied_unix_ms: i64,
}

/// A commit a replica holds back because it would delete more of its copy
/// than the replica is allowed to without an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaHold {
    pub site: SiteId,
    pub seq: u64,
    /// Entries the commit would delete, of those the copy holds.
    pub deletes: u64,
    pub entries: u64,
    pub held_unix_ms: i64,
    /// An operator confirmed it: the replica applies it.
    pub confirmed: bool,
}

/// Cursor lookups.
pub trait ReplicationRead {
    /// The holds of `bucket`'s replicas, in site id order.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn replica_holds(&mut self, bucket: BucketId) -> Result<Vec<ReplicaHold>, CatalogError>;

    /// The cursors of `bucket`'s replicas, in site id order; a replica that
    /// never acknowledged anything has none.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn replica_cursors(&mut self, bucket: BucketId) -> Result<Vec<ReplicaCursor>, CatalogError>;
}

/// Cursor changes.
pub trait ReplicationWrite: ReplicationRead {
    /// Records that replica `site` applied `bucket` up to `seq` at
    /// `applied_unix_ms`, and gives the cursor now stored: a cursor never
    /// moves back (an older `seq` leaves it as it is).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket; `Invalid` (field `ack.site`) for a
    /// site that is not one of the bucket's replicas, or (`ack.seq`) for a
    /// `seq` past the end of its journal.
    fn ack_replica(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        seq: u64,
        applied_unix_ms: i64,
    ) -> Result<ReplicaCursor, CatalogError>;

    /// Records that replica `hold.site` holds commit `hold.seq` back (one
    /// hold per replica: a later one replaces it, keeping a confirmation
    /// of the same commit). An acknowledgement at or past it ends it.
    ///
    /// # Errors
    ///
    /// As [`Self::ack_replica`].
    fn hold_replica(&mut self, bucket: BucketId, hold: &ReplicaHold) -> Result<(), CatalogError>;

    /// Confirms replica `site`'s hold: gives the commit confirmed.
    ///
    /// # Errors
    ///
    /// `NotFound` when the replica holds nothing back.
    fn confirm_hold(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError>;
}

/// Whether `site` may acknowledge `seq` of a bucket whose replicas and
/// journal head are these: the check both engines make before they write.
///
/// # Errors
///
/// As [`ReplicationWrite::ack_replica`].
pub(crate) fn check_ack(
    replicas: &[SiteId],
    head: u64,
    site: SiteId,
    seq: u64,
) -> Result<(), CatalogError> {
    if !replicas.contains(&site) {
        return Err(CatalogError::Invalid {
            field: "ack.site",
            reason: format!("site {site} is not a replica of the bucket"),
        });
    }
    if seq > head {
        return Err(CatalogError::Invalid {
            field: "ack.seq",
            reason: format!("commit {seq} is past the journal's end ({head})"),
        });
    }
    Ok(())
}
