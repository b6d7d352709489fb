//! Blob stores: the hub's storage pools.
//!
//! A [`BlobStore`] holds named, immutable objects (packs, journal segments).
//! Implementations: [`local::LocalDirStore`] (a directory) and
//! [`s3::S3Store`] (an S3 bucket). Every implementation must pass
//! [`conformance::run_all`]; [`pools::Pools`] holds a hub's pools by name.
//!
//! # Contract
//!
//! - Object names are validated by [`validate_name`]: `/`-separated
//!   components of `[a-z0-9._-]`, none empty and none starting with `.`, at
//!   most [`MAX_NAME_LEN`] bytes. Every store rejects other names with
//!   [`BlobStoreError::InvalidName`], so names behave the same on every backend.
//! - [`BlobStore::put`] is atomic and durable when it returns: a reader sees
//!   either no object or the whole object, and a crash after `put` returns
//!   loses nothing. Putting a name that exists replaces it (names are content
//!   hashes, so the bytes are the same); it is not an error.
//! - [`BlobStore::delete`] of a missing object succeeds, as on S3.
//! - Reads of a missing object fail with [`BlobStoreError::NotFound`].
//!
//! # Why boxed futures
//!
//! The hub holds its pools as `Arc<dyn BlobStore>` (one per pool, chosen at
//! run time). `async fn` in traits is not object-safe, so each method returns
//! a [`BoxFuture`] instead; implementations write `Box::pin(async move { .. })`.

pub mod conformance;
pub mod local;
pub mod pools;
pub mod s3;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use local::LocalDirStore;
pub use pools::Pools;
pub use s3::S3Store;

/// A boxed, sendable future: the return type of every [`BlobStore`] method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest object name accepted, in bytes (S3 allows 1024).
pub const MAX_NAME_LEN: usize = 1024;

/// A storage pool holding named immutable objects. See the module docs for
/// the contract every implementation keeps.
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `name`, atomically and durably.
    ///
    /// # Errors
    ///
    /// [`BlobStoreError::InvalidName`] for a bad name; [`BlobStoreError::Io`]
    /// or [`BlobStoreError::Backend`] if the write or its sync fails, in which
    /// case the object may or may not exist but is never partial.
    fn put<'a>(&'a self, name: &'a str, data: Vec<u8>)
    -> BoxFuture<'a, Result<(), BlobStoreError>>;

    /// Reads the whole object `name`.
    ///
    /// # Errors
    ///
    /// [`BlobStoreError::NotFound`] if it does not exist; `InvalidName`, `Io`
    /// or `Backend` otherwise.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>>;

    /// Reads exactly `len` bytes of object `name` starting at `offset`.
    ///
    /// # Errors
    ///
    /// [`BlobStoreError::OutOfRange`] if the object is shorter than
    /// `offset + len`; [`BlobStoreError::NotFound`] if it does not exist;
    /// `InvalidName`, `Io` or `Backend` otherwise.
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>>;

    /// Lists the names of all objects whose name starts with `prefix` (`""`
    /// lists everything), sorted.
    ///
    /// # Errors
    ///
    /// `Io` or `Backend` if the listing fails. A partial listing is never
    /// returned as success.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>>;

    /// Deletes object `name`; deleting a missing object succeeds.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `Io` or `Backend`.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>>;

    /// The size in bytes of object `name`.
    ///
    /// # Errors
    ///
    /// [`BlobStoreError::NotFound`] if it does not exist; `InvalidName`, `Io`
    /// or `Backend` otherwise.
    fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>>;
}

/// Why a blob store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    #[error("object {name:?} not found")]
    NotFound { name: String },
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object {name:?}: range {offset}+{len} is outside its {size} bytes")]
    OutOfRange {
        name: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// A failure of the backend itself (an S3 error, a failed blocking task).
    #[error("{op} {name:?}: {source}")]
    Backend {
        op: &'static str,
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BlobStoreError {
    /// True if the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Checks an object name against the rules every store enforces (see the
/// module docs). Components starting with `.` are reserved so stores can keep
/// temporary files beside objects without clashing with them.
///
/// # Errors
///
/// [`BlobStoreError::InvalidName`] saying which rule `name` breaks.
pub fn validate_name(name: &str) -> Result<(), BlobStoreError> {
    let invalid = |reason| {
        Err(BlobStoreError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 1024 bytes");
    }
    for component in name.split('/') {
        if component.is_empty() {
            return invalid("empty path component (leading, trailing or double '/')");
        }
        if component.starts_with('.') {
            return invalid("a path component starts with '.'");
        }
        if !component.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        }) {
            return invalid("characters outside [a-z0-9._-]");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for good in ["a", "packs/ab/abcd.pack", "x-y_z.1/2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "..",
            "a/../b",
            "./a",
            ".tmp",
            "a/.hidden",
            "A",
            "a b",
            "a\\b",
            "é",
            &long,
        ] {
            assert!(
                matches!(validate_name(bad), Err(BlobStoreError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
