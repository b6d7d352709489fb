//! Tenants, sites and buckets in PostgreSQL.

use postgres::Row;
use postgres::types::ToSql;

use super::{Tx, pg};
use crate::catalog::error::found_one;
use crate::catalog::namespace::{check_source, checked_replicas};
use crate::catalog::{
    Bucket, BucketId, CatalogError, NamespaceRead, NamespaceWrite, Site, SiteId, Tenant, TenantId,
    validate_name,
};

const SITE_COLUMNS: &str = "id, tenant_id, name, revoked";
/// The replicas come as one array column, so a bucket is one query.
const BUCKET_COLUMNS: &str = "id, tenant_id, name, source_site_id, \
     ARRAY(SELECT site_id FROM bucket_replicas r WHERE r.bucket_id = buckets.id ORDER BY site_id)";

const TENANT_COLUMNS: &str = "id, name, verifier";

fn tenant_row(row: &Row) -> Result<Tenant, postgres::Error> {
    // A key of another length is no key: read as none (the check refuses
    // every report) rather than failing every lookup of the tenant.
    let verifier: Option<Vec<u8>> = row.try_get(2)?;
    Ok(Tenant {
        id: TenantId(row.try_get(0)?),
        name: row.try_get(1)?,
        verifier: verifier.and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok()),
    })
}

fn site_row(row: &Row) -> Result<Site, postgres::Error> {
    Ok(Site {
        id: SiteId(row.try_get(0)?),
        tenant: TenantId(row.try_get(1)?),
        name: row.try_get(2)?,
        revoked: row.try_get(3)?,
    })
}

fn bucket_row(row: &Row) -> Result<Bucket, postgres::Error> {
    Ok(Bucket {
        id: BucketId(row.try_get(0)?),
        tenant: TenantId(row.try_get(1)?),
        name: row.try_get(2)?,
        source_site: SiteId(row.try_get(3)?),
        replicas: row
            .try_get::<_, Vec<i64>>(4)?
            .into_iter()
            .map(SiteId)
            .collect(),
    })
}

impl Tx<'_, '_> {
    /// At most one row of `query`, decoded by `decode`.
    pub(super) fn opt<T>(
        &mut self,
        op: &'static str,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl FnOnce(&Row) -> Result<T, postgres::Error>,
    ) -> Result<Option<T>, CatalogError> {
        self.tx
            .query_opt(query, params)
            .and_then(|row| row.as_ref().map(decode).transpose())
            .map_err(pg(op))
    }

    /// Every row of `query`, decoded by `decode`.
    pub(super) fn all<T>(
        &mut self,
        op: &'static str,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Result<T, postgres::Error>,
    ) -> Result<Vec<T>, CatalogError> {
        self.tx
            .query(query, params)
            .and_then(|rows| rows.iter().map(decode).collect())
            .map_err(pg(op))
    }

    /// True if `query` returns a row.
    pub(super) fn exists(
        &mut self,
        op: &'static str,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<bool, CatalogError> {
        Ok(self.opt(op, query, params, |_| Ok(()))?.is_some())
    }

    pub(super) fn tenant_exists(&mut self, id: TenantId) -> Result<(), CatalogError> {
        self.exists(
            "look up tenant",
            "SELECT 1 FROM tenants WHERE id = $1",
            &[&id.0],
        )?
        .then_some(())
        .ok_or_else(|| CatalogError::NotFound {
            what: "tenant",
            key: id.to_string(),
        })
    }

    /// The tenant of site `id`, or NotFound.
    pub(super) fn site_tenant(&mut self, id: SiteId) -> Result<TenantId, CatalogError> {
        self.opt(
            "look up site",
            "SELECT tenant_id FROM sites WHERE id = $1",
            &[&id.0],
            |r| r.try_get(0),
        )?
        .map(TenantId)
        .ok_or_else(|| CatalogError::NotFound {
            what: "site",
            key: id.to_string(),
        })
    }

