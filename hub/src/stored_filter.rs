//! A Bloom filter over the (owner, blob id) pairs the catalog holds, asked
//! before the catalog is: an id the filter has never seen is surely not
//! stored, so the dedup query and the packer's re-check skip their SQLite
//! lookup for it. On a first backup nearly every id is new, and those two
//! lookups per blob were a fifth of the hub's CPU on 50,000 small files.
//!
//! A wrong "absent" can only make a blob be stored twice (the catalog keeps
//! the first copy; the other is garbage in its pack), never lose one, so
//! the filter is used only where that holds: never to check that a
//! snapshot's blobs exist. Blobs recorded by another process are not in it;
//! one of those is at worst uploaded again.

use std::sync::{PoisonError, RwLock};

use ferry_proto::BlobId;

use crate::catalog::{BlobOwner, Catalog, CatalogError, SiteId};

/// Filter bits per entry of its capacity; with [`PROBES`] probes a full
/// filter answers "maybe" for about 1.2 % of absent ids.
const BITS_PER_ENTRY: u64 = 10;
const PROBES: usize = 4;
/// The least capacity, and the headroom over the blobs stored at start.
/// Past its capacity the filter answers "maybe" more often (more lookups);
/// the next start sizes it anew.
const MIN_CAPACITY: u64 = 4 << 20;
const HEADROOM: u64 = 4;

/// What a dedup lookup may skip. Empty until [`StoredFilter::build`] ran:
/// then every id counts as possibly stored.
#[derive(Default)]
pub struct StoredFilter {
    state: RwLock<State>,
    /// One build at a time: a build started later (after rows were added
    /// behind the filter's back) must also be the one that ends last.
    building: std::sync::Mutex<()>,
}

#[derive(Default)]
enum State {
    /// Not built yet: ids recorded meanwhile wait here for the build.
    #[default]
    Unbuilt,
    Building(Vec<(BlobOwner, BlobId)>),
    Ready(Bits),
}

impl StoredFilter {
    /// Loads every stored id from `catalog`: one pass to count them, so the
    /// filter is sized before it is filled, and one to fill it (the ids are
    /// never held in memory). Ids recorded meanwhile are added at the end.
    ///
    /// # Errors
    ///
    /// The catalog's, if it cannot be read; the filter then stays unbuilt.
    pub fn build(&self, catalog: &dyn Catalog) -> Result<u64, CatalogError> {
        let _one_at_a_time = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        *self.write() = State::Building(Vec::new());
        let mut count = 0u64;
        let loaded = catalog
            .for_each_blob_id(&mut |_, _, _| count += 1)
            .and_then(|()| {
                let mut bits = Bits::with_capacity((count * HEADROOM).max(MIN_CAPACITY));
                catalog.for_each_blob_id(&mut |owner, id, verified| {
                    bits.insert(filed_under(owner, verified), id);
                })?;
                Ok(bits)
            });
        let mut state = self.write();
        let pending = match std::mem::take(&mut *state) {
            State::Building(pending) => pending,
            _ => Vec::new(),
        };
        let mut bits = loaded?;
        for (owner, id) in &pending {
            bits.insert(*owner, id);
        }
        *state = State::Ready(bits);
        Ok(count)
    }

    /// Notes copies just marked verified: present for every site of the
    /// tenant from now on.
    pub fn insert_verified<'a>(&self, owner: BlobOwner, ids: impl IntoIterator<Item = &'a BlobId>) {
        self.insert(filed_under(owner, true), ids);
    }

    /// Notes ids just recorded in the catalog.
    pub fn insert<'a>(&self, owner: BlobOwner, ids: impl IntoIterator<Item = &'a BlobId>) {
        match &mut *self.write() {
            State::Ready(bits) => ids.into_iter().for_each(|id| bits.insert(owner, id)),
            State::Building(pending) => pending.extend(ids.into_iter().map(|id| (owner, *id))),
            State::Unbuilt => {}
        }
    }

    /// Whether [`Self::build`] has finished.
    pub fn is_ready(&self) -> bool {
        matches!(
            &*self.state.read().unwrap_or_else(PoisonError::into_inner),
            State::Ready(_)
        )
    }

    /// True when `owner` surely has no copy of `id` (its own, one of
    /// [`SiteId::UNKNOWN`] or a verified one, as [`Catalog::missing_blobs`]
    /// counts).
    pub fn absent(&self, owner: BlobOwner, id: &BlobId) -> bool {
        let unknown = BlobOwner {
            site: SiteId::UNKNOWN,
            ..owner
        };
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Ready(bits) => !bits.contains(owner, id) && !bits.contains(unknown, id),
            _ => false,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for StoredFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Unbuilt => "unbuilt",
            State::Building(_) => "building",
            State::Ready(_) => "ready",
        };
        f.debug_struct("StoredFilter")
            .field("state", &state)
            .finish()
    }
}

