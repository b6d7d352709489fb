//! Pass one: replay the namespace records, oldest first.

use std::sync::Arc;

use super::{RecoverError, Report, blocking, list_all};
use crate::admin::{set_replicas, set_source, site_named, tenant_named};
use crate::blobstore::Pools;
use crate::catalog::{Catalog, CatalogError, CatalogExt, ErrorKind, WriteTx};
use crate::records::namespace::PREFIX;
use crate::records::{Change, NamespaceRecord};

/// What applying one record did.
enum Applied {
    Tenant,
    Site,
    Bucket,
    Nothing,
}

pub(super) async fn replay(
    catalog: &Arc<dyn Catalog>,
    pools: &Pools,
    report: &mut Report,
) -> Result<(), RecoverError> {
    let mut names = list_all(pools, PREFIX).await?;
    // Names start with the time of the change: sorted, they are in order.
    // One record in two pools (copied by an operator) is applied once.
    names.sort_by(|a, b| a.1.cmp(&b.1));
    names.dedup_by(|a, b| a.1 == b.1);
    for (pool, name) in names {
        let Some(store) = pools.get(&pool) else {
            continue;
        };
        let record = match store.get(&name).await {
            Ok(bytes) => match NamespaceRecord::decode(&bytes) {
                Ok(record) => record,
                Err(e) => {
                    report.damaged(&pool, &name, e);
                    continue;
                }
            },
            Err(e) => {
                report.damaged(&pool, &name, e);
                continue;
            }
        };
        report.namespace_records += 1;
        let change = record.change;
        match blocking(catalog, move |c| c.write(|w| apply(w, &change))).await {
            Ok(Applied::Tenant) => report.tenants_added += 1,
            Ok(Applied::Site) => report.sites_added += 1,
            Ok(Applied::Bucket) => report.buckets_added += 1,
            Ok(Applied::Nothing) => {}
            // A record that contradicts the others (its tenant's record
            // was lost, say) is reported; the engine failing stops all.
            Err(RecoverError::Catalog(e))
                if !matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Corrupt) =>
            {
                report.damaged(&pool, &name, format!("cannot apply: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Applies one change unless the catalog has it already.
fn apply(w: &mut dyn WriteTx, change: &Change) -> Result<Applied, CatalogError> {
    match change {
        Change::TenantAdded { name } => match w.tenant_by_name(name)? {
            Some(_) => Ok(Applied::Nothing),
            None => w.create_tenant(name).map(|_| Applied::Tenant),
        },
        Change::SiteAdded {
            tenant,
            name,
            token_hash,
        } => match site_named(w, tenant, name) {
            Ok(_) => Ok(Applied::Nothing),
            Err(e) if e.is_not_found() => {
                let t = tenant_named(w, tenant)?;
                w.create_site(t.id, name, token_hash).map(|_| Applied::Site)
            }
            Err(e) => Err(e),
        },
        Change::SiteTokenReplaced {
            tenant,
            name,
            token_hash,
        } => {
            let site = site_named(w, tenant, name)?;
            // Already so (a rerun), or revoked since (a later record says).
            if site.revoked
                || w.site_by_token_hash(token_hash)?
                    .is_some_and(|s| s.id == site.id)
            {
                return Ok(Applied::Nothing);
            }
            w.set_site_token(site.id, token_hash)?;
            Ok(Applied::Nothing)
        }
        Change::SiteRevoked { tenant, name } => {
            let site = site_named(w, tenant, name)?;
            w.revoke_site(site.id)?;
            Ok(Applied::Nothing)
        }
        Change::BucketAdded {
            tenant,
            name,
            source_site,
        } => {
            let site = site_named(w, tenant, source_site)?;
            match w.bucket_by_name(site.tenant, name)? {
                Some(_) => Ok(Applied::Nothing),
                None => w
                    .create_bucket(site.tenant, name, site.id)
                    .map(|_| Applied::Bucket),
            }
        }
        // Setting it again is a no-op: replaying a record twice is harmless.
        Change::BucketReplicasSet {
            tenant,
            name,
            replicas,
        } => {
            set_replicas(w, tenant, name, replicas)?;
            Ok(Applied::Nothing)
        }
        Change::BucketSourceSet {
            tenant,
            name,
            source_site,
        } => {
            set_source(w, tenant, name, source_site)?;
            Ok(Applied::Nothing)
        }
        Change::TenantVerifierSet { tenant, key } => {
            let t = tenant_named(w, tenant)?;
            w.set_tenant_verifier(t.id, key.as_ref())?;
            Ok(Applied::Nothing)
        }
        // Versions come back in order, with their numbers; one already
        // there (a second replay) is left as it is.
        Change::PolicyApplied {
            tenant,
            version,
            applied_unix_ms,
            files,
        } => {
            let t = tenant_named(w, tenant)?;
            if w.policy(t.id, Some(*version))?.is_none() {
                let got = w.add_policy_version(t.id, *applied_unix_ms, files)?;
                if got != *version {
                    return Err(CatalogError::Corrupt {
                        what: "policy record",
                        detail: format!(
                            "tenant {tenant}: version {version} replayed as {got} (a version before it is missing from the pool)"
                        ),
                    });
                }
            }
            Ok(Applied::Nothing)
        }
    }
}