    /// The tenant of bucket `id`, or NotFound; with `lock`, the bucket's row
    /// stays locked until the transaction ends.
    pub(super) fn bucket_tenant(
        &mut self,
        id: BucketId,
        lock: bool,
    ) -> Result<TenantId, CatalogError> {
        let query = match lock {
            true => "SELECT tenant_id FROM buckets WHERE id = $1 FOR UPDATE",
            false => "SELECT tenant_id FROM buckets WHERE id = $1",
        };
        self.opt("look up bucket", query, &[&id.0], |r| r.try_get(0))?
            .map(TenantId)
            .ok_or_else(|| CatalogError::NotFound {
                what: "bucket",
                key: id.to_string(),
            })
    }
}

impl NamespaceRead for Tx<'_, '_> {
    fn tenant_by_name(&mut self, name: &str) -> Result<Option<Tenant>, CatalogError> {
        self.opt(
            "look up tenant",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"),
            &[&name],
            tenant_row,
        )
    }

    fn tenant(&mut self, id: TenantId) -> Result<Option<Tenant>, CatalogError> {
        self.opt(
            "look up tenant",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
            &[&id.0],
            tenant_row,
        )
    }

    fn list_tenants(&mut self) -> Result<Vec<Tenant>, CatalogError> {
        self.all(
            "list tenants",
            &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"),
            &[],
            tenant_row,
        )
    }

    fn site_by_token_hash(&mut self, token_hash: &[u8; 32]) -> Result<Option<Site>, CatalogError> {
        self.opt(
            "look up site by token",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE token_hash = $1 AND NOT revoked"),
            &[&&token_hash[..]],
            site_row,
        )
    }

    fn site(&mut self, id: SiteId) -> Result<Option<Site>, CatalogError> {
        self.opt(
            "look up site",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1"),
            &[&id.0],
            site_row,
        )
    }

    fn list_sites(&mut self, tenant: TenantId) -> Result<Vec<Site>, CatalogError> {
        self.all(
            "list sites",
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE tenant_id = $1 ORDER BY name"),
            &[&tenant.0],
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
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = $1 AND name = $2"),
            &[&tenant.0, &name],
            bucket_row,
        )
    }

    fn bucket(&mut self, id: BucketId) -> Result<Option<Bucket>, CatalogError> {
        self.opt(
            "look up bucket",
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE id = $1"),
            &[&id.0],
            bucket_row,
        )
    }

    fn list_buckets(&mut self, tenant: TenantId) -> Result<Vec<Bucket>, CatalogError> {
        self.all(
            "list buckets",
            &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE tenant_id = $1 ORDER BY name"),
            &[&tenant.0],
            bucket_row,
        )
    }
}

impl NamespaceWrite for Tx<'_, '_> {
    fn create_tenant(&mut self, name: &str) -> Result<TenantId, CatalogError> {
        validate_name("tenant.name", name)?;
        // ON CONFLICT, not a failed insert: an error would abort the
        // whole transaction, and another hub may win the race.
        self.opt(
            "insert tenant",
            "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id",
            &[&name],
            |r| r.try_get(0),
        )?
        .map(TenantId)
        .ok_or_else(|| CatalogError::AlreadyExists {
            what: "tenant",
            name: name.to_owned(),
        })
    }

