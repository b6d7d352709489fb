//! The blob index: which pack, in which pool, holds each copy of a blob
//! (per tenant and uploading site: see [`BlobOwner`]).
//!
//! These calls are not part of a unit of work: each is one transaction of
//! its own, and an engine may spread one over several connections (a long
//! reference check runs on both of SQLite's readers). Blob rows are never
//! deleted by them, which is what makes that safe.

use ferry_proto::BlobId;

use super::{BlobLocation, BlobOwner, CatalogError, PackEntry, PackRecord, SiteId, TenantId};

/// Bulk lookups and pack records.
pub trait BlobIndex {
    /// The ids in `ids` of which `owner` has no good copy (not marked bad:
    /// its own, one of [`super::SiteId::UNKNOWN`], or a verified one of any
    /// site of its tenant: see [`Self::mark_verified`]), in input order,
    /// each once. Unverified copies of other sites and copies of other
    /// tenants count as missing. Any number of ids may be asked at once.
    ///
    /// # Errors
    ///
    /// Storage errors only (an unknown owner has every id missing).
    fn missing_blobs(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<Vec<BlobId>, CatalogError>;

    /// Calls `visit` with every stored copy's owner and id, and whether it
    /// is verified, in no set order, from one consistent snapshot (a
    /// connection of its own: other calls do not wait for it).
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored id cannot be decoded.
    fn for_each_blob_id(
        &self,
        visit: &mut dyn FnMut(BlobOwner, &BlobId, bool),
    ) -> Result<(), CatalogError>;

    /// The location of one copy, for `owner`, of each of `ids` that it
    /// counts (as [`Self::missing_blobs`] does: its own, else one of
    /// [`super::SiteId::UNKNOWN`], else a verified one of another site;
    /// a good copy before one marked bad, which is still served: a mark is
    /// a site's word the hub cannot check, so it may cost uploads, never a
    /// restore), in input order, each once; ids it has no such copy of are
    /// left out.
    ///
    /// # Errors
    ///
    /// Storage errors, or `Corrupt` if a stored row cannot be decoded.
    fn blob_locations(
        &self,
        owner: BlobOwner,
        ids: &[BlobId],
    ) -> Result<Vec<BlobLocation>, CatalogError>;

    /// Records a pack and its blobs in one transaction. Each entry names
    /// whose copy it is. A copy (owner, id) already stored keeps its first
    /// location, unless it was marked bad ([`Self::mark_bad`]): then the new
    /// copy replaces it, unverified. A pack already recorded (same name, pool, size and
    /// hash) is kept and only its entries not yet stored are added: packs
    /// are named by content, so recording the same pack and entries again
    /// is a no-op. Returns how many blobs were newly stored.
    ///
    /// # Errors
    ///
    /// `Invalid` if the record is malformed or an entry lies outside the
    /// pack, `NotFound` for an unknown tenant or a site not of its tenant, `Conflict` if a pack of that
    /// name was recorded with different pool, size or hash. Nothing is
    /// recorded on error.
    fn record_pack(
        &self,
        pack: &PackRecord,
        entries: &[(BlobOwner, PackEntry)],
    ) -> Result<usize, CatalogError>;

    /// [`Self::record_pack`] for several packs, as few transactions as the
    /// engine likes (recovery records thousands of packs; one fsync each
    /// was most of its time on SQLite). Returns how many blobs were newly
    /// stored.
    ///
    /// # Errors
    ///
    /// As [`Self::record_pack`]; the packs before the failing one may be
    /// recorded.
    fn record_packs(
        &self,
        packs: &[(PackRecord, Vec<(BlobOwner, PackEntry)>)],
    ) -> Result<usize, CatalogError> {
        let mut stored = 0;
        for (pack, entries) in packs {
            stored += self.record_pack(pack, entries)?;
        }
        Ok(stored)
    }

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
    /// Storage errors only.
    fn packs_per_pool(&self) -> Result<Vec<(String, u64)>, CatalogError>;

    /// Marks as bad the copies of `ids` that [`Self::blob_locations`] gives
    /// `owner` (a key holder found their bytes do not open to their id):
    /// they are then missing for every lookup, so the owner's next backup
    /// that needs one uploads it again, and recording that copy replaces
    /// the bad one. A bad copy is still located, after any good one.
    /// Returns how many copies were marked; ids `owner` has no copy of are
    /// ignored.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn mark_bad(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<usize, CatalogError>;

    /// Marks verified the good copies among `copies` (id, and the site
    /// whose copy it is) of `tenant`: a key holder signed that they open to
    /// their ids, so from then on they count for every site of the tenant.
    /// The same site's copy of the session header each newly marked copy
    /// names is marked with it (the key holder opened the blob under it;
    /// another site's restore needs it). Returns how many of `copies` were
    /// newly marked; copies unknown, bad or verified already are ignored.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn mark_verified(
        &self,
        tenant: TenantId,
        copies: &[(BlobId, SiteId)],
    ) -> Result<usize, CatalogError>;
}

