//! Conformance: What must survive reopening a catalog (or another hub opening it).

use super::*;

/// What [`populate`] wrote, for [`check_populated`] to find again (e.g. after
/// reopening a catalog).
#[derive(Debug, Clone)]
pub struct Populated {
    pub tenant_name: String,
    pub tenant: TenantId,
    pub site: SiteId,
    pub token_hash: [u8; 32],
    pub bucket: BucketId,
    pub session: crate::catalog::SessionId,
    pub pack: PackRecord,
    pub entries: Vec<(BlobOwner, PackEntry)>,
    pub commit: NewCommit,
}

/// Writes one of everything.
pub fn populate(cat: &dyn Catalog) -> Populated {
    let tenant_name = unique("persist");
    let tenant = cat.write(|w| w.create_tenant(&tenant_name)).unwrap();
    let token_hash = rand::random();
    let site = cat
        .write(|w| w.create_site(tenant, "site", &token_hash))
        .unwrap();
    let bucket = cat
        .write(|w| w.create_bucket(tenant, "bucket", site))
        .unwrap();
    let ids = [random_id(), random_id(), random_id()];
    let session = cat
        .write(|w| w.open_session(site, bucket, &ids[0], 42))
        .unwrap();
    let (pack, entries) = fake_pack(BlobOwner { tenant, site }, &ids);
    cat.record_pack(&pack, &entries).unwrap();
    let commit = new_commit(site, 7, ids.to_vec());
    assert_eq!(cat.write(|w| w.append_commit(bucket, &commit)).unwrap(), 1);
    Populated {
        tenant_name,
        tenant,
        site,
        token_hash,
        bucket,
        session,
        pack,
        entries,
        commit,
    }
}

/// Checks that everything [`populate`] wrote is still there, and that the
/// journal continues where it left off.
pub fn check_populated(cat: &dyn Catalog, p: &Populated) {
    assert_eq!(
        cat.read(|r| r.tenant_by_name(&p.tenant_name))
            .unwrap()
            .unwrap()
            .id,
        p.tenant
    );
    assert_eq!(
        cat.read(|r| r.site_by_token_hash(&p.token_hash))
            .unwrap()
            .unwrap()
            .id,
        p.site
    );
    assert_eq!(
        cat.read(|r| r.bucket_by_name(p.tenant, "bucket"))
            .unwrap()
            .unwrap()
            .id,
        p.bucket
    );
    assert_eq!(
        cat.read(|r| r.session(p.session))
            .unwrap()
            .unwrap()
            .lease_until_unix,
        42
    );
    assert!(cat.list_packs().unwrap().contains(&p.pack));
    let ids: Vec<BlobId> = p.entries.iter().map(|(_, e)| e.id).collect();
    let owner = p.entries[0].0;
    assert!(cat.missing_blobs(owner, &ids).unwrap().is_empty());
    assert_eq!(cat.blob_locations(owner, &ids).unwrap().len(), ids.len());
    let c = cat.read(|r| r.commit(p.bucket, 1)).unwrap().unwrap();
    assert_eq!(
        (c.manifest.as_slice(), c.body.as_slice()),
        (p.commit.manifest.as_slice(), p.commit.body.as_slice())
    );
    assert_eq!(
        cat.write(|w| w.append_commit(p.bucket, &p.commit)).unwrap(),
        2
    );
}
