//! Each bucket's reference index (see `catalog::references`) read back from
//! its journal segments: by `recover` as it restores each commit, and at
//! start for buckets whose commits are older than the index.

use std::sync::Arc;

use ferry_proto::BlobId;

use super::{RecoverError, blocking, list_all};
use crate::blobstore::Pools;
use crate::catalog::{BlobOwner, BucketId, Catalog, CatalogExt};
use crate::records::segment::{PREFIX, parse_name};
use crate::records::{Segment, refs};

/// Ids written to (or asked of) the catalog at once.
const CHECK_IDS: usize = 10_000;

/// The lists of ids a segment references, in turn: manifest, inline
/// references, then each reference part as read from the pools, one at a
/// time so memory stays at one part however large the commit.
pub(super) struct Lists<'a> {
    segment: &'a Segment,
    next: usize,
}

impl<'a> Lists<'a> {
    pub(super) fn of(segment: &'a Segment) -> Self {
        Self { segment, next: 0 }
    }

    /// The next list, `Err` with its hash for a part no pool holds
    /// readable, `None` after the last.
    pub(super) async fn next(&mut self, pools: &Pools) -> Option<Result<Vec<BlobId>, String>> {
        let at = self.next;
        self.next += 1;
        match at {
            0 => Some(Ok(self.segment.manifest.clone())),
            1 => Some(Ok(self.segment.references.clone())),
            n => {
                let hash = self.segment.reference_parts.get(n - 2)?;
                Some(
                    read_part(pools, &self.segment.tenant, hash)
                        .await
                        .ok_or_else(|| hex::encode(hash)),
                )
            }
        }
    }
}

/// Records `ids` as `bucket`'s references and, given an `owner`, counts
/// those of them its copies lack.
pub(super) async fn index(
    catalog: &Arc<dyn Catalog>,
    bucket: BucketId,
    ids: Vec<BlobId>,
    owner: Option<BlobOwner>,
) -> Result<usize, RecoverError> {
    if ids.is_empty() {
        return Ok(0);
    }
    blocking(catalog, move |c| {
        let mut missing = 0;
        for part in ids.chunks(CHECK_IDS) {
            c.write(|w| w.add_references(bucket, part))?;
            if let Some(owner) = owner {
                missing += c.missing_blobs(owner, part)?.len();
            }
        }
        Ok(missing)
    })
    .await
}

/// A reference part from whichever pool holds it readable.
async fn read_part(pools: &Pools, tenant: &str, hash: &[u8; 32]) -> Option<Vec<BlobId>> {
    let object = refs::object_name(tenant, hash);
    for (pool, store) in pools.newest_first() {
        match store.get(&object).await {
            Ok(bytes) => match refs::decode(hash, &bytes) {
                Ok(ids) => return Some(ids),
                Err(e) => tracing::warn!(pool, object, error = %e, "damaged reference part"),
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(pool, object, error = %e, "reading reference part"),
        }
    }
    None
}

/// What [`backfill_references`] did.
#[derive(Debug, Default)]
pub struct Backfill {
    /// Buckets now indexed.
    pub indexed: usize,
    /// Buckets left unindexed (so their reads stay unlimited) because a
    /// segment or reference part of theirs could not be read; the next
    /// start tries again.
    pub left: Vec<String>,
}

/// Indexes the references of every bucket whose commits are older than the
/// index, from the bucket's segments, then marks it indexed. Segments of a
/// number that did not commit are indexed too: their ids are the source
/// site's declared references all the same. Read-only on the pools.
///
/// # Errors
///
/// A pool that cannot be listed or a catalog that fails.
pub async fn backfill_references(
    catalog: Arc<dyn Catalog>,
    pools: &Pools,
) -> Result<Backfill, RecoverError> {
    let mut done = Backfill::default();
    for bucket in blocking(&catalog, |c| c.read(|r| r.unindexed_buckets())).await? {
        let names = blocking(&catalog, move |c| {
            c.read(|r| {
                let Some(b) = r.bucket(bucket)? else {
                    return Ok(None);
                };
                Ok(r.tenant(b.tenant)?.map(|t| (t.name, b.name)))
            })
        })
        .await?;
        let Some((tenant, name)) = names else {
            continue;
        };
        let prefix = format!("{PREFIX}{tenant}/{name}/");
        let mut whole = true;
        for (pool, object) in list_all(pools, &prefix).await? {
            let segment = match pools.get(&pool) {
                Some(store) => store.get(&object).await.ok().and_then(|bytes| {
                    Segment::decode(&bytes)
                        .ok()
                        .filter(|s| parse_name(&object) == Some((&s.tenant, &s.bucket, s.seq)))
                }),
                None => None,
            };
            let Some(segment) = segment else {
                tracing::warn!(pool, object, "reference backfill: unreadable segment");
                whole = false;
                continue;
            };
            let mut lists = Lists::of(&segment);
            while let Some(list) = lists.next(pools).await {
                match list {
                    Ok(ids) => {
                        index(&catalog, bucket, ids, None).await?;
                    }
                    Err(_) => whole = false,
                }
            }
        }
        match whole {
            true => {
                blocking(&catalog, move |c| {
                    c.write(|w| w.mark_references_indexed(bucket))
                })
                .await?;
                done.indexed += 1;
            }
            false => done.left.push(format!("{tenant}/{name}")),
        }
    }
    Ok(done)
}
