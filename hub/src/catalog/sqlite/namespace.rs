//! Tenants, sites and buckets in SQLite.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Tx, sql};
use crate::catalog::error::found_one;
use crate::catalog::namespace::{check_source, checked_replicas};
use crate::catalog::{
    Bucket, BucketId, CatalogError, NamespaceRead, NamespaceWrite, Site, SiteId, Tenant, TenantId,
    validate_name,
};

const SITE_COLUMNS: &str = "id, tenant_id, name, revoked";
/// The replicas come as one column ("2,5"), so a bucket is one query.
const BUCKET_COLUMNS: &str = "id, tenant_id, name, source_site_id, \
     (SELECT group_concat(site_id) FROM bucket_replicas r WHERE r.bucket_id = buckets.id)";

const TENANT_COLUMNS: &str = "id, name, verifier";

fn tenant_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    // A key of another length is no key: read as none (the check refuses
    // every report) rather than failing every lookup of the tenant.
    let verifier: Option<Vec<u8>> = row.get(2)?;
    let verifier = verifier.and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
    Ok(Tenant {
        id: TenantId(row.get(0)?),
        name: row.get(1)?,
        verifier,
    })
}

fn site_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Site> {
    Ok(Site {
        id: SiteId(row.get(0)?),
        tenant: TenantId(row.get(1)?),
        name: row.get(2)?,
        revoked: row.get::<_, i64>(3)? != 0,
    })
}

fn bucket_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        id: BucketId(row.get(0)?),
        tenant: TenantId(row.get(1)?),
        name: row.get(2)?,
        source_site: SiteId(row.get(3)?),
        replicas: replica_ids(
            row.get::<_, Option<String>>(4)?
                .as_deref()
                .unwrap_or_default(),
        )
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

/// `group_concat`'s "2,5", in id order.
fn replica_ids(list: &str) -> Result<Vec<SiteId>, std::num::ParseIntError> {
    let mut ids = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map(SiteId))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    Ok(ids)
}

/// `Ok` if tenant `id` exists, else NotFound.
pub(super) fn tenant_exists(conn: &Connection, id: TenantId) -> Result<(), CatalogError> {
    conn.prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
        .and_then(|mut s| s.exists([id.0]))
        .map_err(sql("look up tenant"))?
        .then_some(())
        .ok_or_else(|| CatalogError::NotFound {
            what: "tenant",
            key: id.to_string(),
        })
}

/// The tenant `query` finds for row `id` (`what` names the row in errors),
/// or NotFound.
fn tenant_of(
    conn: &Connection,
    what: &'static str,
    op: &'static str,
    query: &str,
    id: i64,
) -> Result<TenantId, CatalogError> {
    conn.prepare_cached(query)
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql(op))?
        .map(TenantId)
        .ok_or_else(|| CatalogError::NotFound {
            what,
            key: id.to_string(),
        })
}

/// The tenant of site `id`, or NotFound.
pub(super) fn site_tenant(conn: &Connection, id: SiteId) -> Result<TenantId, CatalogError> {
    tenant_of(
        conn,
        "site",
        "look up site",
        "SELECT tenant_id FROM sites WHERE id = ?1",
        id.0,
    )
}

/// The tenant of bucket `id`, or NotFound.
pub(super) fn bucket_tenant(conn: &Connection, id: BucketId) -> Result<TenantId, CatalogError> {
    tenant_of(
        conn,
        "bucket",
        "look up bucket",
        "SELECT tenant_id FROM buckets WHERE id = ?1",
        id.0,
    )
}

/// True if `query` (with `params`) returns a row.
fn exists(
    conn: &Connection,
    op: &'static str,
    query: &str,
    params: impl rusqlite::Params,
) -> Result<bool, CatalogError> {
    conn.prepare_cached(query)
        .and_then(|mut s| s.exists(params))
        .map_err(sql(op))
}

