//! The catalog: the hub's namespace, its index over the pools, and the
//! per-bucket journals.
//!
//! [`Catalog`] is synchronous: the SQLite implementation blocks, so async
//! callers run it under `tokio::task::spawn_blocking`. Implementations:
//! [`sqlite::SqliteCatalog`] (embedded default); PostgreSQL will follow. Every
//! implementation must pass [`conformance::run_all`].
//!
//! # Contract
//!
//! - Names of tenants, sites, buckets and pools: 1 to 63 bytes of
//!   `[a-z0-9._-]` ([`validate_name`]).
//! - Blobs belong to a tenant and are keyed by (tenant, id): every blob
//!   query names the tenant, and one tenant's blobs are invisible to every
//!   other tenant. Deduplication is per tenant, so the same id stored by two
//!   tenants is two blobs. The hub never relies on chunk ids being keyed per
//!   tenant.
//! - A blob's location is fixed by the first pack recorded that holds it for
//!   its tenant; later packs holding the same (tenant, id) do not move it.
//! - Journal sequence numbers start at 1 per bucket and have no gaps, however
//!   many writers append concurrently.
//! - A commit is accepted only if every blob it references is stored, so an
//!   acknowledged commit never points at missing data.

pub mod conformance;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;

use ferry_proto::{BlobId, BlobKind};

pub use crate::pack::PackEntry;
pub use sqlite::SqliteCatalog;

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
id_type!(
    /// An upload session's catalog id.
    SessionId
);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub tenant: TenantId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub id: BucketId,
    pub tenant: TenantId,
    pub name: String,
    /// The one site allowed to write to the bucket.
    pub source_site: SiteId,
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
    /// chunks it references are checked at commit time but not kept yet;
    /// GC will need them.)
    pub manifest: Vec<BlobId>,
    /// Opaque bytes from the agent (encrypted).
    pub body: Vec<u8>,
    pub files: u64,
    pub bytes: u64,
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
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("open catalog {path}: {source}", path = path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("catalog: {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("{what} {key} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{what} {key}: {reason}")]
    Conflict {
        what: &'static str,
        key: String,
        reason: String,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("commit references {count} blobs the hub does not hold (first: {first})")]
    MissingBlobs { count: usize, first: BlobId },
    #[error("catalog corrupt: {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("catalog schema version {found} is newer than this hub supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
}

impl CatalogError {
    /// True if the error says something does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
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
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("characters outside [a-z0-9._-]");
    }
    Ok(())
}

/// The hub's namespace, pool index and journals. See the module docs for the
/// contract every implementation keeps.
pub trait Catalog: Send + Sync {
    // --- namespace ---

    /// Creates a tenant.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name, `AlreadyExists` if the name is taken.
    fn create_tenant(&self, name: &str) -> Result<TenantId, CatalogError>;

    /// Looks a tenant up by name.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown name is `Ok(None)`.
    fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, CatalogError>;

