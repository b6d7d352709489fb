//! The conformance suite every [`Catalog`] must pass.
//!
//! Plain functions over `&dyn Catalog`, compiled always so a PostgreSQL
//! catalog (or another crate) can run the same checks. Each check makes its
//! own uniquely named tenants, random blob ids and random pack names, so the
//! suite works on a catalog that already holds data. Failures panic: this is
//! test code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a conformance failure is a test failure"
)]

use std::collections::BTreeSet;

use ferry_proto::{BlobId, BlobKind};

use super::{
    BucketId, Catalog, CatalogError, CommitKind, NewCommit, PackEntry, PackRecord, SiteId, TenantId,
};

/// Runs every check in this module against `cat`.
pub fn run_all(cat: &dyn Catalog) {
    tenants(cat);
    sites(cat);
    buckets(cat);
    sessions(cat);
    record_and_locate_blobs(cat);
    first_location_wins(cat);
    record_pack_is_idempotent(cat);
    record_pack_rejects_bad_input(cat);
    missing_blobs_in_bulk(cat);
    blobs_are_per_tenant(cat);
    one_pack_holds_several_tenants(cat);
    same_pack_recorded_for_another_tenant(cat);
    record_pack_needs_known_tenants(cat);
    journal_sequence(cat);
    journal_queries(cat);
    commit_requires_stored_blobs(cat);
    commit_checks_blobs_of_its_tenant(cat);
    commit_checks_bucket_and_site(cat);
    concurrent_append_commit(cat);
}

/// `base` plus a random suffix, so runs never collide on names.
fn unique(base: &str) -> String {
    format!("{base}-{:08x}", rand::random::<u32>())
}

fn random_id() -> BlobId {
    BlobId(rand::random())
}

/// A fresh tenant with nothing in it.
pub fn tenant(cat: &dyn Catalog) -> TenantId {
    cat.create_tenant(&unique("t")).unwrap()
}

/// A fresh tenant with one site and one bucket sourced from it.
pub fn namespace(cat: &dyn Catalog) -> (TenantId, SiteId, BucketId) {
    let tenant = cat.create_tenant(&unique("t")).unwrap();
    let site = cat.create_site(tenant, "site-a", &rand::random()).unwrap();
    let bucket = cat.create_bucket(tenant, "bucket-a", site).unwrap();
    (tenant, site, bucket)
}

/// A pack record plus entries for `ids`, all of `tenant`, laid out as a real
/// pack would be (the catalog never reads the pack itself).
pub fn fake_pack(tenant: TenantId, ids: &[BlobId]) -> (PackRecord, Vec<(TenantId, PackEntry)>) {
    let blobs: Vec<(TenantId, BlobId)> = ids.iter().map(|id| (tenant, *id)).collect();
    fake_mixed_pack(&blobs)
}

/// Like [`fake_pack`], for a pack holding blobs of several tenants.
pub fn fake_mixed_pack(blobs: &[(TenantId, BlobId)]) -> (PackRecord, Vec<(TenantId, PackEntry)>) {
    let header_id = random_id();
    let entries: Vec<(TenantId, PackEntry)> = blobs
        .iter()
        .zip(0u64..)
        .map(|((tenant, id), i)| {
            let entry = PackEntry {
                id: *id,
                kind: BlobKind::Data,
                flags: (i % 2) as u8,
                header_id,
                offset: 8 + i * 10,
                length: 10,
            };
            (*tenant, entry)
        })
        .collect();
    let hash: [u8; 32] = rand::random();
    let record = PackRecord {
        name: hex::encode(hash),
        pool: "conformance-pool".to_owned(),
        size: 8 + 10 * blobs.len() as u64 + 100,
        hash,
    };
    (record, entries)
}

/// Records a fake pack holding `ids` for `tenant` and returns it.
pub fn store_blobs(cat: &dyn Catalog, tenant: TenantId, ids: &[BlobId]) -> PackRecord {
    let (record, entries) = fake_pack(tenant, ids);
    cat.record_pack(&record, &entries).unwrap();
    record
}

