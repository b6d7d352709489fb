//! The blob index in SQLite: pack rows, blob rows keyed by (tenant, id,
//! site), and session headers by number.

use std::collections::{BTreeSet, HashMap, HashSet};

use ferry_proto::{BlobId, BlobKind};
use rusqlite::{Connection, OptionalExtension, params};

use super::namespace::tenant_exists;
use super::{SqliteCatalog, sql, write_tx};
use crate::catalog::blobs::{check_owners, check_pack_record, check_same_pack, pack_record};
use crate::catalog::error::{from_i64, stored_id, to_i64};
use crate::catalog::{
    BlobIndex, BlobLocation, BlobOwner, CatalogError, PackEntry, PackRecord, SiteId, TenantId,
};

/// A reference check of at least this many ids is split across the
/// readers: below it, a thread costs more than it saves.
const SPLIT_CHECK_FROM: usize = 8192;

/// The ids among `ids` of which `owner` has no copy it counts, in order,
/// each once. One lookup per id (of that id's few copies) that only asks
/// whether a row exists: a commit checks every id it references, nearly
/// all of them stored, so nothing is read, allocated or hashed for an id
/// that is found.
pub(super) fn missing_ids(
    conn: &Connection,
    owner: BlobOwner,
    ids: &[BlobId],
) -> Result<Vec<BlobId>, CatalogError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT 1 FROM blobs \
             WHERE tenant_id = ?1 AND id = ?2 AND bad = 0 \
               AND (site_id IN (?3, ?4) OR verified = 1)",
        )
        .map_err(sql("look up blobs"))?;
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for id in ids {
        let stored = stmt
            .exists(params![
                owner.tenant.0,
                &id.0[..],
                owner.site.0,
                SiteId::UNKNOWN.0
            ])
            .map_err(sql("look up blobs"))?;
        if !stored && seen.insert(*id) {
            missing.push(*id);
        }
    }
    Ok(missing)
}

/// The number of a session header in `headers`, added if new.
pub(super) fn header_number(conn: &Connection, header_id: &BlobId) -> Result<i64, CatalogError> {
    conn.prepare_cached(
        "INSERT INTO headers (header_id) VALUES (?1) \
         ON CONFLICT (header_id) DO UPDATE SET header_id = excluded.header_id RETURNING id",
    )
    .and_then(|mut stmt| stmt.query_row([&header_id.0[..]], |r| r.get(0)))
    .map_err(sql("record session header"))
}

fn location_row(row: &rusqlite::Row<'_>) -> Result<BlobLocation, CatalogError> {
    let read = |source| CatalogError::unavailable("read blob location", source);
    let raw_id: Vec<u8> = row.get(0).map_err(read)?;
    let kind: i64 = row.get(1).map_err(read)?;
    let flags: i64 = row.get(2).map_err(read)?;
    let header: Vec<u8> = row.get(3).map_err(read)?;
    let pool: String = row.get(4).map_err(read)?;
    let pack: String = row.get(5).map_err(read)?;
    let offset: i64 = row.get(6).map_err(read)?;
    let length: i64 = row.get(7).map_err(read)?;
    let site: i64 = row.get(8).map_err(read)?;
    let verified: i64 = row.get(9).map_err(read)?;
    let id = stored_id("blobs.id", &raw_id)?;
    let kind = from_i64::<u8>("blobs.kind", kind)?;
    Ok(BlobLocation {
        id,
        kind: BlobKind::from_u8(kind).ok_or_else(|| CatalogError::Corrupt {
            what: "blobs.kind",
            detail: format!("unknown kind {kind} for blob {id}"),
        })?,
        flags: from_i64("blobs.flags", flags)?,
        header_id: stored_id("headers.header_id", &header)?,
        pool,
        pack,
        offset: from_i64("blobs.pack_offset", offset)?,
        length: from_i64("blobs.length", length)?,
        site: SiteId(site),
        verified: verified != 0,
    })
}

impl SqliteCatalog {
    /// [`missing_ids`] in one read transaction.
    fn missing_in_one_snapshot(
        &self,
        owner: BlobOwner,
        ids: &[BlobId],
    ) -> Result<Vec<BlobId>, CatalogError> {
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        missing_ids(&tx, owner, ids)
    }
}

