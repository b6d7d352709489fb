//! Pass three: every bucket's journal, from its segments.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::references;
use super::{Affected, RecoverError, Report, blocking, list_all};
use crate::blobstore::Pools;
use crate::catalog::{BlobOwner, BucketId, Catalog, CatalogExt, NewCommit, SiteId, TenantId};
use crate::records::Segment;
use crate::records::segment::{PREFIX, parse_name};

/// The segments of one bucket, by sequence number, each number with every
/// (pool, object) found for it.
type Candidates = BTreeMap<u64, Vec<(String, String)>>;

/// A bucket as the catalog knows it.
struct Target {
    tenant: TenantId,
    bucket: BucketId,
    sites: HashMap<String, SiteId>,
}

pub(super) async fn restore(
    catalog: &Arc<dyn Catalog>,
    pools: &Pools,
    report: &mut Report,
) -> Result<(), RecoverError> {
    let mut buckets: BTreeMap<(String, String), Candidates> = BTreeMap::new();
    for (pool, object) in list_all(pools, PREFIX).await? {
        match parse_name(&object) {
            Some((tenant, bucket, seq)) => buckets
                .entry((tenant.to_owned(), bucket.to_owned()))
                .or_default()
                .entry(seq)
                .or_default()
                .push((pool, object)),
            None => report.damaged(&pool, &object, "not a journal segment's name"),
        }
    }
    for ((tenant, bucket), segments) in buckets {
        let Some(target) = target(catalog, &tenant, &bucket).await? else {
            for (pool, object) in segments.values().flatten() {
                report.damaged(
                    pool,
                    object,
                    format!("bucket {tenant}/{bucket} is in no namespace record"),
                );
            }
            continue;
        };
        let name = format!("{tenant}/{bucket}");
        let numbers: Vec<u64> = segments.keys().copied().collect();
        for seq in numbers {
            let found = segments.get(&seq).cloned().unwrap_or_default();
            // Of several segments of one number, the one the next commit
            // names as its parent committed; only then are the next
            // number's segments read ahead.
            let named = match (found.len() > 1, segments.get(&(seq + 1))) {
                (true, Some(next)) => parents_named(pools, next).await,
                _ => Vec::new(),
            };
            let chosen = choose(pools, &tenant, &bucket, seq, found, &named, report).await;
            let Some(segment) = chosen else {
                report.affected.push(Affected {
                    bucket: name.clone(),
                    seq,
                    problem: "no readable segment: the commit is lost".to_owned(),
                });
                continue;
            };
            let Some(&site) = target.sites.get(&segment.site) else {
                report.affected.push(Affected {
                    bucket: name.clone(),
                    seq,
                    problem: format!("site {:?} is in no namespace record", segment.site),
                });
                continue;
            };
            let commit = NewCommit {
                site,
                time_unix_ms: segment.time_unix_ms,
                kind: segment.kind,
                manifest: segment.manifest.clone(),
                body: segment.body.clone(),
                files: segment.files,
                bytes: segment.bytes,
                seq: None,
                mac: segment.mac,
            };
            let bucket_id = target.bucket;
            // The committing site's own copies, as the commit was checked.
            // Its references are indexed before the commit is put back, so
            // a run cut short never leaves a commit its readers cannot read.
            let owner = BlobOwner {
                tenant: target.tenant,
                site,
            };
            let problem = index_and_check(catalog, pools, owner, bucket_id, &segment).await?;
            let added = blocking(catalog, move |c| {
                c.write(|w| w.restore_commit(bucket_id, seq, &commit))
            })
            .await?;
            match added {
                true => report.commits_added += 1,
                false => report.commits_present += 1,
            }
            if let Some(problem) = problem {
                report.affected.push(Affected {
                    bucket: name.clone(),
                    seq,
                    problem,
                });
            }
        }
    }
    Ok(())
}

