//! What the catalog stores: ids, namespace rows, sessions, pack and blob
//! records, journal commits.

use std::fmt;

use ferry_proto::{BlobId, BlobKind};

use super::CatalogError;

/// Longest tenant, site, bucket or pool name.
pub const MAX_NAME_LEN: usize = 63;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A tenant's catalog id.
    TenantId
);
id_type!(
    /// A site's catalog id.
    SiteId
);
id_type!(
    /// A bucket's catalog id.
    BucketId
);

/// Whose copy of a blob a row is: the tenant it belongs to and the site
/// that uploaded it. Dedup is per site: a blob counts as stored for a site
/// only in a copy that site uploaded, so another site holding the same
/// write-only key cannot plant garbage under an id that site will back up
/// (and cannot learn through FindMissing what that site stored). Copies of
/// [`SiteId::UNKNOWN`] (made before copies were per site) count for every
/// site of the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobOwner {
    pub tenant: TenantId,
    pub site: SiteId,
}

impl SiteId {
    /// The uploader of a copy made before copies were per site.
    pub const UNKNOWN: SiteId = SiteId(0);
}
id_type!(
    /// An upload session's catalog id.
    SessionId
);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The Ed25519 public key whose signed reports mark copies verified
    /// (`ferry_proto::verified`); `None`: dedup stays per site.
    pub verifier: Option<[u8; 32]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub tenant: TenantId,
    pub name: String,
    /// A revoked site's token is refused; its journal stays.
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub id: BucketId,
    pub tenant: TenantId,
    pub name: String,
    /// The one site allowed to write to the bucket.
    pub source_site: SiteId,
    /// The sites that keep a copy and may read it, besides the source; in
    /// id order.
    pub replicas: Vec<SiteId>,
}

impl Bucket {
    /// Whether `site` may read the bucket: its source or one of its replicas.
    pub fn readable_by(&self, site: SiteId) -> bool {
        self.source_site == site || self.replicas.contains(&site)
    }
}

/// An upload session: a lease that keeps GC away from what the session uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub site: SiteId,
    pub bucket: BucketId,
    /// The age header wrapping the session's file key.
    pub header_id: BlobId,
    /// The lease expires at this Unix time (seconds).
    pub lease_until_unix: i64,
    /// Closed sessions cannot be renewed.
    pub closed: bool,
}

impl Session {
    /// True if GC must still respect this session at Unix time `now`.
    pub fn is_live(&self, now_unix: i64) -> bool {
        !self.closed && self.lease_until_unix > now_unix
    }
}

/// A pack as recorded in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// Hex of `hash`: see [`crate::pack::pack_name`].
    pub name: String,
    /// The pool (blob store) holding the pack.
    pub pool: String,
    /// Size of the pack file in bytes.
    pub size: u64,
    /// BLAKE3 of the whole pack file, for scrubbing.
    pub hash: [u8; 32],
}

/// Where a stored blob lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub id: BlobId,
    pub kind: BlobKind,
    pub flags: u8,
    pub header_id: BlobId,
    /// The pool holding the pack.
    pub pool: String,
    /// The pack's name; its object name is [`crate::pack::pack_object_name`].
    pub pack: String,
    /// Absolute offset in the pack file.
    pub offset: u64,
    pub length: u32,
    /// The site whose copy this is.
    pub site: SiteId,
    /// A key holder verified this copy ([`super::BlobIndex::mark_verified`]).
    pub verified: bool,
}

/// What a journal entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommitKind {
    /// A batch of changes (puts and deletes) to the bucket.
    Batch,
    /// A checkpoint: the full manifest of the bucket at this position.
    Snapshot,
}

impl CommitKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Snapshot => "snapshot",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "batch" => Some(Self::Batch),
            "snapshot" => Some(Self::Snapshot),
            _ => None,
        }
    }
}

impl fmt::Display for CommitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A commit to append to a bucket's journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCommit {
    pub site: SiteId,
    pub time_unix_ms: i64,
    pub kind: CommitKind,
    /// The chunks of the commit's encrypted manifest, in order. (The data
    /// chunks it references are checked at commit time and kept in the
    /// journal segment and the bucket's reference index, not here.)
    pub manifest: Vec<BlobId>,
    /// Opaque bytes from the agent (encrypted).
    pub body: Vec<u8>,
    pub files: u64,
    pub bytes: u64,
    /// The sequence number the writer claims (its MAC covers it): the append
    /// is refused with `Conflict` unless it is the next. `None` takes the
    /// next, whatever it is.
    pub seq: Option<u64>,
    /// The agent's MAC over the commit and its parent's MAC
    /// (`ferry_proto::chain`); the hub stores it without being able to
    /// check it. `None` for a commit made before commits were signed.
    pub mac: Option<[u8; 32]>,
}

/// A commit in a bucket's journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub seq: u64,
    pub site: SiteId,
    pub time_unix_ms: i64,
    pub kind: CommitKind,
    pub manifest: Vec<BlobId>,
    pub body: Vec<u8>,
    pub files: u64,
    pub bytes: u64,
    pub mac: Option<[u8; 32]>,
}

/// Checks a tenant, site, bucket or pool name: 1 to [`MAX_NAME_LEN`] bytes of
/// `[a-z0-9._-]`.
///
/// # Errors
///
/// [`CatalogError::Invalid`] naming `field`.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), CatalogError> {
    let invalid = |reason: &str| {
        Err(CatalogError::Invalid {
            field,
            reason: format!("{name:?}: {reason}"),
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 63 bytes");
    }
    if name.starts_with('.') {
        return invalid("starts with '.'");
    }
    if !is_valid_name(name.as_bytes()) {
        return invalid("characters outside [a-z0-9._-]");
    }
    Ok(())
}

/// Whether `name` keeps the name rules of [`validate_name`]. Names are also
/// object name components in the pools (journal segments live under
/// `journal/<tenant>/<bucket>/`), hence no leading `.`; the pack and record
/// decoders check names read from a pool with this.
pub fn is_valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name[0] != b'.'
        && name.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for good in ["a", "site-1", "x.y_z", &"a".repeat(63)] {
            assert!(validate_name("tenant.name", good).is_ok(), "{good}");
        }
        for bad in ["", "A", "a b", "a/b", "é", ".", ".hidden", &"a".repeat(64)] {
            let err = validate_name("tenant.name", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    CatalogError::Invalid {
                        field: "tenant.name",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn commit_kind_spelling_round_trips() {
        for kind in [CommitKind::Batch, CommitKind::Snapshot] {
            assert_eq!(CommitKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CommitKind::parse("other"), None);
    }
}