impl BlobIndex for SqliteCatalog {
    fn missing_blobs(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<Vec<BlobId>, CatalogError> {
        if ids.len() < SPLIT_CHECK_FROM {
            return self.missing_in_one_snapshot(owner, ids);
        }
        // A commit's check, on both cores: each half in its own snapshot.
        // Blob rows are never deleted, so a blob found in either is stored.
        let (first, second) = ids.split_at(ids.len() / 2);
        let (first, second) = std::thread::scope(|scope| {
            let other = scope.spawn(|| self.missing_in_one_snapshot(owner, second));
            let first = self.missing_in_one_snapshot(owner, first);
            // A panic there is raised here, as it would be on one thread.
            let second = other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (first, second)
        });
        let mut missing = first?;
        // An id in both halves is listed once, where it first appears.
        let mut seen: HashSet<BlobId> = missing.iter().copied().collect();
        missing.extend(second?.into_iter().filter(|id| seen.insert(*id)));
        Ok(missing)
    }

    fn for_each_blob_id(
        &self,
        visit: &mut dyn FnMut(BlobOwner, &BlobId, bool),
    ) -> Result<(), CatalogError> {
        let mut conn = Connection::open(&self.path).map_err(|source| CatalogError::Open {
            target: self.path.display().to_string(),
            source: source.into(),
        })?;
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        let mut stmt = tx
            .prepare("SELECT tenant_id, site_id, id, verified FROM blobs")
            .map_err(sql("list blob ids"))?;
        let mut rows = stmt.query([]).map_err(sql("list blob ids"))?;
        while let Some(row) = rows.next().map_err(sql("list blob ids"))? {
            let tenant: i64 = row.get(0).map_err(sql("read blob tenant"))?;
            let site: i64 = row.get(1).map_err(sql("read blob site"))?;
            let raw: &[u8] = row
                .get_ref(2)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(sql("read blob id"))?;
            let verified: i64 = row.get(3).map_err(sql("read blob verified"))?;
            let owner = BlobOwner {
                tenant: TenantId(tenant),
                site: SiteId(site),
            };
            visit(owner, &stored_id("blobs.id", raw)?, verified != 0);
        }
        Ok(())
    }

    fn blob_locations(
        &self,
        owner: BlobOwner,
        ids: &[BlobId],
    ) -> Result<Vec<BlobLocation>, CatalogError> {
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(sql("begin read transaction"))?;
        let op = "look up blob locations";
        // One point lookup per id: about a third cheaper than `IN (...)`
        // lists, which SQLite first copies into a temporary index.
        let mut stmt = tx
            .prepare_cached(
                "SELECT b.id, b.kind, b.flags, h.header_id, p.pool, p.name, b.pack_offset, b.length, \
                   b.site_id, b.verified \
                 FROM blobs b JOIN packs p ON p.id = b.pack_id JOIN headers h ON h.id = b.header \
                 WHERE b.tenant_id = ?1 AND b.id = ?2 AND (b.site_id IN (?3, ?4) OR b.verified = 1) \
                 ORDER BY b.bad, b.site_id <> ?3, b.site_id <> ?4 LIMIT 1",
            )
            .map_err(sql(op))?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            // A good copy before a bad one; the owner's own first, then
            // one of no known site, then a verified one of another site.
            let mut rows = stmt
                .query(params![
                    owner.tenant.0,
                    &id.0[..],
                    owner.site.0,
                    SiteId::UNKNOWN.0
                ])
                .map_err(sql(op))?;
            if let Some(row) = rows.next().map_err(sql(op))? {
                let loc = location_row(row)?;
                found.insert(loc.id, loc);
            }
        }
        // Input order, each id once: remove as we go.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn record_pack(
        &self,
        pack: &PackRecord,
        entries: &[(BlobOwner, PackEntry)],
    ) -> Result<usize, CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let stored = record_pack_in(&tx, pack, entries)?;
        tx.commit().map_err(sql("commit pack"))?;
        Ok(stored)
    }

    fn record_packs(
        &self,
        packs: &[(PackRecord, Vec<(BlobOwner, PackEntry)>)],
    ) -> Result<usize, CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let mut stored = 0;
        for (pack, entries) in packs {
            stored += record_pack_in(&tx, pack, entries)?;
        }
        tx.commit().map_err(sql("commit packs"))?;
        Ok(stored)
    }

    fn list_packs(&self) -> Result<Vec<PackRecord>, CatalogError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT name, pool, size, hash FROM packs ORDER BY name")
            .map_err(sql("list packs"))?;
        let raws = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(sql("list packs"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("list packs"))?;
        raws.into_iter()
            .map(|(name, pool, size, hash)| pack_record(name, pool, size, &hash))
            .collect()
    }

    fn mark_bad(&self, owner: BlobOwner, ids: &[BlobId]) -> Result<usize, CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let mut marked = 0;
        {
            // The good copy blob_locations serves.
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE blobs SET bad = 1 WHERE tenant_id = ?1 AND id = ?2 AND bad = 0 \
                     AND site_id = (SELECT site_id FROM blobs \
                         WHERE tenant_id = ?1 AND id = ?2 AND bad = 0 \
                           AND (site_id IN (?3, ?4) OR verified = 1) \
                         ORDER BY site_id <> ?3, site_id <> ?4 LIMIT 1)",
                )
                .map_err(sql("mark blob bad"))?;
            for id in ids {
                marked += stmt
                    .execute(params![
                        owner.tenant.0,
                        &id.0[..],
                        owner.site.0,
                        SiteId::UNKNOWN.0
                    ])
                    .map_err(sql("mark blob bad"))?;
            }
        }
        tx.commit().map_err(sql("commit blob marks"))?;
        Ok(marked)
    }

    fn mark_verified(
        &self,
        tenant: TenantId,
        copies: &[(BlobId, SiteId)],
    ) -> Result<usize, CatalogError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let mut marked = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE blobs SET verified = 1 \
                     WHERE tenant_id = ?1 AND id = ?2 AND site_id = ?3 AND bad = 0 AND verified = 0",
                )
                .map_err(sql("mark blob verified"))?;
            // The same site's copy of the session header the blob opened
            // under: a restore at another site needs it too.
            let mut header = tx
                .prepare_cached(
                    "UPDATE blobs SET verified = 1 \
                     WHERE tenant_id = ?1 AND site_id = ?3 AND bad = 0 AND verified = 0 \
                       AND id = (SELECT h.header_id FROM blobs b JOIN headers h ON h.id = b.header \
                                 WHERE b.tenant_id = ?1 AND b.id = ?2 AND b.site_id = ?3 \
                                   AND b.verified = 1 AND b.bad = 0)",
                )
                .map_err(sql("mark header verified"))?;
            for (id, site) in copies {
                let args = params![tenant.0, &id.0[..], site.0];
                let n = stmt.execute(args).map_err(sql("mark blob verified"))?;
                if n > 0 {
                    header.execute(args).map_err(sql("mark header verified"))?;
                }
                marked += n;
            }
        }
        tx.commit().map_err(sql("commit blob marks"))?;
        Ok(marked)
    }

    fn packs_per_pool(&self) -> Result<Vec<(String, u64)>, CatalogError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT pool, COUNT(*) FROM packs GROUP BY pool ORDER BY pool")
            .map_err(sql("count packs per pool"))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("count packs per pool"))?
            .map(|row| {
                let (pool, n) = row.map_err(sql("count packs per pool"))?;
                Ok((pool, from_i64("packs count", n)?))
            })
            .collect()
    }
}

