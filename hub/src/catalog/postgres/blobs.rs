//! The blob index in PostgreSQL. Lookups go by batches of ids in one
//! `= ANY($2)` query each, and a pack's rows go in as one `UNNEST` insert:
//! a round trip per batch, not per blob.

use std::collections::{BTreeSet, HashMap, HashSet};

use ferry_proto::{BlobId, BlobKind};
use postgres::GenericClient;

use super::{PostgresCatalog, pg};
use crate::catalog::blobs::{check_owners, check_pack_record, check_same_pack, pack_record};
use crate::catalog::error::{from_i64, stored_id, to_i64};
use crate::catalog::{
    BlobIndex, BlobLocation, BlobOwner, CatalogError, PackEntry, PackRecord, SiteId, TenantId,
};

/// Ids per lookup query.
pub(super) const BATCH: usize = 5000;
/// Rows fetched at a time when every blob id is listed.
const LIST_ROWS: i32 = 10_000;

/// The ids among `ids` of which `owner` has no copy it counts, in order,
/// each once.
pub(super) fn missing_ids(
    client: &mut impl GenericClient,
    owner: BlobOwner,
    ids: &[BlobId],
) -> Result<Vec<BlobId>, CatalogError> {
    let mut found: HashSet<BlobId> = HashSet::new();
    for batch in ids.chunks(BATCH) {
        let asked: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
        let rows = client
            .query(
                "SELECT id FROM blobs \
                 WHERE tenant_id = $1 AND id = ANY($2) AND NOT bad \
                   AND (site_id IN ($3, $4) OR verified)",
                &[&owner.tenant.0, &asked, &owner.site.0, &SiteId::UNKNOWN.0],
            )
            .map_err(pg("look up blobs"))?;
        for row in rows {
            let raw: &[u8] = row.try_get(0).map_err(pg("read blob id"))?;
            found.insert(stored_id("blobs.id", raw)?);
        }
    }
    let mut seen = HashSet::new();
    Ok(ids
        .iter()
        .filter(|id| !found.contains(id) && seen.insert(**id))
        .copied()
        .collect())
}

fn location_row(row: &postgres::Row) -> Result<BlobLocation, CatalogError> {
    let read = |source| CatalogError::unavailable("read blob location", source);
    let raw_id: &[u8] = row.try_get(0).map_err(read)?;
    let kind: i16 = row.try_get(1).map_err(read)?;
    let flags: i16 = row.try_get(2).map_err(read)?;
    let header: &[u8] = row.try_get(3).map_err(read)?;
    let pool: String = row.try_get(4).map_err(read)?;
    let pack: String = row.try_get(5).map_err(read)?;
    let offset: i64 = row.try_get(6).map_err(read)?;
    let length: i64 = row.try_get(7).map_err(read)?;
    let site: i64 = row.try_get(8).map_err(read)?;
    let verified: bool = row.try_get(9).map_err(read)?;
    let id = stored_id("blobs.id", raw_id)?;
    let kind = from_i64::<u8>("blobs.kind", i64::from(kind))?;
    Ok(BlobLocation {
        id,
        kind: BlobKind::from_u8(kind).ok_or_else(|| CatalogError::Corrupt {
            what: "blobs.kind",
            detail: format!("unknown kind {kind} for blob {id}"),
        })?,
        flags: from_i64("blobs.flags", i64::from(flags))?,
        header_id: stored_id("headers.header_id", header)?,
        pool,
        pack,
        offset: from_i64("blobs.pack_offset", offset)?,
        length: from_i64("blobs.length", length)?,
        site: SiteId(site),
        verified,
    })
}

/// Rows of one pack's blobs, column by column, for one `UNNEST` insert.
#[derive(Default)]
struct BlobColumns<'a> {
    tenant: Vec<i64>,
    site: Vec<i64>,
    id: Vec<&'a [u8]>,
    kind: Vec<i16>,
    flags: Vec<i16>,
    header: Vec<i64>,
    pack: Vec<i64>,
    offset: Vec<i64>,
    length: Vec<i64>,
}