impl NamespaceRead for Tx<'_> {
    fn tenant_by_name(&mut self, name: &str) -> Result<Option<Tenant>, CatalogError> {
        self.opt(
            "look up tenant",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"),
            [name],
            tenant_row,
        )
    }

    fn tenant(&mut self, id: TenantId) -> Result<Option<Tenant>, CatalogError> {
        self.opt(
            "look up tenant",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"),
            [id.0],
            tenant_row,
        )
    }

    fn list_tenants(&mut self) -> Result<Vec<Tenant>, CatalogError> {
        self.all(
            "list tenants",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"),
            [],
            tenant_row,
        )
    }

    fn site_by_token_hash(&mut self, token_hash: &[u8; 32]) -> Result<Option<Site>, CatalogError> {
        self.opt(
            "look up site by token",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE token_hash = ?1 AND revoked = 0"),
            [&token_hash[..]],
            site_row,
        )
    }

    fn site(&mut self, id: SiteId) -> Result<Option<Site>, CatalogError> {
        self.opt(
            "look up site",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?1"),
            [id.0],
            site_row,
        )
    }

    fn list_sites(&mut self, tenant: TenantId) -> Result<Vec<Site>, CatalogError> {
        self.all(
            "list sites",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE tenant_id = ?1 ORDER BY name"),
            [tenant.0],
            site_row,
        )
    }

    fn bucket_by_name(
        &mut self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<Bucket>, CatalogError> {
        self.opt(
            "look up bucket",
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = ?1 AND name = ?2"),
            params![tenant.0, name],
            bucket_row,
        )
    }

    fn bucket(&mut self, id: BucketId) -> Result<Option<Bucket>, CatalogError> {
        self.opt(
            "look up bucket",
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE id = ?1"),
            [id.0],
            bucket_row,
        )
    }

    fn list_buckets(&mut self, tenant: TenantId) -> Result<Vec<Bucket>, CatalogError> {
        self.all(
            "list buckets",
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = ?1 ORDER BY name"),
            [tenant.0],
            bucket_row,
        )
    }
}

