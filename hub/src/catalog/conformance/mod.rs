//! The conformance suite every [`Catalog`] must pass.
//!
//! Plain functions over `&dyn Catalog`, compiled always so a PostgreSQL
//! catalog (or another crate) can run the same checks. Each check makes its
//! own uniquely named tenants, random blob ids and random pack names, so the
//! suite works on a catalog that already holds data. Failures panic: this is
//! test code. One file per area, as the trait is split.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a conformance failure is a test failure"
)]

mod blobs;
mod journal;
mod namespace;
mod persist;
mod policies;
mod references;
mod replication;
mod sessions;
mod units;

pub use blobs::*;
pub use journal::*;
pub use namespace::*;
pub use persist::*;
pub use policies::*;
pub use references::*;
pub use replication::*;
pub use sessions::*;
pub use units::*;

use std::collections::BTreeSet;

use ferry_proto::{BlobId, BlobKind};

use super::{
    BlobOwner, BucketId, Catalog, CatalogError, CatalogExt, CommitKind, ErrorKind, NewCommit,
    PackEntry, PackRecord, SiteId, TenantId,
};

/// Runs every check in this module against `cat`.
pub fn run_all(cat: &dyn Catalog) {
    tenants(cat);
    tenant_verifier_keys(cat);
    sites(cat);
    buckets(cat);
    bucket_replicas(cat);
    bucket_failover(cat);
    replica_cursors(cat);
    replica_holds(cat);
    replica_troubles(cat);
    replication_pauses(cat);
    policy_versions(cat);
    concurrent_policy_applies(&[cat]);
    sessions(cat);
    record_and_locate_blobs(cat);
    first_location_wins(cat);
    record_pack_is_idempotent(cat);
    record_packs_in_bulk(cat);
    record_pack_rejects_bad_input(cat);
    missing_blobs_in_bulk(cat);
    blobs_are_per_tenant(cat);
    copies_are_per_site(cat);
    bad_copies_are_missing_and_replaced(cat);
    verified_copies_count_for_every_site(cat);
    a_verified_copy_brings_its_header(cat);
    one_pack_holds_several_tenants(cat);
    same_pack_recorded_for_another_tenant(cat);
    record_pack_needs_known_tenants(cat);
    journal_sequence(cat);
    claimed_sequence_numbers_and_macs(cat);
    journal_queries(cat);
    restored_commits(cat);
    bucket_references(cat);
    commit_requires_stored_blobs(cat);
    commit_checks_blobs_of_its_tenant(cat);
    commit_checks_bucket_and_site(cat);
    concurrent_append_commit(cat);
    a_failed_unit_of_work_changes_nothing(cat);
    a_unit_of_work_commits_all_its_changes(cat);
    revoked_and_rotated_tokens(cat);
    tenants_by_id_and_listed(cat);
    error_kinds(cat);
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
    cat.write(|w| w.create_tenant(&unique("t"))).unwrap()
}

/// A fresh tenant with one site and one bucket sourced from it.
pub fn namespace(cat: &dyn Catalog) -> (TenantId, SiteId, BucketId) {
    let tenant = cat.write(|w| w.create_tenant(&unique("t"))).unwrap();
    let site = cat
        .write(|w| w.create_site(tenant, "site-a", &rand::random()))
        .unwrap();
    let bucket = cat
        .write(|w| w.create_bucket(tenant, "bucket-a", site))
        .unwrap();
    (tenant, site, bucket)
}

/// A fresh site of `tenant`, as the owner of the copies it uploads.
pub fn site_of(cat: &dyn Catalog, tenant: TenantId) -> BlobOwner {
    let site = cat
        .write(|w| w.create_site(tenant, &unique("s"), &rand::random()))
        .unwrap();
    BlobOwner { tenant, site }
}

/// A fresh tenant with one site, as the owner of the copies it uploads.
pub fn uploader(cat: &dyn Catalog) -> BlobOwner {
    site_of(cat, tenant(cat))
}

/// A pack record plus entries for `ids`, all of `owner`, laid out as a real
/// pack would be (the catalog never reads the pack itself).
pub fn fake_pack(owner: BlobOwner, ids: &[BlobId]) -> (PackRecord, Vec<(BlobOwner, PackEntry)>) {
    let blobs: Vec<(BlobOwner, BlobId)> = ids.iter().map(|id| (owner, *id)).collect();
    fake_mixed_pack(&blobs)
}

/// Like [`fake_pack`], for a pack holding blobs of several owners.
pub fn fake_mixed_pack(blobs: &[(BlobOwner, BlobId)]) -> (PackRecord, Vec<(BlobOwner, PackEntry)>) {
    let header_id = random_id();
    let entries: Vec<(BlobOwner, PackEntry)> = blobs
        .iter()
        .zip(0u64..)
        .map(|((owner, id), i)| {
            let entry = PackEntry {
                id: *id,
                kind: BlobKind::Data,
                flags: (i % 2) as u8,
                header_id,
                offset: 8 + i * 10,
                length: 10,
            };
            (*owner, entry)
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

/// Records a fake pack holding `ids` for `owner` and returns it.
pub fn store_blobs(cat: &dyn Catalog, owner: BlobOwner, ids: &[BlobId]) -> PackRecord {
    let (record, entries) = fake_pack(owner, ids);
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
        seq: None,
        mac: Some(*blake3::hash(&time_unix_ms.to_le_bytes()).as_bytes()),
    }
}
