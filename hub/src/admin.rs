//! Namespace changes as the `ferry-hub tenant|site|bucket` commands make
//! them: each one is a catalog unit of work that also writes its
//! namespace record to the newest pool, so the change is in the pools
//! (and `recover` can rebuild it) before it is in force.

use std::sync::Arc;

use crate::catalog::{
    Bucket, BucketId, Catalog, CatalogError, CatalogExt, DeadLetters, NamespaceRead,
    PolicyFileText, PolicyVersion, Site, SiteId, Tenant, TenantId, WriteTx,
};
use crate::config::HubConfig;
use crate::records::{Change, NamespaceRecord, RecordWriter};
use crate::server::{ServeError, open_catalog, open_pools};

/// Why a namespace command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Open(#[from] ServeError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    StoredPolicy(#[from] crate::policy::StoredPolicyError),
}

/// The catalog and the newest pool, for namespace changes.
pub struct Admin {
    catalog: Arc<dyn Catalog>,
    records: RecordWriter,
    runtime: tokio::runtime::Runtime,
}

impl Admin {
    /// Opens the configured catalog and pools.
    ///
    /// # Errors
    ///
    /// As [`open_catalog`] and [`open_pools`].
    pub fn open(config: &HubConfig) -> Result<Self, AdminError> {
        // One worker: it drives the pool's I/O while a catalog transaction
        // on this thread waits for a record to be written.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(AdminError::Runtime)?;
        let catalog = open_catalog(config)?;
        let pools = runtime.block_on(open_pools(config, &catalog))?;
        Ok(Self {
            catalog,
            records: RecordWriter::new(&pools),
            runtime,
        })
    }

    /// Runs `change` and writes `record` of it in one unit of work.
    fn change<T>(
        &self,
        mut change: impl FnMut(&mut dyn WriteTx) -> Result<(T, Change), CatalogError>,
    ) -> Result<T, AdminError> {
        self.changes(|w| change(w).map(|(out, change)| (out, vec![change])))
    }

    /// As [`Self::change`], for a unit of work that makes several changes:
    /// their records are written in order, each a millisecond after the one
    /// before, so a replay applies them in that order.
    fn changes<T>(
        &self,
        mut change: impl FnMut(&mut dyn WriteTx) -> Result<(T, Vec<Change>), CatalogError>,
    ) -> Result<T, AdminError> {
        let handle = self.runtime.handle().clone();
        Ok(self.catalog.write(|w| {
            let (out, changes) = change(w)?;
            let now = chrono::Utc::now().timestamp_millis();
            for (i, change) in changes.into_iter().enumerate() {
                let record = NamespaceRecord {
                    time_unix_ms: now + i as i64,
                    change,
                };
                self.records.put_blocking(&handle, record.encode()?)?;
            }
            Ok(out)
        })?)
    }

    /// Adds a tenant.
    ///
    /// # Errors
    ///
    /// The catalog's (`AlreadyExists`, `Invalid`) or the pool's.
    pub fn add_tenant(&self, name: &str) -> Result<TenantId, AdminError> {
        self.change(|w| {
            let id = w.create_tenant(name)?;
            Ok((id, Change::TenantAdded { name: name.into() }))
        })
    }

    /// Registers (or with `None` removes) `tenant`'s verifier public key:
    /// copies its signed reports verify count for every site's dedup.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's or the pool's.
    pub fn set_tenant_verifier(
        &self,
        tenant: &str,
        key: Option<[u8; 32]>,
    ) -> Result<(), AdminError> {
        self.change(|w| {
            let t = tenant_named(w, tenant)?;
            w.set_tenant_verifier(t.id, key.as_ref())?;
            Ok((
                (),
                Change::TenantVerifierSet {
                    tenant: tenant.into(),
                    key,
                },
            ))
        })
    }