/// The catalog's ids for bucket `tenant/bucket` and its tenant's sites.
async fn target(
    catalog: &Arc<dyn Catalog>,
    tenant: &str,
    bucket: &str,
) -> Result<Option<Target>, RecoverError> {
    let (tenant, bucket) = (tenant.to_owned(), bucket.to_owned());
    blocking(catalog, move |c| {
        c.read(|r| {
            let Some(t) = r.tenant_by_name(&tenant)? else {
                return Ok(None);
            };
            let Some(b) = r.bucket_by_name(t.id, &bucket)? else {
                return Ok(None);
            };
            let sites = r
                .list_sites(t.id)?
                .into_iter()
                .map(|s| (s.name, s.id))
                .collect();
            Ok(Some(Target {
                tenant: t.id,
                bucket: b.id,
                sites,
            }))
        })
    })
    .await
}

/// The parent MACs the segments `found` (of one number) name.
async fn parents_named(pools: &Pools, found: &[(String, String)]) -> Vec<[u8; 32]> {
    let mut named = Vec::new();
    for (pool, object) in found {
        let Some(store) = pools.get(pool) else {
            continue;
        };
        if let Ok(bytes) = store.get(object).await
            && let Ok(segment) = Segment::decode(&bytes)
            && let Some(parent) = segment.parent_mac
        {
            named.push(parent);
        }
    }
    named
}

/// Of the segments found for one number, the one that committed (see
/// [`crate::records::segment`]): one whose MAC is among `named` (the parents
/// the next number's segments name), else the latest. The others are
/// counted as superseded; unreadable ones are reported.
async fn choose(
    pools: &Pools,
    tenant: &str,
    bucket: &str,
    seq: u64,
    found: Vec<(String, String)>,
    named: &[[u8; 32]],
    report: &mut Report,
) -> Option<Segment> {
    let mut best: Option<(Segment, String)> = None;
    let mut readable: usize = 0;
    for (pool, object) in found {
        let Some(store) = pools.get(&pool) else {
            continue;
        };
        let segment = match store.get(&object).await {
            Ok(bytes) => match Segment::decode(&bytes) {
                Ok(s) if s.tenant == tenant && s.bucket == bucket && s.seq == seq => s,
                Ok(s) => {
                    report.damaged(
                        &pool,
                        &object,
                        format!(
                            "holds commit {}/{} #{} under another name",
                            s.tenant, s.bucket, s.seq
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    report.damaged(&pool, &object, e);
                    continue;
                }
            },
            Err(e) => {
                report.damaged(&pool, &object, e);
                continue;
            }
        };
        readable += 1;
        // Named by the next commit first, then the latest written.
        let rank = |s: &Segment| s.mac.is_some_and(|m| named.contains(&m));
        let better = best.as_ref().is_none_or(|(b, name)| {
            (rank(&segment), segment.time_unix_ms, &object) > (rank(b), b.time_unix_ms, name)
        });
        if better {
            best = Some((segment, object));
        }
    }
    report.superseded_segments += readable.saturating_sub(1);
    best.map(|(s, _)| s)
}

/// Indexes the chunks a commit reaches as the bucket's references, and says
/// what of them the recovered blob index lacks, if anything: reference
/// parts are read one at a time, so memory stays at one part however large
/// the commit.
async fn index_and_check(
    catalog: &Arc<dyn Catalog>,
    pools: &Pools,
    owner: BlobOwner,
    bucket: BucketId,
    segment: &Segment,
) -> Result<Option<String>, RecoverError> {
    let (mut missing, mut lost_parts) = (0, Vec::new());
    let mut lists = references::Lists::of(segment);
    while let Some(list) = lists.next(pools).await {
        match list {
            Ok(ids) => missing += references::index(catalog, bucket, ids, Some(owner)).await?,
            Err(part) => lost_parts.push(part),
        }
    }
    Ok(match (missing, lost_parts.is_empty()) {
        (0, true) => None,
        (n, true) => Some(format!("{n} referenced chunks are in no readable pack")),
        (n, false) => Some(format!(
            "{n} referenced chunks are in no readable pack, and reference parts {} are unreadable",
            lost_parts.join(", ")
        )),
    })
}
