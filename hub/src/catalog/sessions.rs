//! The upload-session area: leases that keep GC away from what a session
//! uploads.

use ferry_proto::BlobId;

use super::{BucketId, CatalogError, Session, SessionId, SiteId};

/// Session lookups.
pub trait SessionRead {
    /// A session by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn session(&mut self, id: SessionId) -> Result<Option<Session>, CatalogError>;
}

/// Session changes.
pub trait SessionWrite: SessionRead {
    /// Opens an upload session holding a lease until `lease_until_unix`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown site or bucket, `Invalid` if they belong
    /// to different tenants.
    fn open_session(
        &mut self,
        site: SiteId,
        bucket: BucketId,
        header_id: &BlobId,
        lease_until_unix: i64,
    ) -> Result<SessionId, CatalogError>;

    /// Extends a session's lease to `lease_until_unix`. A lease never
    /// shrinks: an earlier time leaves it as it is.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown session, `Conflict` for a closed one.
    fn renew_session(&mut self, id: SessionId, lease_until_unix: i64) -> Result<(), CatalogError>;

    /// Closes a session; closing a closed session is a no-op.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown session.
    fn close_session(&mut self, id: SessionId) -> Result<(), CatalogError>;
}

/// Whether session `id` may be renewed, given whether it is closed (`None`:
/// no such session).
///
/// # Errors
///
/// `NotFound` for no session, `Conflict` for a closed one.
pub(crate) fn check_renewable(id: SessionId, closed: Option<bool>) -> Result<(), CatalogError> {
    match closed {
        None => Err(CatalogError::NotFound {
            what: "session",
            key: id.to_string(),
        }),
        Some(true) => Err(CatalogError::Conflict {
            what: "session",
            key: id.to_string(),
            reason: "closed; open a new session".to_owned(),
        }),
        Some(false) => Ok(()),
    }
}