    /// Adds a site of `tenant` authenticating with the token hashing to
    /// `token_hash`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's or the pool's.
    pub fn add_site(
        &self,
        tenant: &str,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<SiteId, AdminError> {
        self.change(|w| {
            let t = tenant_named(w, tenant)?;
            let id = w.create_site(t.id, name, token_hash)?;
            Ok((
                id,
                Change::SiteAdded {
                    tenant: tenant.into(),
                    name: name.into(),
                    token_hash: *token_hash,
                },
            ))
        })
    }

    /// Revokes a site: its token is refused from the next call on.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant or site; the catalog's or the pool's.
    pub fn revoke_site(&self, tenant: &str, name: &str) -> Result<(), AdminError> {
        self.change(|w| {
            let site = site_named(w, tenant, name)?;
            w.revoke_site(site.id)?;
            Ok((
                (),
                Change::SiteRevoked {
                    tenant: tenant.into(),
                    name: name.into(),
                },
            ))
        })
    }

    /// Gives a site the token hashing to `token_hash`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant or site, `Conflict` for a revoked
    /// one; the catalog's or the pool's.
    pub fn set_site_token(
        &self,
        tenant: &str,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<(), AdminError> {
        self.change(|w| {
            let site = site_named(w, tenant, name)?;
            w.set_site_token(site.id, token_hash)?;
            Ok((
                (),
                Change::SiteTokenReplaced {
                    tenant: tenant.into(),
                    name: name.into(),
                    token_hash: *token_hash,
                },
            ))
        })
    }

    /// Adds bucket `name` of `tenant` whose source is the site `source`,
    /// kept also at the sites `replicas`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant or site; `Invalid` for a replica
    /// that cannot be one; the catalog's or the pool's.
    pub fn add_bucket(
        &self,
        tenant: &str,
        name: &str,
        source: &str,
        replicas: &[String],
    ) -> Result<BucketId, AdminError> {
        self.changes(|w| {
            let site = site_named(w, tenant, source)?;
            let id = w.create_bucket(site.tenant, name, site.id)?;
            let mut changes = vec![Change::BucketAdded {
                tenant: tenant.into(),
                name: name.into(),
                source_site: source.into(),
            }];
            if !replicas.is_empty() {
                changes.push(set_replicas(w, tenant, name, replicas)?);
            }
            Ok((id, changes))
        })
    }

    /// Makes `replicas` the replica sites of bucket `name` of `tenant`, in
    /// place of those it had (none: the bucket is kept at its source only).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant, bucket or site; `Invalid` for a
    /// site that cannot be a replica (the source, a revoked site); the
    /// catalog's or the pool's.
    pub fn set_bucket_replicas(
        &self,
        tenant: &str,
        name: &str,
        replicas: &[String],
    ) -> Result<Bucket, AdminError> {
        self.change(|w| {
            let change = set_replicas(w, tenant, name, replicas)?;
            let t = tenant_named(w, tenant)?;
            let bucket = bucket_named(w, &t, name)?;
            Ok((bucket, change))
        })
    }

    /// Fails bucket `name` of `tenant` over to the site `to`: it becomes
    /// the source (no longer a replica) and the old source is fenced at
    /// once, its commits refused even from a session opened before.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant, bucket or site; `Invalid` for a
    /// site that cannot be the source; the catalog's or the pool's.
    pub fn fail_over(&self, tenant: &str, name: &str, to: &str) -> Result<Bucket, AdminError> {
        self.change(|w| {
            let change = set_source(w, tenant, name, to)?;
            let t = tenant_named(w, tenant)?;
            Ok((bucket_named(w, &t, name)?, change))
        })
    }

    /// Confirms the commit replica `site` holds back of bucket `name`: the
    /// replica applies it (its deletes included). Gives the commit.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant, bucket or site, or when the
    /// replica holds nothing back; the catalog's.
    pub fn confirm_hold(&self, tenant: &str, name: &str, site: &str) -> Result<u64, AdminError> {
        Ok(self.catalog.write(|w| {
            let t = tenant_named(w, tenant)?;
            let bucket = bucket_named(w, &t, name)?;
            let site = site_named(w, tenant, site)?;
            w.confirm_hold(bucket.id, site.id)
        })?)
    }

    /// Asks replica `site` of bucket `name` of `tenant` to try its dead
    /// letters again; gives how many there are.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant, bucket or site, or when the
    /// replica has no dead letters; the catalog's.
    pub fn request_replay(&self, tenant: &str, name: &str, site: &str) -> Result<u64, AdminError> {
        Ok(self.catalog.write(|w| {
            let t = tenant_named(w, tenant)?;
            let bucket = bucket_named(w, &t, name)?;
            let site = site_named(w, tenant, site)?;
            w.request_replay(bucket.id, site.id)
        })?)
    }

    /// The dead letters replica `site` of bucket `name` of `tenant` has
    /// (None: the last commit it applied was written whole).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant, bucket or site; the catalog's.
    pub fn dead_letters(
        &self,
        tenant: &str,
        name: &str,
        site: &str,
    ) -> Result<Option<DeadLetters>, AdminError> {
        Ok(self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            let bucket = bucket_named(r, &t, name)?;
            let site = site_named(r, tenant, site)?;
            let Some(count) = r
                .replica_troubles(bucket.id)?
                .into_iter()
                .find(|t| t.site == site.id)
                .and_then(|t| t.dead)
            else {
                return Ok(None);
            };
            Ok(Some(DeadLetters {
                seq: count.seq,
                letters: r.dead_letters(bucket.id, site.id)?,
                total: count.total,
            }))
        })?)
    }

