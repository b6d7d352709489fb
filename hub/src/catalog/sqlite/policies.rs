//! Policy versions in SQLite.

use rusqlite::params;

use super::{Tx, sql};
use crate::catalog::namespace::existing_tenant;
use crate::catalog::policies::{check_files, versions_of};
use crate::catalog::{
    CatalogError, PolicyFileText, PolicyRead, PolicyVersion, PolicyWrite, TenantId,
};

impl Tx<'_> {
    fn policy_rows(
        &mut self,
        query: &str,
        tenant: TenantId,
        version: Option<i64>,
    ) -> Result<Vec<PolicyVersion>, CatalogError> {
        let rows = self
            .conn
            .prepare_cached(query)
            .and_then(|mut s| {
                s.query_map(params![tenant.0, version], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("read policy versions"))?;
        versions_of(rows)
    }
}

impl PolicyRead for Tx<'_> {
    fn policy(
        &mut self,
        tenant: TenantId,
        version: Option<u64>,
    ) -> Result<Option<PolicyVersion>, CatalogError> {
        let version = version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let found = self.policy_rows(
            "SELECT v.version, v.applied_ms, f.name, f.text \
             FROM policy_versions v JOIN policy_files f USING (tenant_id, version) \
             WHERE v.tenant_id = ?1 AND v.version = COALESCE(?2, \
               (SELECT MAX(version) FROM policy_versions WHERE tenant_id = ?1)) \
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
             WHERE v.tenant_id = ?1 AND ?2 IS NULL ORDER BY v.version, f.position",
            tenant,
            None,
        )
    }
}

impl PolicyWrite for Tx<'_> {
    fn add_policy_version(
        &mut self,
        tenant: TenantId,
        at_unix_ms: i64,
        files: &[PolicyFileText],
    ) -> Result<u64, CatalogError> {
        check_files(files)?;
        existing_tenant(self, tenant)?;
        // Write transactions are serial in SQLite: the next number is free.
        let version: i64 = self
            .conn
            .query_row(
                "INSERT INTO policy_versions (tenant_id, version, applied_ms) \
                 SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2 FROM policy_versions \
                 WHERE tenant_id = ?1 RETURNING version",
                params![tenant.0, at_unix_ms],
                |r| r.get(0),
            )
            .map_err(sql("add policy version"))?;
        for (position, f) in files.iter().enumerate() {
            self.conn
                .execute(
                    "INSERT INTO policy_files (tenant_id, version, position, name, text) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![tenant.0, version, position as i64, f.name, f.text],
                )
                .map_err(sql("add policy file"))?;
        }
        crate::catalog::from_i64("policy_versions.version", version)
    }
}