/// Checks a pack record before any engine stores it.
///
/// # Errors
///
/// `Invalid` naming the field: a name that is not the hex of the hash, a
/// bad pool name, a size past `i64`, an entry outside the pack.
pub(crate) fn check_pack_record(
    pack: &PackRecord,
    entries: &[(BlobOwner, PackEntry)],
) -> Result<i64, CatalogError> {
    if pack.name != hex::encode(pack.hash) {
        return Err(CatalogError::Invalid {
            field: "pack.name",
            reason: format!("{:?} is not the hex of the pack hash", pack.name),
        });
    }
    super::validate_name("pack.pool", &pack.pool)?;
    let size = super::error::to_i64("pack.size", pack.size)?;
    for (_, e) in entries {
        if e.offset
            .checked_add(u64::from(e.length))
            .is_none_or(|end| end > pack.size)
        {
            return Err(CatalogError::Invalid {
                field: "pack entry",
                reason: format!(
                    "blob {} at {}+{} lies outside pack {} of {} bytes",
                    e.id, e.offset, e.length, pack.name, pack.size
                ),
            });
        }
    }
    Ok(size)
}

/// Checks that every owner's site (but [`SiteId::UNKNOWN`]) is one of
/// `site_tenants` and of the owner's tenant.
///
/// # Errors
///
/// `NotFound` for a site that does not exist, `Invalid` for one of another
/// tenant.
pub(crate) fn check_owners(
    owners: &std::collections::BTreeSet<BlobOwner>,
    site_tenants: &[(SiteId, TenantId)],
) -> Result<(), CatalogError> {
    for owner in owners.iter().filter(|o| o.site != SiteId::UNKNOWN) {
        match site_tenants.iter().find(|(site, _)| *site == owner.site) {
            None => {
                return Err(CatalogError::NotFound {
                    what: "site",
                    key: owner.site.to_string(),
                });
            }
            Some((_, tenant)) if *tenant != owner.tenant => {
                return Err(CatalogError::Invalid {
                    field: "pack entry",
                    reason: format!(
                        "site {} is not of tenant {}, whose blob copy it would own",
                        owner.site, owner.tenant
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A pack row decoded.
pub(crate) fn pack_record(
    name: String,
    pool: String,
    size: i64,
    hash: &[u8],
) -> Result<PackRecord, CatalogError> {
    Ok(PackRecord {
        hash: <[u8; 32]>::try_from(hash).map_err(|_| CatalogError::Corrupt {
            what: "packs.hash",
            detail: format!("pack {name}: {} bytes, expected 32", hash.len()),
        })?,
        size: super::error::from_i64("packs.size", size)?,
        name,
        pool,
    })
}

/// Refuses to record `pack` over a pack of the same name recorded with
/// another pool, size or hash.
///
/// # Errors
///
/// `Conflict` naming the pack.
pub(crate) fn check_same_pack(
    pack: &PackRecord,
    pool: &str,
    size: i64,
    hash: &[u8],
) -> Result<(), CatalogError> {
    let same =
        pool == pack.pool && u64::try_from(size).ok() == Some(pack.size) && hash == pack.hash;
    match same {
        true => Ok(()),
        false => Err(CatalogError::Conflict {
            what: "pack",
            key: pack.name.clone(),
            reason: format!(
                "already recorded in pool {pool:?} with {size} bytes; now {:?} with {} bytes",
                pack.pool, pack.size
            ),
        }),
    }
}
