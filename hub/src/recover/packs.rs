//! Pass two: the blob index, from every pack's own index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{Options, RecoverError, Report, blocking, list_all};
use crate::blobstore::{BlobStore, Pools};
use crate::catalog::{BlobOwner, Catalog, CatalogExt, PackRecord, SiteId};
use crate::pack::{FOOTER_LEN, PackIndex, parse_footer, parse_pack, parse_pack_index_unverified};

/// Packs read at once: pools on S3 answer each read after a round trip.
const READS_AT_ONCE: usize = 8;
/// Packs, and blob entries, recorded in one catalog call: one
/// transaction (and fsync) for many packs, with memory bounded.
const BATCH_PACKS: usize = 256;
const BATCH_ENTRIES: usize = 100_000;
/// How much of a pack's end the first read takes: the index of a pack of
/// 16 MiB of small blobs fits.
const FIRST_TAIL: u64 = 256 << 10;

/// A pack read back: its record and its index.
struct Read {
    pool: String,
    object: String,
    record: PackRecord,
    index: PackIndex,
}

pub(super) async fn index(
    catalog: &Arc<dyn Catalog>,
    pools: &Pools,
    options: Options,
    skip: &HashSet<String>,
    report: &mut Report,
) -> Result<(), RecoverError> {
    let mut seen = HashSet::new();
    let mut queue = Vec::new();
    for (pool, object) in list_all(pools, "packs/").await? {
        let Some(name) = pack_name(&object) else {
            report.damaged(&pool, &object, "not a pack's name");
            continue;
        };
        // A pack copied to a second pool is indexed once, where first seen.
        if !skip.contains(name) && seen.insert(name.to_owned()) {
            queue.push((pool, object));
        }
    }
    let mut owners: HashMap<(String, Option<String>), BlobOwner> = HashMap::new();
    let (mut batch, mut names, mut batch_entries) = (Vec::new(), Vec::new(), 0);
    let mut reading = JoinSet::new();
    let mut queue = queue.into_iter();
    loop {
        while reading.len() < READS_AT_ONCE {
            let Some((pool, object)) = queue.next() else {
                break;
            };
            let Some(store) = pools.get(&pool).cloned() else {
                continue;
            };
            reading.spawn(async move {
                let read = read_pack(&*store, &pool, &object, options).await;
                (pool, object, read)
            });
        }
        let Some(done) = reading.join_next().await else {
            break;
        };
        let (pool, object, read) = done.map_err(|e| RecoverError::Task(e.to_string()))?;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                report.damaged(&pool, &object, e);
                continue;
            }
        };
        let (tenant, site) = (&read.index.tenant, &read.index.site);
        let Some(owner) = owner_of(catalog, &mut owners, tenant, site.as_deref()).await? else {
            report.damaged(
                &read.pool,
                &read.object,
                format!(
                    "pack of tenant {tenant:?} and site {site:?}, which no namespace record adds"
                ),
            );
            continue;
        };
        batch_entries += read.index.entries.len();
        let entries: Vec<_> = read.index.entries.iter().map(|e| (owner, *e)).collect();
        batch.push((read.record, entries));
        names.push((read.pool, read.object));
        if batch.len() >= BATCH_PACKS || batch_entries >= BATCH_ENTRIES {
            let (b, n) = (std::mem::take(&mut batch), std::mem::take(&mut names));
            record(catalog, b, n, report).await?;
            batch_entries = 0;
        }
    }
    record(catalog, batch, names, report).await
}

/// Packs read and waiting to be recorded, and where each was read.
type Pending = Vec<(PackRecord, Vec<(BlobOwner, crate::pack::PackEntry)>)>;