fn assert_invalid(result: Result<impl std::fmt::Debug, CatalogError>, field: &str) {
    match result {
        Err(CatalogError::Invalid { field: f, .. }) if f == field => {}
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
}

fn assert_already_exists(result: Result<impl std::fmt::Debug, CatalogError>) {
    assert!(
        matches!(result, Err(CatalogError::AlreadyExists { .. })),
        "expected AlreadyExists, got {result:?}"
    );
}

fn assert_not_found(result: Result<impl std::fmt::Debug, CatalogError>) {
    assert!(
        matches!(result, Err(CatalogError::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

/// Tenants are created once per name, found by name, and names are checked.
pub fn tenants(cat: &dyn Catalog) {
    let name = unique("tenant");
    let id = cat.create_tenant(&name).unwrap();
    let found = cat.tenant_by_name(&name).unwrap().unwrap();
    assert_eq!((found.id, found.name.as_str()), (id, name.as_str()));
    assert_already_exists(cat.create_tenant(&name));
    assert!(cat.tenant_by_name(&unique("absent")).unwrap().is_none());
    for bad in ["", "Upper", "has space", "sl/ash", &"x".repeat(64)] {
        assert_invalid(cat.create_tenant(bad), "tenant.name");
    }
}

/// Site names are unique per tenant; tokens globally; lookups by token work.
pub fn sites(cat: &dyn Catalog) {
    let t1 = cat.create_tenant(&unique("t")).unwrap();
    let t2 = cat.create_tenant(&unique("t")).unwrap();
    let (tok_a, tok_b, tok_c) = (rand::random(), rand::random(), rand::random());
    let a = cat.create_site(t1, "paris", &tok_a).unwrap();
    let b = cat.create_site(t1, "berlin", &tok_b).unwrap();
    // The same name in another tenant is a different site.
    let c = cat.create_site(t2, "paris", &tok_c).unwrap();
    assert!(a != b && a != c && b != c);

    assert_already_exists(cat.create_site(t1, "paris", &rand::random()));
    assert_already_exists(cat.create_site(t1, "rome", &tok_b));
    assert_not_found(cat.create_site(TenantId(i64::MAX), "x", &rand::random()));
    assert_invalid(cat.create_site(t1, "Paris!", &rand::random()), "site.name");

    let found = cat.site_by_token_hash(&tok_a).unwrap().unwrap();
    assert_eq!(
        (found.id, found.tenant, found.name.as_str()),
        (a, t1, "paris")
    );
    assert!(cat.site_by_token_hash(&rand::random()).unwrap().is_none());
    assert_eq!(cat.site(c).unwrap().unwrap().tenant, t2);
    assert!(cat.site(SiteId(i64::MAX)).unwrap().is_none());

    let names: Vec<String> = cat
        .list_sites(t1)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["berlin", "paris"]);
    assert!(cat.list_sites(TenantId(i64::MAX)).unwrap().is_empty());
}

/// Bucket names are unique per tenant and the source site must be the tenant's.
pub fn buckets(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let other_tenant = cat.create_tenant(&unique("t")).unwrap();
    let foreign_site = cat.create_site(other_tenant, "s", &rand::random()).unwrap();

    let found = cat.bucket_by_name(tenant, "bucket-a").unwrap().unwrap();
    assert_eq!(
        (
            found.id,
            found.tenant,
            found.name.as_str(),
            found.source_site
        ),
        (bucket, tenant, "bucket-a", site)
    );
    assert_eq!(cat.bucket(bucket).unwrap(), Some(found));
    assert!(cat.bucket(BucketId(i64::MAX)).unwrap().is_none());
    assert_already_exists(cat.create_bucket(tenant, "bucket-a", site));
    assert_invalid(
        cat.create_bucket(tenant, "b2", foreign_site),
        "bucket.source_site",
    );
    assert_not_found(cat.create_bucket(tenant, "b2", SiteId(i64::MAX)));
    assert_not_found(cat.create_bucket(TenantId(i64::MAX), "b2", site));
    assert_invalid(cat.create_bucket(tenant, "", site), "bucket.name");

    // Same name in another tenant is fine.
    cat.create_bucket(other_tenant, "bucket-a", foreign_site)
        .unwrap();
    let b0 = cat.create_bucket(tenant, "a-first", site).unwrap();
    let listed: Vec<BucketId> = cat
        .list_buckets(tenant)
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, [b0, bucket]);
    assert!(cat.bucket_by_name(tenant, "absent").unwrap().is_none());
}

/// Sessions open, renew (never shrinking the lease), and close for good.
pub fn sessions(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    let header = random_id();
    let id = cat.open_session(site, bucket, &header, 1_000).unwrap();
    let s = cat.session(id).unwrap().unwrap();
    assert_eq!(
        (s.id, s.site, s.bucket, s.header_id),
        (id, site, bucket, header)
    );
    assert_eq!((s.lease_until_unix, s.closed), (1_000, false));
    assert!(s.is_live(999) && !s.is_live(1_000));

    cat.renew_session(id, 2_000).unwrap();
    cat.renew_session(id, 1_500).unwrap();
    assert_eq!(cat.session(id).unwrap().unwrap().lease_until_unix, 2_000);

    cat.close_session(id).unwrap();
    cat.close_session(id).unwrap();
    let s = cat.session(id).unwrap().unwrap();
    assert!(s.closed && !s.is_live(0));
    assert!(matches!(
        cat.renew_session(id, 3_000),
        Err(CatalogError::Conflict {
            what: "session",
            ..
        })
    ));

    let absent = super::SessionId(i64::MAX);
    assert!(cat.session(absent).unwrap().is_none());
    assert_not_found(cat.renew_session(absent, 1));
    assert_not_found(cat.close_session(absent));
    assert_not_found(cat.open_session(SiteId(i64::MAX), bucket, &header, 1));
    assert_not_found(cat.open_session(site, BucketId(i64::MAX), &header, 1));
    let (_, foreign_site, _) = namespace(cat);
    assert_invalid(
        cat.open_session(foreign_site, bucket, &header, 1),
        "session.site",
    );
}

/// Recorded blobs stop being missing and can be located; lists keep input
/// order and drop duplicates.
pub fn record_and_locate_blobs(cat: &dyn Catalog) {
    let t = tenant(cat);
    let ids: Vec<BlobId> = (0..5).map(|_| random_id()).collect();
    let absent = random_id();
    assert_eq!(cat.missing_blobs(t, &ids).unwrap(), ids);
    assert!(cat.missing_blobs(t, &[]).unwrap().is_empty());

    let (record, entries) = fake_pack(t, &ids);
    let before = packs_in(cat, &record.pool);
    assert_eq!(cat.record_pack(&record, &entries).unwrap(), ids.len());
    assert!(cat.list_packs().unwrap().contains(&record));
    assert_eq!(packs_in(cat, &record.pool), before + 1);

    let query = [absent, ids[3], ids[0], absent, ids[3]];
    assert_eq!(cat.missing_blobs(t, &query).unwrap(), [absent]);
    let locs = cat.blob_locations(t, &query).unwrap();
    assert_eq!(
        locs.iter().map(|l| l.id).collect::<Vec<_>>(),
        [ids[3], ids[0]]
    );
    for loc in &locs {
        let (_, e) = entries.iter().find(|(_, e)| e.id == loc.id).unwrap();
        assert_eq!(
            (loc.kind, loc.flags, loc.header_id, loc.offset, loc.length),
            (e.kind, e.flags, e.header_id, e.offset, e.length)
        );
        assert_eq!(
            (loc.pool.as_str(), loc.pack.as_str()),
            (record.pool.as_str(), record.name.as_str())
        );
    }
    assert!(cat.blob_locations(t, &[absent]).unwrap().is_empty());
}

fn packs_in(cat: &dyn Catalog, pool: &str) -> u64 {
    let per_pool = cat.packs_per_pool().unwrap();
    per_pool
        .iter()
        .find(|(p, _)| p == pool)
        .map_or(0, |(_, n)| *n)
}

/// A blob stored twice keeps the location of the first pack.
pub fn first_location_wins(cat: &dyn Catalog) {
    let t = tenant(cat);
    let old = random_id();
    let new = random_id();
    let first = store_blobs(cat, t, &[old]);
    let (second, entries) = fake_pack(t, &[new, old]);
    assert_eq!(cat.record_pack(&second, &entries).unwrap(), 1);
    let locs = cat.blob_locations(t, &[old, new]).unwrap();
    assert_eq!(locs[0].pack, first.name);
    assert_eq!(locs[1].pack, second.name);
}

/// Recording the same pack twice stores nothing new and is not an error;
/// recording a different pack under the same name is a conflict.
pub fn record_pack_is_idempotent(cat: &dyn Catalog) {
    let t = tenant(cat);
    let ids = [random_id(), random_id()];
    let (record, entries) = fake_pack(t, &ids);
    assert_eq!(cat.record_pack(&record, &entries).unwrap(), 2);
    assert_eq!(cat.record_pack(&record, &entries).unwrap(), 0);
    let changed = PackRecord {
        size: record.size + 1,
        ..record.clone()
    };
    assert!(matches!(
        cat.record_pack(&changed, &entries),
        Err(CatalogError::Conflict { what: "pack", .. })
    ));
    let packs = cat.list_packs().unwrap();
    assert_eq!(packs.iter().filter(|p| p.name == record.name).count(), 1);
}

/// Malformed pack records are refused whole: nothing of them is stored.
pub fn record_pack_rejects_bad_input(cat: &dyn Catalog) {
    let t = tenant(cat);
    let ids = [random_id(), random_id()];
    let (record, mut entries) = fake_pack(t, &ids);
    entries[1].1.offset = record.size - 5;
    assert_invalid(cat.record_pack(&record, &entries), "pack entry");
    entries[1].1.offset = u64::MAX;
    assert_invalid(cat.record_pack(&record, &entries), "pack entry");

    let (record, entries) = fake_pack(t, &ids);
    let renamed = PackRecord {
        name: "0".repeat(64),
        ..record.clone()
    };
    assert_invalid(cat.record_pack(&renamed, &entries), "pack.name");
    let bad_pool = PackRecord {
        pool: "Bad Pool".to_owned(),
        ..record.clone()
    };
    assert_invalid(cat.record_pack(&bad_pool, &entries), "pack.pool");
    let huge = PackRecord {
        size: u64::MAX,
        ..record.clone()
    };
    assert_invalid(cat.record_pack(&huge, &entries), "pack.size");

    assert_eq!(cat.missing_blobs(t, &ids).unwrap(), ids);
    assert!(
        !cat.list_packs()
            .unwrap()
            .iter()
            .any(|p| p.hash == record.hash)
    );
}

/// Membership queries work for large batches (10,000 and 20,000 ids).
pub fn missing_blobs_in_bulk(cat: &dyn Catalog) {
    let t = tenant(cat);
    let ids: Vec<BlobId> = (0..10_000).map(|_| random_id()).collect();
    let stored: Vec<BlobId> = ids.iter().step_by(3).copied().collect();
    let (record, entries) = fake_pack(t, &stored);
    assert_eq!(cat.record_pack(&record, &entries).unwrap(), stored.len());
    let missing = cat.missing_blobs(t, &ids).unwrap();
    let expected: Vec<BlobId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(missing, expected);
    // Asked twice over, each missing id is still listed once, in order
    // (a long list may be looked up in parts: the repeats fall in another).
    let twice: Vec<BlobId> = ids.iter().chain(&ids).copied().collect();
    assert_eq!(cat.missing_blobs(t, &twice).unwrap(), expected);
    assert_eq!(cat.blob_locations(t, &ids).unwrap().len(), stored.len());
    // Another tenant sees none of them, however many are asked.
    let other = tenant(cat);
    assert_eq!(cat.missing_blobs(other, &ids).unwrap(), ids);
    assert!(cat.blob_locations(other, &ids).unwrap().is_empty());
}

/// Blobs are keyed by (tenant, id): an id one tenant stored is missing for
/// another and cannot be located by it; once the other tenant stores the
/// same id, each has its own location and the first tenant's is unchanged.
pub fn blobs_are_per_tenant(cat: &dyn Catalog) {
    let (a, b) = (tenant(cat), tenant(cat));
    let ids = [random_id(), random_id(), random_id()];
    let pack_a = store_blobs(cat, a, &ids);
    let locs_a = cat.blob_locations(a, &ids).unwrap();
    assert_eq!(locs_a.len(), ids.len());
    assert!(locs_a.iter().all(|l| l.pack == pack_a.name));

    // (a) membership does not leak across tenants, (b) nor do locations.
    assert_eq!(cat.missing_blobs(b, &ids).unwrap(), ids);
    assert!(cat.blob_locations(b, &ids).unwrap().is_empty());
    // An unknown tenant has stored nothing either.
    assert_eq!(cat.missing_blobs(TenantId(i64::MAX), &ids).unwrap(), ids);
    assert!(
        cat.blob_locations(TenantId(i64::MAX), &ids)
            .unwrap()
            .is_empty()
    );

    // (c) B storing the same ids is a new store for B and leaves A alone.
    let (pack_b, entries_b) = fake_pack(b, &[ids[1], ids[0]]);
    assert_eq!(cat.record_pack(&pack_b, &entries_b).unwrap(), 2);
    assert_eq!(cat.missing_blobs(b, &ids).unwrap(), [ids[2]]);
    let locs_b = cat.blob_locations(b, &ids).unwrap();
    assert_eq!(
        locs_b.iter().map(|l| l.id).collect::<Vec<_>>(),
        [ids[0], ids[1]]
    );
    for loc in &locs_b {
        let (_, e) = entries_b.iter().find(|(_, e)| e.id == loc.id).unwrap();
        assert_eq!(
            (loc.pack.as_str(), loc.offset, loc.header_id),
            (pack_b.name.as_str(), e.offset, e.header_id)
        );
    }
    assert_eq!(cat.blob_locations(a, &ids).unwrap(), locs_a);
    assert!(cat.missing_blobs(a, &ids).unwrap().is_empty());

    // A storing them again does not move A's blobs either.
    let (again, entries) = fake_pack(a, &ids);
    assert_eq!(cat.record_pack(&again, &entries).unwrap(), 0);
    assert_eq!(cat.blob_locations(a, &ids).unwrap(), locs_a);
    assert_eq!(cat.blob_locations(b, &ids).unwrap(), locs_b);
}

/// One pack may hold blobs of several tenants, even the same id twice; each
/// tenant finds only its own copy, and a (tenant, id) repeated in one pack is
/// stored once, at its first entry.
pub fn one_pack_holds_several_tenants(cat: &dyn Catalog) {
    let (a, b) = (tenant(cat), tenant(cat));
    let (shared, only_a, only_b) = (random_id(), random_id(), random_id());
    let (record, entries) = fake_mixed_pack(&[
        (a, shared),
        (b, shared),
        (a, only_a),
        (b, only_b),
        (a, shared),
    ]);
    assert_eq!(cat.record_pack(&record, &entries).unwrap(), 4);
    let ask = [shared, only_a, only_b];
    let at = |t| {
        cat.blob_locations(t, &ask)
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.offset))
            .collect::<Vec<_>>()
    };
    let offset = |i: usize| entries[i].1.offset;
    assert_eq!(at(a), [(shared, offset(0)), (only_a, offset(2))]);
    assert_eq!(at(b), [(shared, offset(1)), (only_b, offset(3))]);
    assert_eq!(cat.missing_blobs(a, &ask).unwrap(), [only_b]);
    assert_eq!(cat.missing_blobs(b, &ask).unwrap(), [only_a]);
}

/// Packs are named by content, so another tenant may upload the very same
/// pack: recording it again with that tenant's entries stores them, pointing
/// at the one pack, and leaves the first tenant's blobs alone.
pub fn same_pack_recorded_for_another_tenant(cat: &dyn Catalog) {
    let (a, b) = (tenant(cat), tenant(cat));
    let ids = [random_id(), random_id()];
    let (record, entries_a) = fake_pack(a, &ids);
    assert_eq!(cat.record_pack(&record, &entries_a).unwrap(), 2);
    let locs_a = cat.blob_locations(a, &ids).unwrap();
    let entries_b: Vec<(TenantId, PackEntry)> = entries_a.iter().map(|(_, e)| (b, *e)).collect();
    assert_eq!(cat.record_pack(&record, &entries_b).unwrap(), 2);
    assert_eq!(cat.record_pack(&record, &entries_b).unwrap(), 0);
    let locs_b = cat.blob_locations(b, &ids).unwrap();
    assert_eq!(locs_b, locs_a);
    assert_eq!(cat.blob_locations(a, &ids).unwrap(), locs_a);
    let packs = cat.list_packs().unwrap();
    assert_eq!(packs.iter().filter(|p| p.name == record.name).count(), 1);
}

/// A pack naming an unknown tenant is refused whole.
pub fn record_pack_needs_known_tenants(cat: &dyn Catalog) {
    let a = tenant(cat);
    let ids = [random_id(), random_id()];
    let (record, entries) = fake_mixed_pack(&[(a, ids[0]), (TenantId(i64::MAX), ids[1])]);
    assert_not_found(cat.record_pack(&record, &entries));
    assert_eq!(cat.missing_blobs(a, &ids).unwrap(), ids);
    assert!(
        !cat.list_packs()
            .unwrap()
            .iter()
            .any(|p| p.hash == record.hash)
    );
}

/// A commit by `site` at `time_unix_ms` whose manifest is `manifest`.
pub fn new_commit(site: SiteId, time_unix_ms: i64, manifest: Vec<BlobId>) -> NewCommit {
    NewCommit {
        site,
        time_unix_ms,
        kind: CommitKind::Batch,
        body: format!("body at {time_unix_ms}").into_bytes(),
        files: manifest.len() as u64,
        bytes: 1 << 40,
        manifest,
    }
}

/// Sequence numbers start at 1 per bucket and have no gaps; commits read back
/// exactly as written.
pub fn journal_sequence(cat: &dyn Catalog) {
    let (tenant, site, b1) = namespace(cat);
    let b2 = cat.create_bucket(tenant, "bucket-b", site).unwrap();
    let blobs = [random_id(), random_id()];
    store_blobs(cat, tenant, &blobs);

    let mut snapshot = new_commit(site, 10, blobs.to_vec());
    snapshot.kind = CommitKind::Snapshot;
    assert_eq!(cat.append_commit(b1, &snapshot).unwrap(), 1);
    assert_eq!(
        cat.append_commit(b1, &new_commit(site, 20, vec![]))
            .unwrap(),
        2
    );
    assert_eq!(
        cat.append_commit(b2, &new_commit(site, 5, vec![])).unwrap(),
        1
    );
    assert_eq!(
        cat.append_commit(b1, &new_commit(site, 30, vec![blobs[1]]))
            .unwrap(),
        3
    );

    let c1 = cat.commit(b1, 1).unwrap().unwrap();
    assert_eq!(c1.seq, 1);
    assert_eq!(
        (
            c1.site,
            c1.time_unix_ms,
            c1.kind,
            &c1.manifest,
            &c1.body,
            c1.files,
            c1.bytes
        ),
        (
            snapshot.site,
            snapshot.time_unix_ms,
            snapshot.kind,
            &snapshot.manifest,
            &snapshot.body,
            snapshot.files,
            snapshot.bytes
        )
    );
    assert!(cat.commit(b1, 4).unwrap().is_none());
    assert!(cat.commit(b1, 0).unwrap().is_none());
    assert!(cat.commit(b1, u64::MAX).unwrap().is_none());
    assert_eq!(cat.commit(b2, 1).unwrap().unwrap().time_unix_ms, 5);
}

/// Paging through the journal and finding the commit at a point in time.
pub fn journal_queries(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    for t in [100, 200, 200, 300, 400] {
        cat.append_commit(bucket, &new_commit(site, t, vec![]))
            .unwrap();
    }
    let seqs = |v: Vec<super::Commit>| v.into_iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(seqs(cat.commits(bucket, 0, 100).unwrap()), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(cat.commits(bucket, 1, 2).unwrap()), [2, 3]);
    assert_eq!(seqs(cat.commits(bucket, 4, 10).unwrap()), [5]);
    assert!(cat.commits(bucket, 5, 10).unwrap().is_empty());
    assert!(cat.commits(bucket, 0, 0).unwrap().is_empty());
    assert!(cat.commits(bucket, u64::MAX, 10).unwrap().is_empty());
    assert!(cat.commits(BucketId(i64::MAX), 0, 10).unwrap().is_empty());

    let at = |t| {
        cat.latest_commit_at_or_before(bucket, t)
            .unwrap()
            .map(|c| c.seq)
    };
    assert_eq!(at(99), None);
    assert_eq!(at(100), Some(1));
    assert_eq!(at(250), Some(3));
    assert_eq!(at(200), Some(3));
    assert_eq!(at(i64::MAX), Some(5));
}

/// A commit that references a blob the hub does not hold is refused, and
/// takes no sequence number.
pub fn commit_requires_stored_blobs(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let stored = random_id();
    let absent = random_id();
    store_blobs(cat, tenant, &[stored]);
    let err = cat
        .append_commit(bucket, &new_commit(site, 1, vec![stored, absent, absent]))
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingBlobs { count: 1, first } if first == absent),
        "{err:?}"
    );
    assert_eq!(
        cat.append_commit(bucket, &new_commit(site, 2, vec![stored]))
            .unwrap(),
        1
    );
}

