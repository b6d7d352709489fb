//! Writes records to the newest pool, where new packs go too.

use std::sync::Arc;

use super::RecordError;
use crate::blobstore::{BlobStore, BlobStoreError, Pools};
use crate::catalog::CatalogError;

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("encode record: {0}")]
    Encode(#[from] RecordError),
    #[error("write {object} to pool {pool}: {source}")]
    Put {
        pool: String,
        object: String,
        #[source]
        source: BlobStoreError,
    },
}

impl From<WriteError> for CatalogError {
    /// A record written inside a catalog unit of work fails it: a pool that
    /// could not take the record is the same as a catalog that could not
    /// take the change (retryable); a record that cannot be encoded names
    /// its field.
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Encode(e) => CatalogError::Invalid {
                field: "record",
                reason: e.to_string(),
            },
            put @ WriteError::Put { .. } => {
                CatalogError::unavailable("write a record to the pool", put)
            }
        }
    }
}

impl From<RecordError> for CatalogError {
    /// A record encoded inside a catalog unit of work fails it as
    /// [`WriteError::Encode`] does.
    fn from(e: RecordError) -> Self {
        WriteError::Encode(e).into()
    }
}

/// The newest pool, as the place records go.
#[derive(Clone)]
pub struct RecordWriter {
    pool: String,
    store: Arc<dyn BlobStore>,
}

impl RecordWriter {
    /// Writes to the newest of `pools`.
    pub fn new(pools: &Pools) -> Self {
        let (pool, store) = pools.newest();
        Self {
            pool: pool.to_owned(),
            store: store.clone(),
        }
    }

    /// Stores `bytes` under `name`, durably.
    ///
    /// # Errors
    ///
    /// [`WriteError::Put`] naming the pool and object.
    pub async fn put(&self, name: String, bytes: Vec<u8>) -> Result<(), WriteError> {
        self.store
            .put(&name, bytes)
            .await
            .map_err(|source| WriteError::Put {
                pool: self.pool.clone(),
                object: name,
                source,
            })
    }

    /// [`Self::put`] from a thread outside the async runtime: inside a
    /// catalog unit of work, so the change commits only once its record is
    /// durable.
    ///
    /// # Errors
    ///
    /// As [`Self::put`], as the catalog error that rolls the unit back.
    pub fn put_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        (name, bytes): (String, Vec<u8>),
    ) -> Result<(), CatalogError> {
        Ok(runtime.block_on(self.put(name, bytes))?)
    }
}
