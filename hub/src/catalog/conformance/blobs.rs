//! Conformance: The blob index: packs, blob rows, lookups.

use super::*;

/// Recorded blobs stop being missing and can be located; lists keep input
/// order and drop duplicates.
pub fn record_and_locate_blobs(cat: &dyn Catalog) {
    let t = uploader(cat);
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
    let t = uploader(cat);
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
    let t = uploader(cat);
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

/// Several packs recorded in one call: all located, a rerun adds nothing,
/// and a conflicting one is refused.
pub fn record_packs_in_bulk(cat: &dyn Catalog) {
    let t = uploader(cat);
    let (a, b) = ([random_id(), random_id()], [random_id()]);
    let packs = vec![fake_pack(t, &a), fake_pack(t, &b)];
    assert_eq!(cat.record_packs(&packs).unwrap(), 3);
    assert_eq!(cat.record_packs(&packs).unwrap(), 0);
    let all: Vec<_> = a.iter().chain(&b).copied().collect();
    assert!(cat.missing_blobs(t, &all).unwrap().is_empty());
    assert_eq!(cat.blob_locations(t, &all).unwrap().len(), 3);
    let mut changed = packs.clone();
    changed[1].0.size += 1;
    assert_eq!(
        cat.record_packs(&changed).unwrap_err().kind(),
        crate::catalog::ErrorKind::Conflict
    );
}

/// Malformed pack records are refused whole: nothing of them is stored.
pub fn record_pack_rejects_bad_input(cat: &dyn Catalog) {
    let t = uploader(cat);
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
    let t = uploader(cat);
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
    let other = uploader(cat);
    assert_eq!(cat.missing_blobs(other, &ids).unwrap(), ids);
    assert!(cat.blob_locations(other, &ids).unwrap().is_empty());
}

/// Blobs are keyed by (tenant, id): an id one tenant stored is missing for
/// another and cannot be located by it; once the other tenant stores the
/// same id, each has its own location and the first tenant's is unchanged.
pub fn blobs_are_per_tenant(cat: &dyn Catalog) {
    let (a, b) = (uploader(cat), uploader(cat));
    let ids = [random_id(), random_id(), random_id()];
    let pack_a = store_blobs(cat, a, &ids);
    let locs_a = cat.blob_locations(a, &ids).unwrap();
    assert_eq!(locs_a.len(), ids.len());
    assert!(locs_a.iter().all(|l| l.pack == pack_a.name));

    // (a) membership does not leak across tenants, (b) nor do locations.
    assert_eq!(cat.missing_blobs(b, &ids).unwrap(), ids);
    assert!(cat.blob_locations(b, &ids).unwrap().is_empty());
    // An unknown tenant has stored nothing either.
    assert_eq!(cat.missing_blobs(nobody(), &ids).unwrap(), ids);
    assert!(cat.blob_locations(nobody(), &ids).unwrap().is_empty());

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
    let (a, b) = (uploader(cat), uploader(cat));
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
    let (a, b) = (uploader(cat), uploader(cat));
    let ids = [random_id(), random_id()];
    let (record, entries_a) = fake_pack(a, &ids);
    assert_eq!(cat.record_pack(&record, &entries_a).unwrap(), 2);
    let locs_a = cat.blob_locations(a, &ids).unwrap();
    let entries_b: Vec<(BlobOwner, PackEntry)> = entries_a.iter().map(|(_, e)| (b, *e)).collect();
    assert_eq!(cat.record_pack(&record, &entries_b).unwrap(), 2);
    assert_eq!(cat.record_pack(&record, &entries_b).unwrap(), 0);
    // The same places, each copy its own site's.
    let locs_b: Vec<crate::catalog::BlobLocation> = cat
        .blob_locations(b, &ids)
        .unwrap()
        .into_iter()
        .inspect(|l| assert_eq!(l.site, b.site))
        .map(|l| crate::catalog::BlobLocation { site: a.site, ..l })
        .collect();
    assert_eq!(locs_b, locs_a);
    assert_eq!(cat.blob_locations(a, &ids).unwrap(), locs_a);
    let packs = cat.list_packs().unwrap();
    assert_eq!(packs.iter().filter(|p| p.name == record.name).count(), 1);
}

/// A pack naming an unknown tenant is refused whole.
pub fn record_pack_needs_known_tenants(cat: &dyn Catalog) {
    let a = uploader(cat);
    let ids = [random_id(), random_id()];
    let (record, entries) = fake_mixed_pack(&[(a, ids[0]), (nobody(), ids[1])]);
    assert_not_found(cat.record_pack(&record, &entries));
    assert_eq!(cat.missing_blobs(a, &ids).unwrap(), ids);
    assert!(
        !cat.list_packs()
            .unwrap()
            .iter()
            .any(|p| p.hash == record.hash)
    );
}

/// An owner no catalog has.
fn nobody() -> BlobOwner {
    BlobOwner {
        tenant: TenantId(i64::MAX),
        site: SiteId(i64::MAX),
    }
}

/// Copies are per site: one site's copy of an id is missing for another
/// site of the same tenant (which cannot locate it either) until that site
/// stores its own; each then finds its own copy. A copy of no known site
/// counts for every site of its tenant. A pack entry owned by a site of
/// another tenant, or by no site, is refused.
pub fn copies_are_per_site(cat: &dyn Catalog) {
    let a = uploader(cat);
    let b = site_of(cat, a.tenant);
    let legacy = BlobOwner {
        site: SiteId::UNKNOWN,
        ..a
    };
    let (x, y, old) = (random_id(), random_id(), random_id());
    let pack_a = store_blobs(cat, a, &[x, y]);
    let pack_old = store_blobs(cat, legacy, &[old]);
    assert_eq!(cat.missing_blobs(b, &[x, y, old]).unwrap(), [x, y]);
    let seen_by_b = cat.blob_locations(b, &[x, y, old]).unwrap();
    assert_eq!(seen_by_b.iter().map(|l| l.id).collect::<Vec<_>>(), [old]);
    assert_eq!(seen_by_b[0].pack, pack_old.name);
    assert!(cat.missing_blobs(a, &[x, y, old]).unwrap().is_empty());

    // B uploads its own copy of x: one new row, A's copy untouched.
    let pack_b = store_blobs(cat, b, &[x]);
    assert_eq!(cat.missing_blobs(b, &[x, y]).unwrap(), [y]);
    let of = |owner, id| cat.blob_locations(owner, &[id]).unwrap()[0].pack.clone();
    assert_eq!(of(a, x), pack_a.name);
    assert_eq!(of(b, x), pack_b.name);
    // An own copy is preferred to one of no known site.
    let pack_own_old = store_blobs(cat, a, &[old]);
    assert_eq!(of(a, old), pack_own_old.name);
    assert_eq!(of(b, old), pack_old.name);

    // Every copy is listed with its owner.
    let mut copies = Vec::new();
    cat.for_each_blob_id(&mut |owner, id, verified| {
        assert!(!verified);
        if owner.tenant == a.tenant {
            copies.push((owner, *id));
        }
    })
    .unwrap();
    copies.sort();
    let mut expected = vec![(a, x), (a, y), (b, x), (legacy, old), (a, old)];
    expected.sort();
    assert_eq!(copies, expected);

    // Owners that cannot be: a site of another tenant, a site that does not exist.
    let stranger = uploader(cat);
    let borrowed = BlobOwner {
        tenant: a.tenant,
        site: stranger.site,
    };
    let (record, entries) = fake_pack(borrowed, &[random_id()]);
    assert_invalid(cat.record_pack(&record, &entries), "pack entry");
    let ghost = BlobOwner {
        tenant: a.tenant,
        site: SiteId(i64::MAX),
    };
    let (record, entries) = fake_pack(ghost, &[random_id()]);
    assert_not_found(cat.record_pack(&record, &entries));
}

/// A copy marked bad is missing for every lookup and located only when no
/// good copy is (a mark may be wrong; a restore must not lose a copy over
/// it); the next copy recorded for its owner replaces it. Marking goes to the copy
/// the marker is served (its own, else one of no known site).
pub fn bad_copies_are_missing_and_replaced(cat: &dyn Catalog) {
    let a = uploader(cat);
    let b = site_of(cat, a.tenant);
    let legacy = BlobOwner {
        site: SiteId::UNKNOWN,
        ..a
    };
    let (x, y, never) = (random_id(), random_id(), random_id());
    let first = store_blobs(cat, a, &[x, y]);
    assert_eq!(cat.mark_bad(a, &[x, never]).unwrap(), 1);
    assert_eq!(cat.mark_bad(a, &[x]).unwrap(), 0, "already bad");
    assert_eq!(cat.missing_blobs(a, &[x, y]).unwrap(), [x]);
    let located: Vec<(BlobId, String)> = cat
        .blob_locations(a, &[x, y])
        .unwrap()
        .into_iter()
        .map(|l| (l.id, l.pack))
        .collect();
    assert_eq!(located, [(x, first.name.clone()), (y, first.name.clone())]);
    // The owner's next copy replaces the bad one, and counts as new.
    let again = store_blobs(cat, a, &[x, y]);
    assert!(cat.missing_blobs(a, &[x, y]).unwrap().is_empty());
    assert_eq!(cat.blob_locations(a, &[x]).unwrap()[0].pack, again.name);
    assert_ne!(cat.blob_locations(a, &[y]).unwrap()[0].pack, again.name);

    // A copy of no known site, marked through another site's view of it.
    let (old, both) = (random_id(), random_id());
    store_blobs(cat, legacy, &[old, both]);
    let own = store_blobs(cat, a, &[both]);
    assert_eq!(cat.mark_bad(b, &[old, both]).unwrap(), 2);
    assert_eq!(cat.missing_blobs(b, &[old, both]).unwrap(), [old, both]);
    assert_eq!(cat.missing_blobs(a, &[old, both]).unwrap(), [old]);
    assert_eq!(cat.blob_locations(a, &[both]).unwrap()[0].pack, own.name);
    // B's own copy, once stored, is served before the bad shared one.
    assert_eq!(cat.blob_locations(b, &[old]).unwrap().len(), 1);
    let mine = store_blobs(cat, b, &[old]);
    assert_eq!(cat.blob_locations(b, &[old]).unwrap()[0].pack, mine.name);
}

/// A verified copy counts for every site of its tenant (dedup and reads),
/// after the site's own; a bad mark or a replacement undoes it.
pub fn verified_copies_count_for_every_site(cat: &dyn Catalog) {
    let a = uploader(cat);
    let b = site_of(cat, a.tenant);
    let stranger = uploader(cat);
    let (x, y, never) = (random_id(), random_id(), random_id());
    let first = store_blobs(cat, a, &[x, y]);
    assert_eq!(cat.missing_blobs(b, &[x, y]).unwrap(), [x, y]);
    // Only a copy that exists is marked: not B's (it has none), not an
    // unknown id.
    let asked = [(x, a.site), (never, a.site), (y, b.site)];
    assert_eq!(cat.mark_verified(a.tenant, &asked).unwrap(), 1);
    assert_eq!(cat.mark_verified(a.tenant, &asked).unwrap(), 0, "again");
    // Another tenant's mark reaches nothing of this one.
    assert_eq!(
        cat.mark_verified(stranger.tenant, &[(y, a.site)]).unwrap(),
        0
    );
    assert_eq!(cat.missing_blobs(b, &[x, y]).unwrap(), [y]);
    assert_eq!(cat.missing_blobs(stranger, &[x]).unwrap(), [x]);
    let at_b = &cat.blob_locations(b, &[x, y]).unwrap();
    assert_eq!(at_b.len(), 1);
    assert_eq!(
        (at_b[0].pack.as_str(), at_b[0].site, at_b[0].verified),
        (first.name.as_str(), a.site, true)
    );
    let at_a = &cat.blob_locations(a, &[y]).unwrap()[0];
    assert_eq!((at_a.site, at_a.verified), (a.site, false));
    let mut listed = Vec::new();
    cat.for_each_blob_id(&mut |owner, id, verified| {
        if owner.tenant == a.tenant {
            listed.push((owner, *id, verified));
        }
    })
    .unwrap();
    listed.sort();
    let mut expected = vec![(a, x, true), (a, y, false)];
    expected.sort();
    assert_eq!(listed, expected);

    // B's own copy comes first; marked bad, the verified one serves again.
    let own = store_blobs(cat, b, &[x]);
    let served = &cat.blob_locations(b, &[x]).unwrap()[0];
    assert_eq!(
        (served.pack.as_str(), served.site),
        (own.name.as_str(), b.site)
    );
    assert_eq!(cat.mark_bad(b, &[x]).unwrap(), 1);
    assert!(cat.missing_blobs(b, &[x]).unwrap().is_empty());
    assert_eq!(cat.blob_locations(b, &[x]).unwrap()[0].pack, first.name);

    // A's verified copy found bad is missing for both; A's next copy
    // replaces it unverified, so it counts for A alone until verified.
    assert_eq!(cat.mark_bad(b, &[x]).unwrap(), 1);
    assert_eq!(cat.missing_blobs(a, &[x]).unwrap(), [x]);
    assert_eq!(cat.missing_blobs(b, &[x]).unwrap(), [x]);
    assert_eq!(
        cat.mark_verified(a.tenant, &[(x, a.site)]).unwrap(),
        0,
        "bad"
    );
    store_blobs(cat, a, &[x]);
    assert!(cat.missing_blobs(a, &[x]).unwrap().is_empty());
    assert_eq!(cat.missing_blobs(b, &[x]).unwrap(), [x]);
    assert!(!cat.blob_locations(a, &[x]).unwrap()[0].verified);
    assert_eq!(cat.mark_verified(a.tenant, &[(x, a.site)]).unwrap(), 1);
    assert!(cat.missing_blobs(b, &[x]).unwrap().is_empty());
}

/// Marking a copy verified marks the same site's copy of its session
/// header, which a restore elsewhere needs to open it.
pub fn a_verified_copy_brings_its_header(cat: &dyn Catalog) {
    let a = uploader(cat);
    let b = site_of(cat, a.tenant);
    let x = random_id();
    let (record, mut entries) = fake_pack(a, &[x]);
    let header_id = entries[0].1.header_id;
    entries.push((
        a,
        PackEntry {
            id: header_id,
            kind: BlobKind::SessionHeader,
            flags: 0,
            header_id,
            offset: 8 + 10,
            length: 10,
        },
    ));
    cat.record_pack(&record, &entries).unwrap();
    assert_eq!(
        cat.missing_blobs(b, &[x, header_id]).unwrap(),
        [x, header_id]
    );
    assert_eq!(cat.mark_verified(a.tenant, &[(x, a.site)]).unwrap(), 1);
    assert!(cat.missing_blobs(b, &[x, header_id]).unwrap().is_empty());
    assert_eq!(cat.blob_locations(b, &[header_id]).unwrap().len(), 1);
}
