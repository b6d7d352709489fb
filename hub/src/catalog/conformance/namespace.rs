//! Conformance: Tenants, sites and buckets.

use super::*;

/// Tenants are created once per name, found by name, and names are checked.
pub fn tenants(cat: &dyn Catalog) {
    let name = unique("tenant");
    let id = cat.write(|w| w.create_tenant(&name)).unwrap();
    let found = cat.read(|r| r.tenant_by_name(&name)).unwrap().unwrap();
    assert_eq!((found.id, found.name.as_str()), (id, name.as_str()));
    assert_already_exists(cat.write(|w| w.create_tenant(&name)));
    assert!(
        cat.read(|r| r.tenant_by_name(&unique("absent")))
            .unwrap()
            .is_none()
    );
    for bad in ["", "Upper", "has space", "sl/ash", &"x".repeat(64)] {
        assert_invalid(cat.write(|w| w.create_tenant(bad)), "tenant.name");
    }
}

/// A tenant's verifier key is registered, read back with the tenant,
/// replaced and removed.
pub fn tenant_verifier_keys(cat: &dyn Catalog) {
    let name = unique("tenant");
    let id = cat.write(|w| w.create_tenant(&name)).unwrap();
    let verifier = |cat: &dyn Catalog| cat.read(|r| r.tenant(id)).unwrap().unwrap().verifier;
    assert_eq!(verifier(cat), None);
    let (k1, k2): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
    cat.write(|w| w.set_tenant_verifier(id, Some(&k1))).unwrap();
    assert_eq!(verifier(cat), Some(k1));
    let by_name = cat.read(|r| r.tenant_by_name(&name)).unwrap().unwrap();
    assert_eq!(by_name.verifier, Some(k1));
    cat.write(|w| w.set_tenant_verifier(id, Some(&k2))).unwrap();
    assert!(
        cat.read(|r| r.list_tenants())
            .unwrap()
            .iter()
            .any(|t| t.id == id && t.verifier == Some(k2))
    );
    cat.write(|w| w.set_tenant_verifier(id, None)).unwrap();
    assert_eq!(verifier(cat), None);
    assert_not_found(cat.write(|w| w.set_tenant_verifier(TenantId(i64::MAX), Some(&k1))));
}

/// Site names are unique per tenant; tokens globally; lookups by token work.
pub fn sites(cat: &dyn Catalog) {
    let t1 = cat.write(|w| w.create_tenant(&unique("t"))).unwrap();
    let t2 = cat.write(|w| w.create_tenant(&unique("t"))).unwrap();
    let (tok_a, tok_b, tok_c) = (rand::random(), rand::random(), rand::random());
    let a = cat.write(|w| w.create_site(t1, "paris", &tok_a)).unwrap();
    let b = cat.write(|w| w.create_site(t1, "berlin", &tok_b)).unwrap();
    // The same name in another tenant is a different site.
    let c = cat.write(|w| w.create_site(t2, "paris", &tok_c)).unwrap();
    assert!(a != b && a != c && b != c);

    assert_already_exists(cat.write(|w| w.create_site(t1, "paris", &rand::random())));
    assert_already_exists(cat.write(|w| w.create_site(t1, "rome", &tok_b)));
    assert_not_found(cat.write(|w| w.create_site(TenantId(i64::MAX), "x", &rand::random())));
    assert_invalid(
        cat.write(|w| w.create_site(t1, "Paris!", &rand::random())),
        "site.name",
    );

    let found = cat.read(|r| r.site_by_token_hash(&tok_a)).unwrap().unwrap();
    assert_eq!(
        (found.id, found.tenant, found.name.as_str()),
        (a, t1, "paris")
    );
    assert!(
        cat.read(|r| r.site_by_token_hash(&rand::random()))
            .unwrap()
            .is_none()
    );
    assert_eq!(cat.read(|r| r.site(c)).unwrap().unwrap().tenant, t2);
    assert!(cat.read(|r| r.site(SiteId(i64::MAX))).unwrap().is_none());

    let names: Vec<String> = cat
        .read(|r| r.list_sites(t1))
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["berlin", "paris"]);
    assert!(
        cat.read(|r| r.list_sites(TenantId(i64::MAX)))
            .unwrap()
            .is_empty()
    );
}

