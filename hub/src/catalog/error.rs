//! The catalog's own errors: no engine type (SQLite, PostgreSQL) appears in
//! them, so callers branch on [`CatalogError::kind`], never on a message.

use ferry_proto::BlobId;

/// A boxed engine error, kept as the source for logs.
pub type EngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("open catalog {target}: {source}")]
    Open {
        /// The file or server (never its password).
        target: String,
        #[source]
        source: EngineError,
    },
    /// The engine failed or could not be reached; the operation may succeed
    /// when retried.
    #[error("catalog: {op}: {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: EngineError,
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

/// What kind of failure a [`CatalogError`] is: what callers branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The name or key is taken.
    AlreadyExists,
    /// The request contradicts what is stored (a closed session, a pack
    /// recorded differently, a commit referencing blobs that are not stored).
    Conflict,
    /// The request is malformed; retrying it cannot succeed.
    Invalid,
    /// The engine failed or cannot be reached; retrying may succeed.
    Unavailable,
    /// Stored data cannot be decoded, or the schema is not one this hub knows.
    Corrupt,
}

impl CatalogError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Open { .. } | Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } | Self::MissingBlobs { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Corrupt { .. } | Self::SchemaTooNew { .. } => ErrorKind::Corrupt,
        }
    }

    /// True if the error says something does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// An engine failure during `op`.
    pub fn unavailable(op: &'static str, source: impl Into<EngineError>) -> Self {
        Self::Unavailable {
            op,
            source: source.into(),
        }
    }
}

/// Converts a count to the engines' signed 64-bit integer.
///
/// # Errors
///
/// `Invalid` naming `field` if it does not fit.
pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::Invalid {
        field,
        reason: format!("{value} exceeds the catalog's limit of {}", i64::MAX),
    })
}

/// Converts a stored integer back, naming the column if it is out of range.
///
/// # Errors
///
/// `Corrupt` naming `what`.
pub fn from_i64<T: TryFrom<i64>>(what: &'static str, value: i64) -> Result<T, CatalogError> {
    T::try_from(value).map_err(|_| CatalogError::Corrupt {
        what,
        detail: format!("stored value {value} out of range"),
    })
}

/// A stored 32-byte id.
///
/// # Errors
///
/// `Corrupt` naming `what` if it is not 32 bytes.
pub(crate) fn stored_id(what: &'static str, bytes: &[u8]) -> Result<BlobId, CatalogError> {
    BlobId::from_slice(what, bytes).map_err(|e| CatalogError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Ids stored back to back, 32 bytes each (a commit's manifest).
///
/// # Errors
///
/// `Corrupt` naming `what` if the bytes are not whole ids.
pub fn stored_ids(what: &'static str, bytes: &[u8]) -> Result<Vec<BlobId>, CatalogError> {
    let chunks = bytes.chunks_exact(ferry_proto::ID_LEN);
    if !chunks.remainder().is_empty() {
        return Err(CatalogError::Corrupt {
            what,
            detail: format!("{} bytes is not a whole number of ids", bytes.len()),
        });
    }
    chunks.map(|c| stored_id(what, c)).collect()
}

/// The stored form of a list of ids: 32 bytes each, back to back.
pub(crate) fn ids_bytes(ids: &[BlobId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// The migrations still to run on a schema at version `found`, of
/// `migrations` known: every engine's migration runner asks this.
///
/// # Errors
///
/// `SchemaTooNew` if a newer hub wrote the schema, `Corrupt` for a negative
/// version.
pub(crate) fn pending_migrations<'m>(
    found: i64,
    migrations: &'m [&'m str],
) -> Result<&'m [&'m str], CatalogError> {
    let supported = migrations.len() as i64;
    if found > supported {
        return Err(CatalogError::SchemaTooNew { found, supported });
    }
    let from = usize::try_from(found).map_err(|_| CatalogError::Corrupt {
        what: "schema_version",
        detail: format!("negative version {found}"),
    })?;
    Ok(&migrations[from..])
}

/// `Ok` if an update by key changed a row, else NotFound naming `what`
/// and `key`.
pub(crate) fn found_one(
    changed: u64,
    what: &'static str,
    key: impl std::fmt::Display,
) -> Result<(), CatalogError> {
    match changed {
        0 => Err(CatalogError::NotFound {
            what,
            key: key.to_string(),
        }),
        _ => Ok(()),
    }
}