impl NamespaceWrite for Tx<'_> {
    fn create_tenant(&mut self, name: &str) -> Result<TenantId, CatalogError> {
        validate_name("tenant.name", name)?;
        if exists(
            self.conn,
            "look up tenant",
            "SELECT 1 FROM tenants WHERE name = ?1",
            [name],
        )? {
            return Err(CatalogError::AlreadyExists {
                what: "tenant",
                name: name.to_owned(),
            });
        }
        self.conn
            .execute("INSERT INTO tenants (name) VALUES (?1)", [name])
            .map_err(sql("insert tenant"))?;
        Ok(TenantId(self.conn.last_insert_rowid()))
    }

    fn create_site(
        &mut self,
        tenant: TenantId,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, CatalogError> {
        validate_name("site.name", name)?;
        tenant_exists(self.conn, tenant)?;
        if exists(
            self.conn,
            "look up site",
            "SELECT 1 FROM sites WHERE tenant_id = ?1 AND name = ?2",
            params![tenant.0, name],
        )? {
            return Err(CatalogError::AlreadyExists {
                what: "site",
                name: name.to_owned(),
            });
        }
        if exists(
            self.conn,
            "look up site token",
            "SELECT 1 FROM sites WHERE token_hash = ?1",
            [&token_hash[..]],
        )? {
            // Never echo the hash: name the site that was being created.
            return Err(CatalogError::AlreadyExists {
                what: "token for site",
                name: name.to_owned(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO sites (tenant_id, name, token_hash) VALUES (?1, ?2, ?3)",
                params![tenant.0, name, &token_hash[..]],
            )
            .map_err(sql("insert site"))?;
        Ok(SiteId(self.conn.last_insert_rowid()))
    }

    fn set_tenant_verifier(
        &mut self,
        tenant: TenantId,
        key: Option<&[u8; 32]>,
    ) -> Result<(), CatalogError> {
        let changed = self
            .conn
            .execute(
                "UPDATE tenants SET verifier = ?2 WHERE id = ?1",
                params![tenant.0, key.map(|k| &k[..])],
            )
            .map_err(sql("set tenant verifier"))?;
        found_one(changed as u64, "tenant", tenant)
    }

    fn revoke_site(&mut self, id: SiteId) -> Result<(), CatalogError> {
        let changed = self
            .conn
            .execute("UPDATE sites SET revoked = 1 WHERE id = ?1", [id.0])
            .map_err(sql("revoke site"))?;
        found_one(changed as u64, "site", id)
    }

    fn set_site_token(&mut self, id: SiteId, token_hash: &[u8; 32]) -> Result<(), CatalogError> {
        let site = self.site(id)?.ok_or_else(|| CatalogError::NotFound {
            what: "site",
            key: id.to_string(),
        })?;
        if site.revoked {
            return Err(CatalogError::Conflict {
                what: "site",
                key: site.name,
                reason: "revoked; a revoked site gets no new token".to_owned(),
            });
        }
        if exists(
            self.conn,
            "look up site token",
            "SELECT 1 FROM sites WHERE token_hash = ?1",
            [&token_hash[..]],
        )? {
            return Err(CatalogError::AlreadyExists {
                what: "token for site",
                name: site.name,
            });
        }
        self.conn
            .execute(
                "UPDATE sites SET token_hash = ?2 WHERE id = ?1",
                params![id.0, &token_hash[..]],
            )
            .map_err(sql("replace site token"))?;
        Ok(())
    }

    fn create_bucket(
        &mut self,
        tenant: TenantId,
        name: &str,
        source_site: SiteId,
    ) -> Result<BucketId, CatalogError> {
        validate_name("bucket.name", name)?;
        tenant_exists(self.conn, tenant)?;
        if site_tenant(self.conn, source_site)? != tenant {
            return Err(CatalogError::Invalid {
                field: "bucket.source_site",
                reason: format!("site {source_site} belongs to another tenant"),
            });
        }
        if exists(
            self.conn,
            "look up bucket",
            "SELECT 1 FROM buckets WHERE tenant_id = ?1 AND name = ?2",
            params![tenant.0, name],
        )? {
            return Err(CatalogError::AlreadyExists {
                what: "bucket",
                name: name.to_owned(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO buckets (tenant_id, name, source_site_id) VALUES (?1, ?2, ?3)",
                params![tenant.0, name, source_site.0],
            )
            .map_err(sql("insert bucket"))?;
        Ok(BucketId(self.conn.last_insert_rowid()))
    }

    fn set_bucket_replicas(
        &mut self,
        bucket: BucketId,
        replicas: &[SiteId],
    ) -> Result<(), CatalogError> {
        let replicas = checked_replicas(self, bucket, replicas)?;
        self.conn
            .execute(
                "DELETE FROM bucket_replicas WHERE bucket_id = ?1",
                [bucket.0],
            )
            .map_err(sql("set bucket replicas"))?;
        let mut insert = self
            .conn
            .prepare_cached("INSERT INTO bucket_replicas (bucket_id, site_id) VALUES (?1, ?2)")
            .map_err(sql("set bucket replicas"))?;
        for site in replicas {
            insert
                .execute([bucket.0, site.0])
                .map_err(sql("set bucket replicas"))?;
        }
        Ok(())
    }

    fn set_bucket_source(&mut self, bucket: BucketId, site: SiteId) -> Result<(), CatalogError> {
        check_source(self, bucket, site)?;
        self.conn
            .execute(
                "DELETE FROM bucket_replicas WHERE bucket_id = ?1 AND site_id = ?2",
                [bucket.0, site.0],
            )
            .map_err(sql("set bucket source"))?;
        self.conn
            .execute(
                "UPDATE buckets SET source_site_id = ?2 WHERE id = ?1",
                [bucket.0, site.0],
            )
            .map_err(sql("set bucket source"))?;
        Ok(())
    }
}