/// Records a batch of packs in one go; if one of them is refused, records
/// them one at a time so only that one is reported. The batch moves to the
/// blocking thread and back, never copied.
async fn record(
    catalog: &Arc<dyn Catalog>,
    batch: Pending,
    names: Vec<(String, String)>,
    report: &mut Report,
) -> Result<(), RecoverError> {
    if batch.is_empty() {
        return Ok(());
    }
    let (together, batch) = blocking(catalog, move |c| Ok((c.record_packs(&batch), batch))).await?;
    // A pack counts once it is recorded, not when it was read.
    match together {
        Ok(n) => {
            report.blobs_added += n as u64;
            report.packs += batch.len();
            report.pack_bytes += batch.iter().map(|(r, _)| r.size).sum::<u64>();
            return Ok(());
        }
        Err(e) if e.kind() == crate::catalog::ErrorKind::Conflict => {}
        Err(e) => return Err(e.into()),
    }
    for ((record, entries), (pool, object)) in batch.into_iter().zip(names) {
        let size = record.size;
        let added = blocking(catalog, move |c| c.record_pack(&record, &entries)).await;
        match added {
            Ok(n) => {
                report.blobs_added += n as u64;
                report.packs += 1;
                report.pack_bytes += size;
            }
            Err(RecoverError::Catalog(e)) if e.kind() == crate::catalog::ErrorKind::Conflict => {
                report.damaged(&pool, &object, format!("cannot index: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The pack name in an object name `packs/<fan>/<64 hex>.pack`.
fn pack_name(object: &str) -> Option<&str> {
    let rest = object.strip_prefix("packs/")?;
    let (fan, file) = rest.split_once('/')?;
    let name = file.strip_suffix(".pack")?;
    let hex_ok = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_ok && name.starts_with(fan) && fan.len() == 2).then_some(name)
}

/// Reads a pack's index from its tail (or, verifying, the whole pack).
async fn read_pack(
    store: &dyn BlobStore,
    pool: &str,
    object: &str,
    options: Options,
) -> Result<Read, String> {
    let name = pack_name(object).ok_or("not a pack's name")?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(name, &mut hash).map_err(|e| e.to_string())?;
    let size = store.size(object).await.map_err(|e| e.to_string())?;
    let index = if options.verify_packs {
        let bytes = store.get(object).await.map_err(|e| e.to_string())?;
        if blake3::hash(&bytes).as_bytes() != &hash {
            return Err("its bytes do not hash to its name (damaged)".to_owned());
        }
        parse_pack(&bytes).map_err(|e| e.to_string())?
    } else {
        let first = FIRST_TAIL.min(size);
        let mut tail = store
            .get_range(object, size - first, first)
            .await
            .map_err(|e| e.to_string())?;
        let footer_at = tail
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or_else(|| format!("pack is {size} bytes, too short for a footer"))?;
        let footer = parse_footer(&tail[footer_at..]).map_err(|e| e.to_string())?;
        if footer.tail_len() > first && footer.tail_len() <= size {
            tail = store
                .get_range(object, size - footer.tail_len(), footer.tail_len())
                .await
                .map_err(|e| e.to_string())?;
        }
        parse_pack_index_unverified(&tail, size).map_err(|e| e.to_string())?
    };
    Ok(Read {
        pool: pool.to_owned(),
        object: object.to_owned(),
        record: PackRecord {
            name: name.to_owned(),
            pool: pool.to_owned(),
            size,
            hash,
        },
        index,
    })
}

/// Whose copies a pack's blobs are: its tenant and site by name, if the
/// namespace pass made them; a first-version pack names no site, and its
/// copies are of [`SiteId::UNKNOWN`].
async fn owner_of(
    catalog: &Arc<dyn Catalog>,
    cache: &mut HashMap<(String, Option<String>), BlobOwner>,
    tenant: &str,
    site: Option<&str>,
) -> Result<Option<BlobOwner>, RecoverError> {
    let key = (tenant.to_owned(), site.map(str::to_owned));
    if let Some(owner) = cache.get(&key) {
        return Ok(Some(*owner));
    }
    let (tenant_name, site_name) = key.clone();
    let found = blocking(catalog, move |c| {
        c.read(|r| {
            let Some(tenant) = r.tenant_by_name(&tenant_name)? else {
                return Ok(None);
            };
            let Some(site_name) = site_name else {
                return Ok(Some(BlobOwner {
                    tenant: tenant.id,
                    site: SiteId::UNKNOWN,
                }));
            };
            let site = r
                .list_sites(tenant.id)?
                .into_iter()
                .find(|s| s.name == site_name);
            Ok(site.map(|s| BlobOwner {
                tenant: tenant.id,
                site: s.id,
            }))
        })
    })
    .await?;
    if let Some(owner) = found {
        cache.insert(key, owner);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pack_names_are_packs() {
        let name = "ab".to_owned() + &"0".repeat(62);
        assert_eq!(
            pack_name(&format!("packs/ab/{name}.pack")),
            Some(name.as_str())
        );
        for bad in [
            format!("packs/cd/{name}.pack"),
            format!("packs/ab/{name}.tmp"),
            "packs/ab/abc.pack".to_owned(),
            format!("packs/{name}.pack"),
        ] {
            assert_eq!(pack_name(&bad), None, "{bad}");
        }
    }
}