    /// Creates a site of `tenant` that authenticates with a token whose hash
    /// is `token_hash`. Site names are unique per tenant, token hashes globally.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name, `NotFound` for an unknown tenant,
    /// `AlreadyExists` if the name or the token hash is taken.
    fn create_site(
        &self,
        tenant: TenantId,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, CatalogError>;

    /// The site authenticating with `token_hash`.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown hash is `Ok(None)`.
    fn site_by_token_hash(&self, token_hash: &[u8; 32]) -> Result<Option<Site>, CatalogError>;

    /// A site by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn site(&self, id: SiteId) -> Result<Option<Site>, CatalogError>;

    /// The sites of `tenant`, by name (empty for an unknown tenant).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn list_sites(&self, tenant: TenantId) -> Result<Vec<Site>, CatalogError>;

    /// Creates a bucket of `tenant` written by `source_site`. Bucket names are
    /// unique per tenant.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name or a source site of another tenant,
    /// `NotFound` for an unknown tenant or site, `AlreadyExists` if the name
    /// is taken.
    fn create_bucket(
        &self,
        tenant: TenantId,
        name: &str,
        source_site: SiteId,
    ) -> Result<BucketId, CatalogError>;

    /// Looks a bucket up by tenant and name.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown name is `Ok(None)`.
    fn bucket_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Bucket>, CatalogError>;

    /// A bucket by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn bucket(&self, id: BucketId) -> Result<Option<Bucket>, CatalogError>;

    /// The buckets of `tenant`, by name (empty for an unknown tenant).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn list_buckets(&self, tenant: TenantId) -> Result<Vec<Bucket>, CatalogError>;

    // --- upload sessions ---

    /// Opens an upload session holding a lease until `lease_until_unix`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown site or bucket.
    fn open_session(
        &self,
        site: SiteId,
        bucket: BucketId,
        header_id: &BlobId,
        lease_until_unix: i64,
    ) -> Result<SessionId, CatalogError>;

    /// A session by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn session(&self, id: SessionId) -> Result<Option<Session>, CatalogError>;

    /// Extends a session's lease to `lease_until_unix`. A lease never
    /// shrinks: an earlier time leaves it as it is.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown session, `Conflict` for a closed one.
    fn renew_session(&self, id: SessionId, lease_until_unix: i64) -> Result<(), CatalogError>;

    /// Closes a session; closing a closed session is a no-op.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown session.
    fn close_session(&self, id: SessionId) -> Result<(), CatalogError>;

    // --- blobs and packs ---

    /// The ids in `ids` that `tenant` has not stored, in input order, each
    /// once. Blobs of other tenants count as missing. Any number of ids may be
    /// asked at once.
    ///
    /// # Errors
    ///
    /// Storage errors only (an unknown tenant has every id missing).
    fn missing_blobs(&self, tenant: TenantId, ids: &[BlobId]) -> Result<Vec<BlobId>, CatalogError>;

    /// Calls `visit` with every stored blob's tenant and id, in no set order,
    /// from one consistent snapshot (a reader of its own: other calls do not
    /// wait for it).
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored id cannot be decoded.
    fn for_each_blob_id(
        &self,
        visit: &mut dyn FnMut(TenantId, &BlobId),
    ) -> Result<(), CatalogError>;

    /// The locations of `tenant`'s stored blobs among `ids`, in input order,
    /// each once; ids the tenant has not stored (even if another tenant has)
    /// are left out.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored row cannot be decoded.
    fn blob_locations(
        &self,
        tenant: TenantId,
        ids: &[BlobId],
    ) -> Result<Vec<BlobLocation>, CatalogError>;

    /// Records a pack and its blobs in one transaction. Each entry names the
    /// tenant the blob belongs to; one pack may hold blobs of several tenants.
    /// A (tenant, id) already stored keeps its first location. A pack already
    /// recorded (same name, pool, size and hash) is kept and only its entries
    /// not yet stored are added: packs are named by content, so two tenants
    /// uploading identical bytes produce the same pack. Recording the same
    /// pack and entries again is therefore a no-op. Returns how many blobs
    /// were newly stored.
    ///
    /// # Errors
    ///
    /// `Invalid` if the record is malformed or an entry lies outside the
    /// pack, `NotFound` for an unknown tenant, `Conflict` if a pack of that
    /// name was recorded with different pool, size or hash. Nothing is
    /// recorded on error.
    fn record_pack(
        &self,
        pack: &PackRecord,
        entries: &[(TenantId, PackEntry)],
    ) -> Result<usize, CatalogError>;

    /// Every recorded pack, by name.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored row cannot be decoded.
    fn list_packs(&self) -> Result<Vec<PackRecord>, CatalogError>;

    /// Each pool that holds packs, with how many, by pool name.
    ///
    /// # Errors
    ///
    /// `Storage`.
    fn packs_per_pool(&self) -> Result<Vec<(String, u64)>, CatalogError>;

    // --- journal ---

    /// Appends a commit to `bucket`'s journal and returns its sequence number
    /// (1 for the first commit, then gapless).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket or site, `Invalid` if the site is of
    /// another tenant or a count does not fit, `MissingBlobs` if the manifest
    /// references a blob the bucket's tenant has not stored.
    fn append_commit(&self, bucket: BucketId, commit: &NewCommit) -> Result<u64, CatalogError>;

    /// Up to `limit` commits of `bucket` with sequence numbers above
    /// `after_seq`, in order.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored row cannot be decoded.
    fn commits(
        &self,
        bucket: BucketId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Commit>, CatalogError>;

    /// The commit of `bucket` with sequence number `seq`.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if the stored row cannot be decoded.
    fn commit(&self, bucket: BucketId, seq: u64) -> Result<Option<Commit>, CatalogError>;

    /// The commit with the highest sequence number among those of `bucket`
    /// timed at or before `time_unix_ms`.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if the stored row cannot be decoded.
    fn latest_commit_at_or_before(
        &self,
        bucket: BucketId,
        time_unix_ms: i64,
    ) -> Result<Option<Commit>, CatalogError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for good in ["a", "site-1", "x.y_z", &"a".repeat(63)] {
            assert!(validate_name("tenant.name", good).is_ok(), "{good}");
        }
        for bad in ["", "A", "a b", "a/b", "é", &"a".repeat(64)] {
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
