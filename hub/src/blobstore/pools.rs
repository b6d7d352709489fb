//! The hub's pools by name. New packs go to the newest pool; a pack is read
//! from the pool the catalog recorded for it, so adding a pool moves nothing.

use std::collections::HashMap;
use std::sync::Arc;

use super::BlobStore;

/// Every configured pool, and which one takes new packs.
pub struct Pools {
    /// In the order they were added; the last takes new writes.
    list: Vec<(String, Arc<dyn BlobStore>)>,
    by_name: HashMap<String, usize>,
}

impl Pools {
    /// Pools in the order they were added; the last takes new writes.
    /// `None` if `pools` is empty or names one pool twice.
    pub fn new(pools: Vec<(String, Arc<dyn BlobStore>)>) -> Option<Self> {
        let by_name: HashMap<_, _> = pools
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        (!pools.is_empty() && by_name.len() == pools.len()).then_some(Self {
            list: pools,
            by_name,
        })
    }

    /// A single pool.
    pub fn one(name: &str, store: Arc<dyn BlobStore>) -> Self {
        Self {
            list: vec![(name.to_owned(), store)],
            by_name: HashMap::from([(name.to_owned(), 0)]),
        }
    }

    /// The pool named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn BlobStore>> {
        self.by_name.get(name).map(|&i| &self.list[i].1)
    }

    /// The pool new packs go to.
    pub fn newest(&self) -> (&str, &Arc<dyn BlobStore>) {
        // `new` and `one` never make an empty list.
        let (name, store) = &self.list[self.list.len() - 1];
        (name, store)
    }

    /// Every pool, newest first (where a recent object most likely is).
    pub fn newest_first(&self) -> impl Iterator<Item = (&str, &Arc<dyn BlobStore>)> {
        self.list.iter().rev().map(|(n, s)| (n.as_str(), s))
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
        let order: Vec<_> = pools.newest_first().map(|(n, _)| n).collect();
        assert_eq!(order, ["new", "old"]);
        assert!(pools.get("old").is_some() && pools.get("gone").is_none());
        assert!(Pools::new(vec![("x".into(), store("a")), ("x".into(), store("b"))]).is_none());
        assert!(Pools::new(Vec::new()).is_none());
    }
}