/// [`BlobIndex::record_pack`]'s work inside the write transaction `tx`.
fn record_pack_in(
    tx: &rusqlite::Transaction<'_>,
    pack: &PackRecord,
    entries: &[(BlobOwner, PackEntry)],
) -> Result<usize, CatalogError> {
    let size = check_pack_record(pack, entries)?;
    let owners: BTreeSet<BlobOwner> = entries.iter().map(|(o, _)| *o).collect();
    let tenants: BTreeSet<TenantId> = owners.iter().map(|o| o.tenant).collect();
    for tenant in tenants {
        tenant_exists(tx, tenant)?;
    }
    let mut site_tenants = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT tenant_id FROM sites WHERE id = ?1")
            .map_err(sql("look up site"))?;
        for site in owners.iter().map(|o| o.site).collect::<BTreeSet<_>>() {
            let tenant: Option<i64> = stmt
                .query_row([site.0], |r| r.get(0))
                .optional()
                .map_err(sql("look up site"))?;
            if let Some(tenant) = tenant {
                site_tenants.push((site, TenantId(tenant)));
            }
        }
    }
    check_owners(&owners, &site_tenants)?;
    let existing = tx
        .query_row(
            "SELECT id, pool, size, hash FROM packs WHERE name = ?1",
            [&pack.name],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(sql("look up pack"))?;
    let pack_id = match existing {
        Some((id, pool, stored_size, hash)) => {
            check_same_pack(pack, &pool, stored_size, &hash)?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO packs (name, pool, size, hash) VALUES (?1, ?2, ?3, ?4)",
                params![pack.name, pack.pool, size, &pack.hash[..]],
            )
            .map_err(sql("insert pack"))?;
            tx.last_insert_rowid()
        }
    };
    let mut stored = 0;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO blobs \
                 (tenant_id, id, site_id, kind, flags, header, pack_id, pack_offset, length) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (tenant_id, id, site_id) DO UPDATE SET \
                   kind = excluded.kind, flags = excluded.flags, header = excluded.header, \
                   pack_id = excluded.pack_id, pack_offset = excluded.pack_offset, \
                   length = excluded.length, bad = 0, verified = 0 \
                 WHERE blobs.bad = 1",
            )
            .map_err(sql("insert blob"))?;
        // A pack's blobs come from a few sessions, most often one.
        let mut headers: Vec<(BlobId, i64)> = Vec::new();
        // In key order: each insert then lands at or after the last one
        // instead of seeking from the root for a random id. Stable, so a
        // copy the pack holds twice keeps its first entry.
        let mut in_key_order: Vec<&(BlobOwner, PackEntry)> = entries.iter().collect();
        in_key_order.sort_by_key(|(o, e)| (o.tenant.0, e.id.0, o.site.0));
        for (owner, e) in in_key_order {
            let header = match headers.iter().find(|(id, _)| *id == e.header_id) {
                Some(&(_, number)) => number,
                None => {
                    let number = header_number(tx, &e.header_id)?;
                    headers.push((e.header_id, number));
                    number
                }
            };
            stored += insert
                .execute(params![
                    owner.tenant.0,
                    &e.id.0[..],
                    owner.site.0,
                    e.kind as u8,
                    e.flags,
                    header,
                    pack_id,
                    to_i64("pack entry offset", e.offset)?,
                    e.length,
                ])
                .map_err(sql("insert blob"))?;
        }
    }
    Ok(stored)
}