    /// Pauses (`paused`) or resumes replication of bucket `name` of
    /// `tenant`; gives when the pause in force began.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant or bucket; the catalog's.
    pub fn pause_replication(
        &self,
        tenant: &str,
        name: &str,
        paused: bool,
    ) -> Result<Option<i64>, AdminError> {
        let now_unix_ms = chrono::Utc::now().timestamp_millis();
        Ok(self.catalog.write(|w| {
            let t = tenant_named(w, tenant)?;
            let bucket = bucket_named(w, &t, name)?;
            w.set_replication_paused(bucket.id, paused, now_unix_ms)?;
            Ok(w.replication_pause(bucket.id)?.paused_unix_ms)
        })?)
    }

    /// Makes the site `site` (an old source back again) a replica of bucket
    /// `name` of `tenant` beside those it has, in one unit of work.
    ///
    /// # Errors
    ///
    /// As [`Self::set_bucket_replicas`].
    pub fn fail_back(&self, tenant: &str, name: &str, site: &str) -> Result<Bucket, AdminError> {
        self.change(|w| {
            let t = tenant_named(w, tenant)?;
            let current = bucket_named(w, &t, name)?;
            let mut replicas = names_of(w, &current.replicas)?;
            replicas.push(site.into());
            let change = set_replicas(w, tenant, name, &replicas)?;
            Ok((bucket_named(w, &t, name)?, change))
        })
    }

    /// Names of the sites `ids`, in that order.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown site; the catalog's.
    pub fn site_names(&self, ids: &[SiteId]) -> Result<Vec<String>, AdminError> {
        Ok(self.catalog.read(|r| names_of(r, ids))?)
    }

    /// The site `name` of `tenant`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant or site; the catalog's.
    pub fn site(&self, tenant: &str, name: &str) -> Result<Site, AdminError> {
        Ok(self.catalog.read(|r| site_named(r, tenant, name))?)
    }

    /// The sites of `tenant`, revoked ones too.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's.
    pub fn sites(&self, tenant: &str) -> Result<Vec<Site>, AdminError> {
        Ok(self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            r.list_sites(t.id)
        })?)
    }

    /// Every tenant, by name.
    ///
    /// # Errors
    ///
    /// The catalog's.
    pub fn tenants(&self) -> Result<Vec<crate::catalog::Tenant>, AdminError> {
        Ok(self.catalog.read(|r| r.list_tenants())?)
    }

    /// Records `files` as `tenant`'s next policy version (and its record
    /// in the pool, so `recover` brings it back); gives its number.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's or the pool's.
    pub fn apply_policy(&self, tenant: &str, files: &[PolicyFileText]) -> Result<u64, AdminError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.change(|w| {
            let t = tenant_named(w, tenant)?;
            let version = w.add_policy_version(t.id, now, files)?;
            let change = Change::PolicyApplied {
                tenant: tenant.to_owned(),
                version,
                applied_unix_ms: now,
                files: files.to_vec(),
            };
            Ok((version, change))
        })
    }

    /// Version `version` of `tenant`'s policy (the one in force for `None`).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's.
    pub fn policy(
        &self,
        tenant: &str,
        version: Option<u64>,
    ) -> Result<Option<PolicyVersion>, AdminError> {
        Ok(self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            r.policy(t.id, version)
        })?)
    }

    /// Every version of `tenant`'s policy, oldest first (file names only).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's.
    pub fn policy_history(&self, tenant: &str) -> Result<Vec<PolicyVersion>, AdminError> {
        Ok(self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            r.policy_history(t.id)
        })?)
    }

    /// What the policy in force for `tenant` keeps and forgets of each of
    /// its buckets' commits (only `only`'s, when given) as of `now` (a
    /// bucket with no retention rules keeps everything). Reads only.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; a stored policy that no longer
    /// parses; the catalog's.
    pub fn retention(
        &self,
        tenant: &str,
        only: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(Bucket, crate::retention::BucketRetention)>, AdminError> {
        let (version, buckets) = self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            Ok((r.policy(t.id, None)?, r.list_buckets(t.id)?))
        })?;
        let policy = crate::policy::tenant_policy(version.as_ref(), tenant)?;
        let mut out = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            if only.is_some_and(|name| name != bucket.name) {
                continue;
            }
            // One bucket's commits at a time: memory holds one journal.
            let commits = self
                .catalog
                .read(|r| crate::retention::commits_of(r, &bucket))?;
            let weighed = crate::retention::evaluate(&policy, &bucket.name, &commits, now);
            out.push((bucket, weighed));
        }
        Ok(out)
    }

    /// The buckets of `tenant`.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's.
    pub fn buckets(&self, tenant: &str) -> Result<Vec<Bucket>, AdminError> {
        Ok(self.catalog.read(|r| {
            let t = tenant_named(r, tenant)?;
            r.list_buckets(t.id)
        })?)
    }

    /// The lag of every replica of `tenant`'s buckets (every tenant's
    /// with `None`).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown tenant; the catalog's.
    pub fn replica_lags(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<crate::lag::ReplicaLag>, AdminError> {
        let now = chrono::Utc::now().timestamp_millis();
        Ok(self.catalog.read(|r| {
            let tenants = match tenant {
                Some(name) => vec![tenant_named(r, name)?],
                None => r.list_tenants()?,
            };
            crate::lag::replica_lags(r, &tenants, now)
        })?)
    }
}