/// A commit may reference only blobs of its bucket's tenant: another
/// tenant's copy of an id does not count.
pub fn commit_checks_blobs_of_its_tenant(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let (other, _, _) = namespace(cat);
    let (own, foreign) = (random_id(), random_id());
    store_blobs(cat, tenant, &[own]);
    store_blobs(cat, other, &[own, foreign]);
    let err = cat
        .append_commit(bucket, &new_commit(site, 1, vec![own, foreign]))
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingBlobs { count: 1, first } if first == foreign),
        "{err:?}"
    );
    assert!(cat.commits(bucket, 0, 10).unwrap().is_empty());
    store_blobs(cat, tenant, &[foreign]);
    assert_eq!(
        cat.append_commit(bucket, &new_commit(site, 2, vec![own, foreign]))
            .unwrap(),
        1
    );
}

/// Commits name an existing bucket and a site of the same tenant; counts must
/// fit the catalog.
pub fn commit_checks_bucket_and_site(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    let (_, foreign_site, _) = namespace(cat);
    assert_not_found(cat.append_commit(BucketId(i64::MAX), &new_commit(site, 1, vec![])));
    assert_not_found(cat.append_commit(bucket, &new_commit(SiteId(i64::MAX), 1, vec![])));
    assert_invalid(
        cat.append_commit(bucket, &new_commit(foreign_site, 1, vec![])),
        "commit.site",
    );
    let mut huge = new_commit(site, 1, vec![]);
    huge.bytes = u64::MAX;
    assert_invalid(cat.append_commit(bucket, &huge), "commit.bytes");
    assert!(cat.commits(bucket, 0, 10).unwrap().is_empty());
}

