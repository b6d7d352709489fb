//! Policy versions in PostgreSQL.

use super::{Tx, pg};
use crate::catalog::namespace::existing_tenant;
use crate::catalog::policies::{check_files, versions_of};
use crate::catalog::{
    CatalogError, PolicyFileText, PolicyRead, PolicyVersion, PolicyWrite, TenantId,
};

impl Tx<'_, '_> {
    fn policy_rows(
        &mut self,
        query: &str,
        tenant: TenantId,
        version: Option<i64>,
    ) -> Result<Vec<PolicyVersion>, CatalogError> {
        let rows = self
            .tx
            .query(query, &[&tenant.0, &version])
            .map_err(pg("read policy versions"))?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(pg("read policy versions"))?;
        versions_of(rows)
    }
}

impl PolicyRead for Tx<'_, '_> {
    fn policy(
        &mut self,
        tenant: TenantId,
        version: Option<u64>,
    ) -> Result<Option<PolicyVersion>, CatalogError> {
        let version = version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let found = self.policy_rows(
            "SELECT v.version, v.applied_ms, f.name, f.text \
             FROM policy_versions v JOIN policy_files f USING (tenant_id, version) \
             WHERE v.tenant_id = $1 AND v.version = COALESCE($2::BIGINT, \
               (SELECT MAX(version) FROM policy_versions WHERE tenant_id = $1)) \
             ORDER BY f.position",
            tenant,
            version,
        )?;
        Ok(found.into_iter().next())
    }

    fn policy_history(&mut self, tenant: TenantId) -> Result<Vec<PolicyVersion>, CatalogError> {
        self.policy_rows(
            "SELECT v.version, v.applied_ms, f.name, '' \
             FROM policy_versions v JOIN policy_files f USING (tenant_id, version) \
             WHERE v.tenant_id = $1 AND $2::BIGINT IS NULL ORDER BY v.version, f.position",
            tenant,
            None,
        )
    }
}

impl PolicyWrite for Tx<'_, '_> {
    fn add_policy_version(
        &mut self,
        tenant: TenantId,
        at_unix_ms: i64,
        files: &[PolicyFileText],
    ) -> Result<u64, CatalogError> {
        check_files(files)?;
        existing_tenant(self, tenant)?;
        // Two hubs applying at once take turns on the tenant's row, so each
        // gets the next number.
        self.tx
            .execute(
                "SELECT id FROM tenants WHERE id = $1 FOR UPDATE",
                &[&tenant.0],
            )
            .map_err(pg("lock tenant"))?;
        let version: i64 = self
            .tx
            .query_one(
                "INSERT INTO policy_versions (tenant_id, version, applied_ms) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2 FROM policy_versions \
                 WHERE tenant_id = $1 RETURNING version",
                &[&tenant.0, &at_unix_ms],
            )
            .and_then(|r| r.try_get(0))
            .map_err(pg("add policy version"))?;
        for (position, f) in files.iter().enumerate() {
            self.tx
                .execute(
                    "INSERT INTO policy_files (tenant_id, version, position, name, text) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&tenant.0, &version, &(position as i64), &f.name, &f.text],
                )
                .map_err(pg("add policy file"))?;
        }
        crate::catalog::from_i64("policy_versions.version", version)
    }
}