impl BlobIndex for PostgresCatalog {
    fn missing_blobs(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<Vec<BlobId>, CatalogError> {
        self.with_retries(|client| missing_ids(client, owner, ids))
    }

    fn for_each_blob_id(
        &self,
        visit: &mut dyn FnMut(BlobOwner, &BlobId, bool),
    ) -> Result<(), CatalogError> {
        // A connection of its own, read through a portal a slice at a
        // time, so memory stays flat however many blobs there are.
        let mut client = self.open_client()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg("begin read transaction"))?;
        let portal = tx
            .bind("SELECT tenant_id, site_id, id, verified FROM blobs", &[])
            .map_err(pg("list blob ids"))?;
        loop {
            let rows = tx
                .query_portal(&portal, LIST_ROWS)
                .map_err(pg("list blob ids"))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let tenant: i64 = row.try_get(0).map_err(pg("read blob tenant"))?;
                let site: i64 = row.try_get(1).map_err(pg("read blob site"))?;
                let raw: &[u8] = row.try_get(2).map_err(pg("read blob id"))?;
                let verified: bool = row.try_get(3).map_err(pg("read blob verified"))?;
                let owner = BlobOwner {
                    tenant: TenantId(tenant),
                    site: SiteId(site),
                };
                visit(owner, &stored_id("blobs.id", raw)?, verified);
            }
        }
        tx.commit().map_err(pg("end read transaction"))
    }

    fn blob_locations(
        &self,
        owner: BlobOwner,
        ids: &[BlobId],
    ) -> Result<Vec<BlobLocation>, CatalogError> {
        self.with_retries(|client| {
            let mut found = HashMap::with_capacity(ids.len());
            for batch in ids.chunks(BATCH) {
                let asked: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
                let rows = client
                    .query(
                        "SELECT b.id, b.kind, b.flags, h.header_id, p.pool, p.name, b.pack_offset, b.length, \
                           b.site_id, b.verified \
                         FROM blobs b JOIN packs p ON p.id = b.pack_id JOIN headers h ON h.id = b.header \
                         WHERE b.tenant_id = $1 AND b.id = ANY($2) AND (b.site_id IN ($3, $4) OR b.verified) \
                         ORDER BY b.bad, b.site_id <> $3, b.site_id <> $4",
                        &[&owner.tenant.0, &asked, &owner.site.0, &SiteId::UNKNOWN.0],
                    )
                    .map_err(pg("look up blob locations"))?;
                // A good copy before a bad one; the owner's own first, then
                // one of no known site, then a verified one of another
                // site: the first row of each id is kept.
                for row in &rows {
                    let loc = location_row(row)?;
                    found.entry(loc.id).or_insert(loc);
                }
            }
            // Input order, each id once: remove as we go.
            Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
        })
    }

    fn record_pack(
        &self,
        pack: &PackRecord,
        entries: &[(BlobOwner, PackEntry)],
    ) -> Result<usize, CatalogError> {
        let size = check_pack_record(pack, entries)?;
        let owners: BTreeSet<BlobOwner> = entries.iter().map(|(o, _)| *o).collect();
        let tenants: Vec<i64> = owners
            .iter()
            .map(|o| o.tenant.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sites: Vec<i64> = owners
            .iter()
            .filter(|o| o.site != SiteId::UNKNOWN)
            .map(|o| o.site.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // In key order (stable, so a repeated copy keeps its first entry):
        // the index inserts then walk the B-tree in one direction.
        let mut in_key_order: Vec<&(BlobOwner, PackEntry)> = entries.iter().collect();
        in_key_order.sort_by_key(|(o, e)| (o.tenant.0, e.id.0, o.site.0));
        self.with_retries(|client| {
            let mut tx = client.transaction().map_err(pg("begin write transaction"))?;
            let known: Vec<i64> = tx
                .query("SELECT id FROM tenants WHERE id = ANY($1)", &[&tenants])
                .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
                .map_err(pg("look up tenants"))?;
            if let Some(absent) = tenants.iter().find(|t| !known.contains(t)) {
                return Err(CatalogError::NotFound {
                    what: "tenant",
                    key: absent.to_string(),
                });
            }
            let site_tenants: Vec<(SiteId, TenantId)> = tx
                .query("SELECT id, tenant_id FROM sites WHERE id = ANY($1)", &[&sites])
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| Ok((SiteId(r.try_get(0)?), TenantId(r.try_get(1)?))))
                        .collect()
                })
                .map_err(pg("look up sites"))?;
            check_owners(&owners, &site_tenants)?;
            let inserted = tx
                .query_opt(
                    "INSERT INTO packs (name, pool, size, hash) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[&pack.name, &pack.pool, &size, &&pack.hash[..]],
                )
                .map_err(pg("insert pack"))?;
            let pack_id: i64 = match inserted {
                Some(row) => row.try_get(0).map_err(pg("insert pack"))?,
                None => {
                    let row = tx
                        .query_one(
                            "SELECT id, pool, size, hash FROM packs WHERE name = $1",
                            &[&pack.name],
                        )
                        .map_err(pg("look up pack"))?;
                    let read = |source| CatalogError::unavailable("read pack", source);
                    let (id, pool, stored_size, hash): (i64, String, i64, Vec<u8>) = (
                        row.try_get(0).map_err(read)?,
                        row.try_get(1).map_err(read)?,
                        row.try_get(2).map_err(read)?,
                        row.try_get(3).map_err(read)?,
                    );
                    check_same_pack(pack, &pool, stored_size, &hash)?;
                    id
                }
            };
            let mut headers: Vec<(BlobId, i64)> = Vec::new();
            let mut columns = BlobColumns::default();
            let mut last: Option<(BlobOwner, BlobId)> = None;
            for (owner, e) in &in_key_order {
                // One row per copy: a second proposal of a row in one
                // upsert is an error in PostgreSQL (sorted, so repeats
                // are adjacent; the first is kept).
                if last.replace((*owner, e.id)) == Some((*owner, e.id)) {
                    continue;
                }
                let header = match headers.iter().find(|(id, _)| *id == e.header_id) {
                    Some(&(_, number)) => number,
                    None => {
                        let number = header_number(&mut tx, &e.header_id)?;
                        headers.push((e.header_id, number));
                        number
                    }
                };
                columns.tenant.push(owner.tenant.0);
                columns.site.push(owner.site.0);
                columns.id.push(&e.id.0[..]);
                columns.kind.push(i16::from(e.kind as u8));
                columns.flags.push(i16::from(e.flags));
                columns.header.push(header);
                columns.pack.push(pack_id);
                columns.offset.push(to_i64("pack entry offset", e.offset)?);
                columns.length.push(i64::from(e.length));
            }
            let stored = tx
                .execute(
                    "INSERT INTO blobs (tenant_id, id, kind, flags, header, pack_id, pack_offset, length, site_id) \
                     SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::smallint[], $4::smallint[], \
                                          $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
                     ON CONFLICT (tenant_id, id, site_id) DO UPDATE SET \
                       kind = excluded.kind, flags = excluded.flags, header = excluded.header, \
                       pack_id = excluded.pack_id, pack_offset = excluded.pack_offset, \
                       length = excluded.length, bad = FALSE, verified = FALSE \
                     WHERE blobs.bad",
                    &[
                        &columns.tenant,
                        &columns.id,
                        &columns.kind,
                        &columns.flags,
                        &columns.header,
                        &columns.pack,
                        &columns.offset,
                        &columns.length,
                        &columns.site,
                    ],
                )
                .map_err(pg("insert blobs"))?;
            tx.commit().map_err(pg("commit pack"))?;
            from_i64("blobs inserted", i64::try_from(stored).unwrap_or(i64::MAX))
        })
    }

    fn list_packs(&self) -> Result<Vec<PackRecord>, CatalogError> {
        self.with_retries(|client| {
            let rows = client
                .query(
                    "SELECT name, pool, size, hash FROM packs ORDER BY name",
                    &[],
                )
                .map_err(pg("list packs"))?;
            rows.iter()
                .map(|r| {
                    let read = |source| CatalogError::unavailable("read pack", source);
                    let hash: &[u8] = r.try_get(3).map_err(read)?;
                    pack_record(
                        r.try_get(0).map_err(read)?,
                        r.try_get(1).map_err(read)?,
                        r.try_get(2).map_err(read)?,
                        hash,
                    )
                })
                .collect()
        })
    }

    fn mark_bad(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<usize, CatalogError> {
        self.with_retries(|client| {
            let mut tx = client.transaction().map_err(pg("begin write transaction"))?;
            let mut marked = 0;
            for batch in ids.chunks(BATCH) {
                let asked: Vec<&[u8]> = batch.iter().map(|id| &id.0[..]).collect();
                // The good copy blob_locations serves.
                let n = tx
                    .execute(
                        "UPDATE blobs b SET bad = TRUE FROM ( \
                           SELECT DISTINCT ON (id) id, site_id FROM blobs \
                           WHERE tenant_id = $1 AND id = ANY($2) AND NOT bad \
                             AND (site_id IN ($3, $4) OR verified) \
                           ORDER BY id, site_id <> $3, site_id <> $4 \
                         ) served \
                         WHERE b.tenant_id = $1 AND b.id = served.id AND b.site_id = served.site_id",
                        &[&owner.tenant.0, &asked, &owner.site.0, &SiteId::UNKNOWN.0],
                    )
                    .map_err(pg("mark blobs bad"))?;
                marked += usize::try_from(n).unwrap_or(usize::MAX);
            }
            tx.commit().map_err(pg("commit blob marks"))?;
            Ok(marked)
        })
    }

    fn mark_verified(
        &self,
        tenant: TenantId,
        copies: &[(BlobId, SiteId)],
    ) -> Result<usize, CatalogError> {
        self.with_retries(|client| {
            let mut tx = client
                .transaction()
                .map_err(pg("begin write transaction"))?;
            let mut marked = 0;
            for batch in copies.chunks(BATCH) {
                let ids: Vec<&[u8]> = batch.iter().map(|(id, _)| &id.0[..]).collect();
                let sites: Vec<i64> = batch.iter().map(|(_, site)| site.0).collect();
                let n = tx
                    .execute(
                        "UPDATE blobs b SET verified = TRUE \
                         FROM UNNEST($2::bytea[], $3::bigint[]) AS c(id, site_id) \
                         WHERE b.tenant_id = $1 AND b.id = c.id AND b.site_id = c.site_id \
                           AND NOT b.bad AND NOT b.verified",
                        &[&tenant.0, &ids, &sites],
                    )
                    .map_err(pg("mark blobs verified"))?;
                // The same site's copies of the session headers they opened
                // under: a restore at another site needs them too.
                tx.execute(
                    "UPDATE blobs hb SET verified = TRUE \
                     FROM UNNEST($2::bytea[], $3::bigint[]) AS c(id, site_id), blobs b, headers h \
                     WHERE b.tenant_id = $1 AND b.id = c.id AND b.site_id = c.site_id \
                       AND b.verified AND NOT b.bad AND h.id = b.header \
                       AND hb.tenant_id = $1 AND hb.id = h.header_id AND hb.site_id = b.site_id \
                       AND NOT hb.bad AND NOT hb.verified",
                    &[&tenant.0, &ids, &sites],
                )
                .map_err(pg("mark headers verified"))?;
                marked += usize::try_from(n).unwrap_or(usize::MAX);
            }
            tx.commit().map_err(pg("commit blob marks"))?;
            Ok(marked)
        })
    }

    fn packs_per_pool(&self) -> Result<Vec<(String, u64)>, CatalogError> {
        self.with_retries(|client| {
            let rows = client
                .query(
                    "SELECT pool, COUNT(*) FROM packs GROUP BY pool ORDER BY pool",
                    &[],
                )
                .map_err(pg("count packs per pool"))?;
            rows.iter()
                .map(|r| {
                    let pool: String = r.try_get(0).map_err(pg("count packs per pool"))?;
                    let n: i64 = r.try_get(1).map_err(pg("count packs per pool"))?;
                    Ok((pool, from_i64("packs count", n)?))
                })
                .collect()
        })
    }
}

