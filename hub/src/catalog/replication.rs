//! The replication area: how far each replica site has applied each
//! bucket's journal (its cursor, and when it got there), from which lag is
//! told and a restarted replica resumes; the commits replicas hold back,
//! the trouble they report (last error, dead letters) and the buckets an
//! operator paused.

use super::error::to_i64;
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

/// The most dead letters a replica keeps listed at the hub (the total is
/// counted beyond).
pub const MAX_DEAD_LETTERS: usize = 1000;

/// The last error a replica met applying a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    pub seq: u64,
    pub message: String,
    pub at_unix_ms: i64,
}

/// An entry a replica gave up writing after its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub path: String,
    pub reason: String,
}

/// The dead letters of one applied commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetters {
    /// The commit applied without them.
    pub seq: u64,
    /// At most [`MAX_DEAD_LETTERS`].
    pub letters: Vec<DeadLetter>,
    /// How many there were (`letters` may list fewer).
    pub total: u64,
}

/// A bucket's replication pause as operators last set it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationPause {
    /// Paused since then (None: replicating).
    pub paused_unix_ms: Option<i64>,
    /// Last resumed then (None: never paused).
    pub resumed_unix_ms: Option<i64>,
}

/// How many dead letters a replica has, and of which commit (the letters
/// themselves are read with [`ReplicationRead::dead_letters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadCount {
    pub seq: u64,
    pub total: u64,
}

/// What a replica reported of its trouble with a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaTrouble {
    pub site: SiteId,
    pub last_error: Option<ReplicaFailure>,
    /// None: the last apply wrote everything.
    pub dead: Option<DeadCount>,
    /// An operator asked for the dead letters to be tried again.
    pub replay_requested: bool,
}

/// Cursor lookups.
pub trait ReplicationRead {
    /// What `bucket`'s replicas reported of their trouble, in site id
    /// order; a replica that never reported any has none.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn replica_troubles(&mut self, bucket: BucketId) -> Result<Vec<ReplicaTrouble>, CatalogError>;

    /// The dead letters replica `site` has of `bucket` (at most
    /// [`MAX_DEAD_LETTERS`]), in path byte order.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn dead_letters(
        &mut self,
        bucket: BucketId,
        site: SiteId,
    ) -> Result<Vec<DeadLetter>, CatalogError>;

    /// Whether an operator paused replication of `bucket`, and when it was
    /// last resumed.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn replication_pause(&mut self, bucket: BucketId) -> Result<ReplicationPause, CatalogError>;

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

    /// Records the last error replica `site` met applying commit
    /// `failure.seq` of `bucket` (replacing the one before).
    ///
    /// # Errors
    ///
    /// As [`Self::ack_replica`].
    fn record_replica_error(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        failure: &ReplicaFailure,
    ) -> Result<(), CatalogError>;

    /// Replaces replica `site`'s dead letters of `bucket` (None: it applied
    /// a commit whole, and has none). `replayed`: they come from a replay
    /// an operator asked for, which is then done.
    ///
    /// # Errors
    ///
    /// As [`Self::ack_replica`]; `Invalid` (field `dead_letters`) for more
    /// than [`MAX_DEAD_LETTERS`].
    fn set_dead_letters(
        &mut self,
        bucket: BucketId,
        site: SiteId,
        dead: Option<&DeadLetters>,
        replayed: bool,
    ) -> Result<(), CatalogError>;

    /// Asks replica `site` to try its dead letters of `bucket` again;
    /// gives how many there are.
    ///
    /// # Errors
    ///
    /// `NotFound` when it has none.
    fn request_replay(&mut self, bucket: BucketId, site: SiteId) -> Result<u64, CatalogError>;

    /// Pauses (`paused`) or resumes replication of `bucket` at
    /// `at_unix_ms`: replicas apply no commit and remove no tombstone while
    /// it is paused, nor for their delay after it is resumed. A pause of a
    /// paused bucket keeps its first time; a resume of one not paused
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket.
    fn set_replication_paused(
        &mut self,
        bucket: BucketId,
        paused: bool,
        at_unix_ms: i64,
    ) -> Result<(), CatalogError>;
}

/// A pause from its stored row (paused_ms, resumed_ms; 0 for none).
pub(crate) fn pause_of(row: Option<(i64, i64)>) -> ReplicationPause {
    let (paused, resumed) = row.unwrap_or_default();
    ReplicationPause {
        paused_unix_ms: (paused != 0).then_some(paused),
        resumed_unix_ms: (resumed != 0).then_some(resumed),
    }
}

/// Whether replica `site` may store `dead` of a bucket whose replicas and
/// journal head are these, and the (dead_seq, dead_total) row values to
/// store: the check both engines make before they write.
///
/// # Errors
///
/// As [`ReplicationWrite::set_dead_letters`].
pub(crate) fn dead_letters_row(
    replicas: &[SiteId],
    head: u64,
    site: SiteId,
    dead: Option<&DeadLetters>,
) -> Result<(i64, i64), CatalogError> {
    check_ack(replicas, head, site, dead.map_or(0, |d| d.seq))?;
    match dead {
        Some(dead) if dead.letters.len() > MAX_DEAD_LETTERS => Err(CatalogError::Invalid {
            field: "dead_letters",
            reason: format!("{} listed, at most {MAX_DEAD_LETTERS}", dead.letters.len()),
        }),
        Some(d) => Ok((to_i64("dead.seq", d.seq)?, to_i64("dead.total", d.total)?)),
        None => Ok((0, 0)),
    }
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