/// Bucket names are unique per tenant and the source site must be the tenant's.
pub fn buckets(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let other_tenant = cat.write(|w| w.create_tenant(&unique("t"))).unwrap();
    let foreign_site = cat
        .write(|w| w.create_site(other_tenant, "s", &rand::random()))
        .unwrap();

    let found = cat
        .read(|r| r.bucket_by_name(tenant, "bucket-a"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            found.id,
            found.tenant,
            found.name.as_str(),
            found.source_site
        ),
        (bucket, tenant, "bucket-a", site)
    );
    assert_eq!(cat.read(|r| r.bucket(bucket)).unwrap(), Some(found));
    assert!(
        cat.read(|r| r.bucket(BucketId(i64::MAX)))
            .unwrap()
            .is_none()
    );
    assert_already_exists(cat.write(|w| w.create_bucket(tenant, "bucket-a", site)));
    assert_invalid(
        cat.write(|w| w.create_bucket(tenant, "b2", foreign_site)),
        "bucket.source_site",
    );
    assert_not_found(cat.write(|w| w.create_bucket(tenant, "b2", SiteId(i64::MAX))));
    assert_not_found(cat.write(|w| w.create_bucket(TenantId(i64::MAX), "b2", site)));
    assert_invalid(
        cat.write(|w| w.create_bucket(tenant, "", site)),
        "bucket.name",
    );

    // Same name in another tenant is fine.
    cat.write(|w| w.create_bucket(other_tenant, "bucket-a", foreign_site))
        .unwrap();
    let b0 = cat
        .write(|w| w.create_bucket(tenant, "a-first", site))
        .unwrap();
    let listed: Vec<BucketId> = cat
        .read(|r| r.list_buckets(tenant))
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, [b0, bucket]);
    assert!(
        cat.read(|r| r.bucket_by_name(tenant, "absent"))
            .unwrap()
            .is_none()
    );
}

/// A bucket's replicas: set, replaced and read back with every lookup, in
/// id order; only live sites of its tenant other than its source.
pub fn bucket_replicas(cat: &dyn Catalog) {
    let (tenant, source, bucket) = namespace(cat);
    let site = |name: &str| {
        cat.write(|w| w.create_site(tenant, name, &rand::random()))
            .unwrap()
    };
    let (b, c, d) = (site("site-b"), site("site-c"), site("site-d"));
    let replicas = |cat: &dyn Catalog| cat.read(|r| r.bucket(bucket)).unwrap().unwrap().replicas;
    assert!(replicas(cat).is_empty());

    cat.write(|w| w.set_bucket_replicas(bucket, &[c, b, c]))
        .unwrap();
    assert_eq!(replicas(cat), [b, c]);
    let found = cat
        .read(|r| r.bucket_by_name(tenant, "bucket-a"))
        .unwrap()
        .unwrap();
    assert_eq!(found.replicas, [b, c]);
    assert!(found.readable_by(source) && found.readable_by(b) && !found.readable_by(d));
    let listed = cat.read(|r| r.list_buckets(tenant)).unwrap();
    assert_eq!(listed[0].replicas, [b, c]);

    // Replaced whole, not added to.
    cat.write(|w| w.set_bucket_replicas(bucket, &[d])).unwrap();
    assert_eq!(replicas(cat), [d]);

    // Refused, changing nothing: the source, another tenant's site, a
    // revoked site, an unknown site or bucket.
    assert_invalid(
        cat.write(|w| w.set_bucket_replicas(bucket, &[b, source])),
        "bucket.replicas",
    );
    let other_tenant = cat.write(|w| w.create_tenant(&unique("t"))).unwrap();
    let foreign = cat
        .write(|w| w.create_site(other_tenant, "site-b", &rand::random()))
        .unwrap();
    assert_invalid(
        cat.write(|w| w.set_bucket_replicas(bucket, &[foreign])),
        "bucket.replicas",
    );
    cat.write(|w| w.revoke_site(c)).unwrap();
    assert_invalid(
        cat.write(|w| w.set_bucket_replicas(bucket, &[c])),
        "bucket.replicas",
    );
    assert_not_found(cat.write(|w| w.set_bucket_replicas(bucket, &[SiteId(i64::MAX)])));
    assert_not_found(cat.write(|w| w.set_bucket_replicas(BucketId(i64::MAX), &[b])));
    assert_eq!(replicas(cat), [d]);

    cat.write(|w| w.set_bucket_replicas(bucket, &[])).unwrap();
    assert!(replicas(cat).is_empty());
}