/// The number of session header `id`, adding the header if it is new.
/// Read first and inserted without an update: an upsert that updates takes
/// the header's row lock until commit, and every pack of a session names the
/// same header, so its packs were recorded one at a time, each waiting out
/// the previous one's commit.
fn header_number(tx: &mut postgres::Transaction<'_>, id: &BlobId) -> Result<i64, CatalogError> {
    let select = |tx: &mut postgres::Transaction<'_>| {
        tx.query_opt("SELECT id FROM headers WHERE header_id = $1", &[&&id.0[..]])
            .and_then(|row| row.map(|r| r.try_get(0)).transpose())
            .map_err(pg("look up session header"))
    };
    if let Some(number) = select(tx)? {
        return Ok(number);
    }
    let inserted = tx
        .query_opt(
            "INSERT INTO headers (header_id) VALUES ($1) ON CONFLICT (header_id) DO NOTHING RETURNING id",
            &[&&id.0[..]],
        )
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(pg("record session header"))?;
    match inserted {
        Some(number) => Ok(number),
        // Another transaction added it meanwhile (the insert waited for its
        // commit): read committed, it is visible now.
        None => select(tx)?.ok_or_else(|| CatalogError::Corrupt {
            what: "headers",
            detail: format!("session header {id} neither inserted nor found"),
        }),
    }
}