/// The tenant called `name`, or `NotFound` saying how to add it.
pub(crate) fn tenant_named(
    r: &mut (impl crate::catalog::NamespaceRead + ?Sized),
    name: &str,
) -> Result<Tenant, CatalogError> {
    r.tenant_by_name(name)?
        .ok_or_else(|| CatalogError::NotFound {
            what: "tenant",
            key: format!("{name:?} (add it with `ferry-hub tenant add {name}`)"),
        })
}

/// The site `name` of tenant `tenant`, or `NotFound`.
pub(crate) fn site_named(
    r: &mut (impl crate::catalog::NamespaceRead + ?Sized),
    tenant: &str,
    name: &str,
) -> Result<Site, CatalogError> {
    let t = tenant_named(r, tenant)?;
    r.list_sites(t.id)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| CatalogError::NotFound {
            what: "site",
            key: format!("{name:?} in tenant {tenant}"),
        })
}

/// Makes the site `source` the source of bucket `name` of `tenant` (a
/// failover) and gives the record of it.
pub(crate) fn set_source(
    w: &mut dyn WriteTx,
    tenant: &str,
    name: &str,
    source: &str,
) -> Result<Change, CatalogError> {
    let t = tenant_named(w, tenant)?;
    let bucket = bucket_named(w, &t, name)?;
    let site = site_named(w, tenant, source)?;
    w.set_bucket_source(bucket.id, site.id)?;
    Ok(Change::BucketSourceSet {
        tenant: tenant.into(),
        name: name.into(),
        source_site: source.into(),
    })
}

/// Sets the replicas of bucket `name` of `tenant` to the sites `replicas`
/// and gives the record of it.
pub(crate) fn set_replicas(
    w: &mut dyn WriteTx,
    tenant: &str,
    name: &str,
    replicas: &[String],
) -> Result<Change, CatalogError> {
    let t = tenant_named(w, tenant)?;
    let bucket = bucket_named(w, &t, name)?;
    let sites = replicas
        .iter()
        .map(|site| site_named(w, tenant, site).map(|s| s.id))
        .collect::<Result<Vec<_>, _>>()?;
    w.set_bucket_replicas(bucket.id, &sites)?;
    let mut names = replicas.to_vec();
    names.sort();
    names.dedup();
    Ok(Change::BucketReplicasSet {
        tenant: tenant.into(),
        name: name.into(),
        replicas: names,
    })
}

/// Names of the sites `ids`, in that order, or NotFound.
fn names_of<R: NamespaceRead + ?Sized>(
    r: &mut R,
    ids: &[SiteId],
) -> Result<Vec<String>, CatalogError> {
    ids.iter()
        .map(|&id| {
            r.site(id)?
                .map(|s| s.name)
                .ok_or_else(|| CatalogError::NotFound {
                    what: "site",
                    key: id.to_string(),
                })
        })
        .collect()
}

/// Bucket `name` of tenant `t`, or NotFound.
fn bucket_named<R: NamespaceRead + ?Sized>(
    r: &mut R,
    t: &crate::catalog::Tenant,
    name: &str,
) -> Result<Bucket, CatalogError> {
    r.bucket_by_name(t.id, name)?
        .ok_or_else(|| CatalogError::NotFound {
            what: "bucket",
            key: format!("{}/{name}", t.name),
        })
}