/// [`Catalog::missing_blobs`] with the filter in front: the same answer
/// (input order, each id once), except that an id recorded where the filter
/// did not see it may be reported missing.
///
/// # Errors
///
/// The catalog's.
pub fn missing_blobs(
    catalog: &dyn Catalog,
    filter: &StoredFilter,
    owner: BlobOwner,
    ids: &[BlobId],
) -> Result<Vec<BlobId>, CatalogError> {
    let (absent, maybe): (Vec<BlobId>, Vec<BlobId>) =
        ids.iter().partition(|id| filter.absent(owner, id));
    if absent.is_empty() {
        return catalog.missing_blobs(owner, ids);
    }
    let mut missing: std::collections::HashSet<BlobId> = absent.into_iter().collect();
    missing.extend(catalog.missing_blobs(owner, &maybe)?);
    let mut seen = std::collections::HashSet::with_capacity(missing.len());
    Ok(ids
        .iter()
        .filter(|id| missing.contains(id) && seen.insert(**id))
        .copied()
        .collect())
}

/// The owner a copy is filed under: a verified copy counts for every site
/// of its tenant, as one of no known site does, so it goes in as that.
fn filed_under(owner: BlobOwner, verified: bool) -> BlobOwner {
    match verified {
        true => BlobOwner {
            site: SiteId::UNKNOWN,
            ..owner
        },
        false => owner,
    }
}

struct Bits {
    words: Vec<u64>,
    len: u64,
}

impl Bits {
    fn with_capacity(entries: u64) -> Self {
        let len = entries.saturating_mul(BITS_PER_ENTRY).max(64);
        Self {
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    /// Bit positions of a pair. Blob ids are keyed hashes, uniform already,
    /// so their four 64-bit words serve as the probes' hashes.
    fn positions(&self, owner: BlobOwner, id: &BlobId) -> [u64; PROBES] {
        let salt = (owner.tenant.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (owner.site.0 as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let mut out = [0; PROBES];
        for (slot, word) in out.iter_mut().zip(id.0.chunks_exact(8)) {
            let mut raw = [0; 8];
            raw.copy_from_slice(word);
            let h = u64::from_le_bytes(raw) ^ salt;
            // Multiply-shift maps h onto 0..len without a modulo.
            *slot = ((u128::from(h) * u128::from(self.len)) >> 64) as u64;
        }
        out
    }

    fn insert(&mut self, owner: BlobOwner, id: &BlobId) {
        for bit in self.positions(owner, id) {
            if let Some(word) = self.words.get_mut((bit / 64) as usize) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    fn contains(&self, owner: BlobOwner, id: &BlobId) -> bool {
        self.positions(owner, id).iter().all(|&bit| {
            self.words
                .get((bit / 64) as usize)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TenantId;

    fn owner(tenant: i64, site: i64) -> BlobOwner {
        BlobOwner {
            tenant: TenantId(tenant),
            site: SiteId(site),
        }
    }

    fn id(n: u64) -> BlobId {
        // Ids are keyed hashes in practice: spread the test ids the same way.
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn inserted_ids_are_never_absent_and_most_others_are() {
        let mut bits = Bits::with_capacity(10_000);
        let t = owner(1, 7);
        for n in 0..10_000 {
            bits.insert(t, &id(n));
        }
        assert!((0..10_000).all(|n| bits.contains(t, &id(n))));
        let false_maybes = (10_000..110_000)
            .filter(|&n| bits.contains(t, &id(n)))
            .count();
        // About 1.2 % at capacity; 3 % would mean the probes are not independent.
        assert!(
            false_maybes < 3_000,
            "{false_maybes} of 100,000 absent ids looked stored"
        );
        // Another tenant's or site's ids are not this owner's.
        for other_owner in [owner(2, 7), owner(1, 8)] {
            let other = (0..10_000)
                .filter(|&n| bits.contains(other_owner, &id(n)))
                .count();
            assert!(
                other < 300,
                "{other} of {t:?}'s ids looked stored for {other_owner:?}"
            );
        }
    }

    #[test]
    fn unbuilt_filter_knows_nothing_absent() {
        let filter = StoredFilter::default();
        filter.insert(owner(1, 7), &[id(1)]);
        assert!(!filter.absent(owner(1, 7), &id(2)));
    }

    /// A copy of no known site counts for every site of its tenant, as the
    /// catalog counts it.
    #[test]
    fn a_copy_of_no_known_site_is_present_for_every_site() {
        let filter = StoredFilter::default();
        *filter.write() = State::Ready(Bits::with_capacity(100));
        filter.insert(owner(1, 7), &[id(1)]);
        filter.insert(owner(1, SiteId::UNKNOWN.0), &[id(2)]);
        assert!(!filter.absent(owner(1, 7), &id(1)));
        assert!(filter.absent(owner(1, 8), &id(1)));
        assert!(!filter.absent(owner(1, 8), &id(2)));
        assert!(filter.absent(owner(2, 8), &id(2)));
    }
}