/// A failover: the new source alone commits from then on (the old one is
/// fenced), stops being a replica, and both are the bucket's committing
/// sites, whose copies its snapshots reference.
pub fn bucket_failover(cat: &dyn Catalog) {
    let (tenant, a, bucket) = namespace(cat);
    let b = cat
        .write(|w| w.create_site(tenant, "site-b", &rand::random()))
        .unwrap();
    let c = cat
        .write(|w| w.create_site(tenant, "site-c", &rand::random()))
        .unwrap();
    cat.write(|w| w.set_bucket_replicas(bucket, &[b, c]))
        .unwrap();
    cat.write(|w| w.append_commit(bucket, &new_commit(a, 1, vec![])))
        .unwrap();
    // A replica commits nothing.
    let refused = cat.write(|w| w.append_commit(bucket, &new_commit(b, 2, vec![])));
    assert!(
        matches!(refused, Err(CatalogError::Conflict { .. })),
        "{refused:?}"
    );

    cat.write(|w| w.set_bucket_source(bucket, b)).unwrap();
    let found = cat.read(|r| r.bucket(bucket)).unwrap().unwrap();
    assert_eq!(
        (found.source_site, found.replicas.as_slice()),
        (b, &[c][..])
    );
    let fenced = cat.write(|w| w.append_commit(bucket, &new_commit(a, 3, vec![])));
    assert!(
        matches!(fenced, Err(CatalogError::Conflict { .. })),
        "{fenced:?}"
    );
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &new_commit(b, 4, vec![])))
            .unwrap(),
        2
    );
    assert_eq!(cat.read(|r| r.committing_sites(bucket)).unwrap(), [a, b]);

    // Refused: another tenant's site, a revoked one, unknown ones.
    let (_, foreign, _) = namespace(cat);
    assert_invalid(
        cat.write(|w| w.set_bucket_source(bucket, foreign)),
        "bucket.source_site",
    );
    cat.write(|w| w.revoke_site(c)).unwrap();
    assert_invalid(
        cat.write(|w| w.set_bucket_source(bucket, c)),
        "bucket.source_site",
    );
    assert_not_found(cat.write(|w| w.set_bucket_source(bucket, SiteId(i64::MAX))));
    assert_not_found(cat.write(|w| w.set_bucket_source(BucketId(i64::MAX), a)));
    assert_eq!(
        cat.read(|r| r.bucket(bucket)).unwrap().unwrap().source_site,
        b
    );
}

/// A revoked site's token is refused at once and the site is still listed;
/// a rotated token replaces the old one, which is refused from then on.
pub fn revoked_and_rotated_tokens(cat: &dyn Catalog) {
    let tenant = tenant(cat);
    let (old, new, other) = (rand::random(), rand::random(), rand::random());
    let site = cat.write(|w| w.create_site(tenant, "site", &old)).unwrap();
    let second = cat
        .write(|w| w.create_site(tenant, "second", &other))
        .unwrap();
    cat.write(|w| w.set_site_token(site, &new)).unwrap();
    assert!(cat.read(|r| r.site_by_token_hash(&old)).unwrap().is_none());
    assert_eq!(
        cat.read(|r| r.site_by_token_hash(&new))
            .unwrap()
            .unwrap()
            .id,
        site
    );
    // A hash another site holds is refused, and nothing changes.
    assert_already_exists(cat.write(|w| w.set_site_token(site, &other)));
    assert_eq!(
        cat.read(|r| r.site_by_token_hash(&new))
            .unwrap()
            .unwrap()
            .id,
        site
    );

    cat.write(|w| w.revoke_site(second)).unwrap();
    cat.write(|w| w.revoke_site(second)).unwrap();
    assert!(
        cat.read(|r| r.site_by_token_hash(&other))
            .unwrap()
            .is_none()
    );
    let listed = cat.read(|r| r.site(second)).unwrap().unwrap();
    assert!(listed.revoked);
    assert!(!cat.read(|r| r.site(site)).unwrap().unwrap().revoked);
    // A revoked site gets no new token, and its old hash stays taken.
    assert!(matches!(
        cat.write(|w| w.set_site_token(second, &rand::random())),
        Err(CatalogError::Conflict { what: "site", .. })
    ));
    assert_already_exists(cat.write(|w| w.create_site(tenant, "third", &other)));
    assert_not_found(cat.write(|w| w.revoke_site(SiteId(i64::MAX))));
    assert_not_found(cat.write(|w| w.set_site_token(SiteId(i64::MAX), &rand::random())));
}

/// Tenants are found by id and listed by name.
pub fn tenants_by_id_and_listed(cat: &dyn Catalog) {
    let (b, a) = (unique("list-b"), unique("list-a"));
    let id_b = cat.write(|w| w.create_tenant(&b)).unwrap();
    let id_a = cat.write(|w| w.create_tenant(&a)).unwrap();
    assert_eq!(cat.read(|r| r.tenant(id_a)).unwrap().unwrap().name, a);
    assert!(
        cat.read(|r| r.tenant(TenantId(i64::MAX)))
            .unwrap()
            .is_none()
    );
    let listed: Vec<TenantId> = cat
        .read(|r| r.list_tenants())
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .filter(|t| *t == id_a || *t == id_b)
        .collect();
    assert_eq!(listed, [id_a, id_b]);
}
