//! The namespace area: tenants, sites (with their token hashes) and buckets.

use super::{Bucket, BucketId, CatalogError, Site, SiteId, Tenant, TenantId};

/// Namespace lookups.
pub trait NamespaceRead {
    /// Looks a tenant up by name.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown name is `Ok(None)`.
    fn tenant_by_name(&mut self, name: &str) -> Result<Option<Tenant>, CatalogError>;

    /// A tenant by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn tenant(&mut self, id: TenantId) -> Result<Option<Tenant>, CatalogError>;

    /// Every tenant, by name.
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn list_tenants(&mut self) -> Result<Vec<Tenant>, CatalogError>;

    /// The site authenticating with `token_hash`, unless it is revoked.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown hash or a revoked site is `Ok(None)`.
    fn site_by_token_hash(&mut self, token_hash: &[u8; 32]) -> Result<Option<Site>, CatalogError>;

    /// A site by id (revoked ones too).
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn site(&mut self, id: SiteId) -> Result<Option<Site>, CatalogError>;

    /// The sites of `tenant`, revoked ones too, by name (empty for an
    /// unknown tenant).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn list_sites(&mut self, tenant: TenantId) -> Result<Vec<Site>, CatalogError>;

    /// Looks a bucket up by tenant and name.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown name is `Ok(None)`.
    fn bucket_by_name(
        &mut self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<Bucket>, CatalogError>;

    /// A bucket by id.
    ///
    /// # Errors
    ///
    /// Storage errors only; an unknown id is `Ok(None)`.
    fn bucket(&mut self, id: BucketId) -> Result<Option<Bucket>, CatalogError>;

    /// The buckets of `tenant`, by name (empty for an unknown tenant).
    ///
    /// # Errors
    ///
    /// Storage errors only.
    fn list_buckets(&mut self, tenant: TenantId) -> Result<Vec<Bucket>, CatalogError>;
}

/// Namespace changes.
pub trait NamespaceWrite: NamespaceRead {
    /// Creates a tenant.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name, `AlreadyExists` if the name is taken.
    fn create_tenant(&mut self, name: &str) -> Result<TenantId, CatalogError>;

    /// Registers (or with `None` removes) the tenant's verifier public key:
    /// reports it signed mark copies verified, for every site's dedup.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant.
    fn set_tenant_verifier(
        &mut self,
        tenant: TenantId,
        key: Option<&[u8; 32]>,
    ) -> Result<(), CatalogError>;

    /// Creates a site of `tenant` that authenticates with a token whose hash
    /// is `token_hash`. Site names are unique per tenant, token hashes
    /// globally (revoked sites' included).
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name, `NotFound` for an unknown tenant,
    /// `AlreadyExists` if the name or the token hash is taken.
    fn create_site(
        &mut self,
        tenant: TenantId,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, CatalogError>;

    /// Revokes a site: its token is refused from now on. Revoking a revoked
    /// site is a no-op.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown site.
    fn revoke_site(&mut self, id: SiteId) -> Result<(), CatalogError>;

    /// Replaces a site's token hash; the old token is refused from now on.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown site, `Conflict` for a revoked one,
    /// `AlreadyExists` if another site has that hash.
    fn set_site_token(&mut self, id: SiteId, token_hash: &[u8; 32]) -> Result<(), CatalogError>;

    /// Creates a bucket of `tenant` written by `source_site`. Bucket names
    /// are unique per tenant.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad name or a source site of another tenant,
    /// `NotFound` for an unknown tenant or site, `AlreadyExists` if the name
    /// is taken.
    fn create_bucket(
        &mut self,
        tenant: TenantId,
        name: &str,
        source_site: SiteId,
    ) -> Result<BucketId, CatalogError>;

    /// Makes `replicas` (in any order, repeats ignored) the bucket's replica
    /// sites, in place of those it had.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket or site; `Invalid` (field
    /// `bucket.replicas`) for a site of another tenant, a revoked site, or
    /// the bucket's source.
    fn set_bucket_replicas(
        &mut self,
        bucket: BucketId,
        replicas: &[SiteId],
    ) -> Result<(), CatalogError>;

    /// Makes `site` the bucket's source: from now on it alone commits (the
    /// old source's commits are refused, even from a session it opened
    /// before). It stops being a replica if it was one.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown bucket or site; `Invalid` (field
    /// `bucket.source_site`) for a site of another tenant or a revoked one.
    fn set_bucket_source(&mut self, bucket: BucketId, site: SiteId) -> Result<(), CatalogError>;
}

/// The replica list `set_bucket_replicas` is to store for `bucket`: in id
/// order, without repeats, each a live site of the bucket's tenant other
/// than its source. The one check both engines make before they write.
///
/// # Errors
///
/// As [`NamespaceWrite::set_bucket_replicas`].
pub(crate) fn checked_replicas<R: NamespaceRead + ?Sized>(
    r: &mut R,
    bucket: BucketId,
    replicas: &[SiteId],
) -> Result<Vec<SiteId>, CatalogError> {
    let found = existing_bucket(r, bucket)?;
    let mut checked: Vec<SiteId> = Vec::with_capacity(replicas.len());
    for &id in replicas {
        let site = r.site(id)?.ok_or_else(|| CatalogError::NotFound {
            what: "site",
            key: id.to_string(),
        })?;
        let reason = if site.tenant != found.tenant {
            Some(format!("site {} belongs to another tenant", site.name))
        } else if site.revoked {
            Some(format!("site {} is revoked", site.name))
        } else if id == found.source_site {
            Some(format!("site {} is the bucket's source", site.name))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(CatalogError::Invalid {
                field: "bucket.replicas",
                reason,
            });
        }
        checked.push(id);
    }
    checked.sort();
    checked.dedup();
    Ok(checked)
}

/// Whether `site` may become the source of `bucket`: a live site of its
/// tenant. The one check both engines make before they write.
///
/// # Errors
///
/// As [`NamespaceWrite::set_bucket_source`].
pub(crate) fn check_source<R: NamespaceRead + ?Sized>(
    r: &mut R,
    bucket: BucketId,
    site: SiteId,
) -> Result<(), CatalogError> {
    let found = existing_bucket(r, bucket)?;
    let candidate = r.site(site)?.ok_or_else(|| CatalogError::NotFound {
        what: "site",
        key: site.to_string(),
    })?;
    let reason = if candidate.tenant != found.tenant {
        format!("site {} belongs to another tenant", candidate.name)
    } else if candidate.revoked {
        format!("site {} is revoked", candidate.name)
    } else {
        return Ok(());
    };
    Err(CatalogError::Invalid {
        field: "bucket.source_site",
        reason,
    })
}

/// Tenant `id`, or `NotFound`.
///
/// # Errors
///
/// `NotFound` for an unknown tenant; the engine's.
pub(crate) fn existing_tenant<R: NamespaceRead + ?Sized>(
    r: &mut R,
    id: TenantId,
) -> Result<super::Tenant, CatalogError> {
    r.tenant(id)?.ok_or_else(|| CatalogError::NotFound {
        what: "tenant",
        key: id.to_string(),
    })
}

/// Bucket `id`, or `NotFound`.
///
/// # Errors
///
/// `NotFound` for an unknown bucket; the engine's.
pub(crate) fn existing_bucket<R: NamespaceRead + ?Sized>(
    r: &mut R,
    id: BucketId,
) -> Result<super::Bucket, CatalogError> {
    r.bucket(id)?.ok_or_else(|| CatalogError::NotFound {
        what: "bucket",
        key: id.to_string(),
    })
}
