//! The hub's pools by name. New packs go to the newest pool; a pack is read
//! from the pool the catalog recorded for it, so adding a pool moves nothing.

use std::collections::HashMap;
use std::sync::Arc;

use super::BlobStore;

/// Every configured pool, and which one takes new packs.
pub struct Pools {
    by_name: HashMap<String, Arc<dyn BlobStore>>,
    newest: (String, Arc<dyn BlobStore>),
}

impl Pools {
    /// Pools in the order they were added; the last takes new writes.
    /// `None` if `pools` is empty or names one pool twice.
    pub fn new(pools: Vec<(String, Arc<dyn BlobStore>)>) -> Option<Self> {
        let newest = pools.last()?.clone();
        let count = pools.len();
        let by_name: HashMap<_, _> = pools.into_iter().collect();
        (by_name.len() == count).then_some(Self { by_name, newest })
    }

    /// A single pool.
    pub fn one(name: &str, store: Arc<dyn BlobStore>) -> Self {
        Self {
            by_name: HashMap::from([(name.to_owned(), store.clone())]),
            newest: (name.to_owned(), store),
        }
    }

    /// The pool named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn BlobStore>> {
        self.by_name.get(name)
    }

    /// The pool new packs go to.
    pub fn newest(&self) -> (&str, &Arc<dyn BlobStore>) {
        (&self.newest.0, &self.newest.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobstore::LocalDirStore;

    #[test]
    fn newest_takes_writes_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = |n: &str| -> Arc<dyn BlobStore> {
            Arc::new(LocalDirStore::open(dir.path().join(n)).unwrap())
        };
        let pools =
            Pools::new(vec![("old".into(), store("a")), ("new".into(), store("b"))]).unwrap();
        assert_eq!(pools.newest().0, "new");
        assert!(pools.get("old").is_some() && pools.get("gone").is_none());
        assert!(Pools::new(vec![("x".into(), store("a")), ("x".into(), store("b"))]).is_none());
        assert!(Pools::new(Vec::new()).is_none());
    }
}