/// Appends from 4 threads at once get unique, gapless sequence numbers.
pub fn concurrent_append_commit(cat: &dyn Catalog) {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 25;
    let (_, site, bucket) = namespace(cat);
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let time = (t * PER_THREAD + i) as i64;
                            cat.append_commit(bucket, &new_commit(site, time, vec![]))
                                .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=THREADS * PER_THREAD).collect();
    assert_eq!(seqs, expected);
    let stored: BTreeSet<u64> = cat
        .commits(bucket, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(stored.into_iter().collect::<Vec<_>>(), expected);
}

/// What [`populate`] wrote, for [`check_populated`] to find again (e.g. after
/// reopening a catalog).
#[derive(Debug, Clone)]
pub struct Populated {
    pub tenant_name: String,
    pub tenant: TenantId,
    pub site: SiteId,
    pub token_hash: [u8; 32],
    pub bucket: BucketId,
    pub session: super::SessionId,
    pub pack: PackRecord,
    pub entries: Vec<(TenantId, PackEntry)>,
    pub commit: NewCommit,
}

/// Writes one of everything.
pub fn populate(cat: &dyn Catalog) -> Populated {
    let tenant_name = unique("persist");
    let tenant = cat.create_tenant(&tenant_name).unwrap();
    let token_hash = rand::random();
    let site = cat.create_site(tenant, "site", &token_hash).unwrap();
    let bucket = cat.create_bucket(tenant, "bucket", site).unwrap();
    let ids = [random_id(), random_id(), random_id()];
    let session = cat.open_session(site, bucket, &ids[0], 42).unwrap();
    let (pack, entries) = fake_pack(tenant, &ids);
    cat.record_pack(&pack, &entries).unwrap();
    let commit = new_commit(site, 7, ids.to_vec());
    assert_eq!(cat.append_commit(bucket, &commit).unwrap(), 1);
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
        cat.tenant_by_name(&p.tenant_name).unwrap().unwrap().id,
        p.tenant
    );
    assert_eq!(
        cat.site_by_token_hash(&p.token_hash).unwrap().unwrap().id,
        p.site
    );
    assert_eq!(
        cat.bucket_by_name(p.tenant, "bucket").unwrap().unwrap().id,
        p.bucket
    );
    assert_eq!(
        cat.session(p.session).unwrap().unwrap().lease_until_unix,
        42
    );
    assert!(cat.list_packs().unwrap().contains(&p.pack));
    let ids: Vec<BlobId> = p.entries.iter().map(|(_, e)| e.id).collect();
    assert!(cat.missing_blobs(p.tenant, &ids).unwrap().is_empty());
    assert_eq!(cat.blob_locations(p.tenant, &ids).unwrap().len(), ids.len());
    let c = cat.commit(p.bucket, 1).unwrap().unwrap();
    assert_eq!(
        (c.manifest.as_slice(), c.body.as_slice()),
        (p.commit.manifest.as_slice(), p.commit.body.as_slice())
    );
    assert_eq!(cat.append_commit(p.bucket, &p.commit).unwrap(), 2);
}