    fn create_site(
        &mut self,
        tenant: TenantId,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, CatalogError> {
        validate_name("site.name", name)?;
        self.tenant_exists(tenant)?;
        let inserted = self.opt(
            "insert site",
            "INSERT INTO sites (tenant_id, name, token_hash) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING RETURNING id",
            &[&tenant.0, &name, &&token_hash[..]],
            |r| r.try_get(0),
        )?;
        if let Some(id) = inserted {
            return Ok(SiteId(id));
        }
        let name_taken = self.exists(
            "look up site",
            "SELECT 1 FROM sites WHERE tenant_id = $1 AND name = $2",
            &[&tenant.0, &name],
        )?;
        // Never echo the hash: name the site that was being created.
        Err(CatalogError::AlreadyExists {
            what: if name_taken { "site" } else { "token for site" },
            name: name.to_owned(),
        })
    }

    fn set_tenant_verifier(
        &mut self,
        tenant: TenantId,
        key: Option<&[u8; 32]>,
    ) -> Result<(), CatalogError> {
        let key: Option<&[u8]> = key.map(|k| &k[..]);
        let changed = self
            .tx
            .execute(
                "UPDATE tenants SET verifier = $2 WHERE id = $1",
                &[&tenant.0, &key],
            )
            .map_err(pg("set tenant verifier"))?;
        found_one(changed, "tenant", tenant)
    }

    fn revoke_site(&mut self, id: SiteId) -> Result<(), CatalogError> {
        let changed = self
            .tx
            .execute("UPDATE sites SET revoked = TRUE WHERE id = $1", &[&id.0])
            .map_err(pg("revoke site"))?;
        found_one(changed, "site", id)
    }

    fn set_site_token(&mut self, id: SiteId, token_hash: &[u8; 32]) -> Result<(), CatalogError> {
        let site = self
            .opt(
                "look up site",
                &format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1 FOR UPDATE"),
                &[&id.0],
                site_row,
            )?
            .ok_or_else(|| CatalogError::NotFound {
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
        if self.exists(
            "look up site token",
            "SELECT 1 FROM sites WHERE token_hash = $1",
            &[&&token_hash[..]],
        )? {
            return Err(CatalogError::AlreadyExists {
                what: "token for site",
                name: site.name,
            });
        }
        self.tx
            .execute(
                "UPDATE sites SET token_hash = $2 WHERE id = $1",
                &[&id.0, &&token_hash[..]],
            )
            .map_err(pg("replace site token"))?;
        Ok(())
    }

    fn create_bucket(
        &mut self,
        tenant: TenantId,
        name: &str,
        source_site: SiteId,
    ) -> Result<BucketId, CatalogError> {
        validate_name("bucket.name", name)?;
        self.tenant_exists(tenant)?;
        if self.site_tenant(source_site)? != tenant {
            return Err(CatalogError::Invalid {
                field: "bucket.source_site",
                reason: format!("site {source_site} belongs to another tenant"),
            });
        }
        self.opt(
            "insert bucket",
            "INSERT INTO buckets (tenant_id, name, source_site_id) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING RETURNING id",
            &[&tenant.0, &name, &source_site.0],
            |r| r.try_get(0),
        )?
        .map(BucketId)
        .ok_or_else(|| CatalogError::AlreadyExists {
            what: "bucket",
            name: name.to_owned(),
        })
    }

    fn set_bucket_replicas(
        &mut self,
        bucket: BucketId,
        replicas: &[SiteId],
    ) -> Result<(), CatalogError> {
        let replicas: Vec<i64> = checked_replicas(self, bucket, replicas)?
            .into_iter()
            .map(|s| s.0)
            .collect();
        self.tx
            .execute(
                "DELETE FROM bucket_replicas WHERE bucket_id = $1",
                &[&bucket.0],
            )
            .map_err(pg("set bucket replicas"))?;
        self.tx
            .execute(
                "INSERT INTO bucket_replicas (bucket_id, site_id) SELECT $1, unnest($2::BIGINT[])",
                &[&bucket.0, &replicas],
            )
            .map_err(pg("set bucket replicas"))?;
        Ok(())
    }

    fn set_bucket_source(&mut self, bucket: BucketId, site: SiteId) -> Result<(), CatalogError> {
        check_source(self, bucket, site)?;
        self.tx
            .execute(
                "DELETE FROM bucket_replicas WHERE bucket_id = $1 AND site_id = $2",
                &[&bucket.0, &site.0],
            )
            .map_err(pg("set bucket source"))?;
        self.tx
            .execute(
                "UPDATE buckets SET source_site_id = $2 WHERE id = $1",
                &[&bucket.0, &site.0],
            )
            .map_err(pg("set bucket source"))?;
        Ok(())
    }
}
