//! Conformance: Journals: sequence numbers, queries, references.

use super::*;

/// Sequence numbers start at 1 per bucket and have no gaps; commits read back
/// exactly as written.
pub fn journal_sequence(cat: &dyn Catalog) {
    let (tenant, site, b1) = namespace(cat);
    let b2 = cat
        .write(|w| w.create_bucket(tenant, "bucket-b", site))
        .unwrap();
    let blobs = [random_id(), random_id()];
    store_blobs(cat, BlobOwner { tenant, site }, &blobs);

    let mut snapshot = new_commit(site, 10, blobs.to_vec());
    snapshot.kind = CommitKind::Snapshot;
    assert_eq!(cat.write(|w| w.append_commit(b1, &snapshot)).unwrap(), 1);
    assert_eq!(
        cat.write(|w| w.append_commit(b1, &new_commit(site, 20, vec![])))
            .unwrap(),
        2
    );
    assert_eq!(
        cat.write(|w| w.append_commit(b2, &new_commit(site, 5, vec![])))
            .unwrap(),
        1
    );
    assert_eq!(
        cat.write(|w| w.append_commit(b1, &new_commit(site, 30, vec![blobs[1]])))
            .unwrap(),
        3
    );

    let c1 = cat.read(|r| r.commit(b1, 1)).unwrap().unwrap();
    assert_eq!(c1.seq, 1);
    assert_eq!(
        (
            c1.site,
            c1.time_unix_ms,
            c1.kind,
            &c1.manifest,
            &c1.body,
            c1.files,
            c1.bytes,
            c1.mac
        ),
        (
            snapshot.site,
            snapshot.time_unix_ms,
            snapshot.kind,
            &snapshot.manifest,
            &snapshot.body,
            snapshot.files,
            snapshot.bytes,
            snapshot.mac
        )
    );
    assert!(cat.read(|r| r.commit(b1, 4)).unwrap().is_none());
    assert!(cat.read(|r| r.commit(b1, 0)).unwrap().is_none());
    assert!(cat.read(|r| r.commit(b1, u64::MAX)).unwrap().is_none());
    assert_eq!(
        cat.read(|r| r.commit(b2, 1)).unwrap().unwrap().time_unix_ms,
        5
    );
}

/// A commit that claims a sequence number goes there or nowhere (its MAC
/// covers the number); the head is the highest commit; a commit without a
/// MAC reads back without one.
pub fn claimed_sequence_numbers_and_macs(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    assert!(cat.read(|r| r.last_commit(bucket)).unwrap().is_none());
    let claiming = |seq| NewCommit {
        seq: Some(seq),
        ..new_commit(site, 100 + seq as i64, vec![])
    };
    for wrong in [0, 2, u64::MAX] {
        let err = cat
            .write(|w| w.append_commit(bucket, &claiming(wrong)))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{wrong}: {err:?}");
    }
    assert!(cat.read(|r| r.last_commit(bucket)).unwrap().is_none());
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &claiming(1)))
            .unwrap(),
        1
    );
    let unsigned = NewCommit {
        mac: None,
        ..new_commit(site, 200, vec![])
    };
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &unsigned)).unwrap(),
        2
    );
    let err = cat
        .write(|w| w.append_commit(bucket, &claiming(2)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &claiming(3)))
            .unwrap(),
        3
    );

    let head = cat.read(|r| r.last_commit(bucket)).unwrap().unwrap();
    assert_eq!((head.seq, head.mac), (3, claiming(3).mac));
    let listed = cat.read(|r| r.commits(bucket, 0, 10)).unwrap();
    let macs: Vec<_> = listed.iter().map(|c| (c.seq, c.mac)).collect();
    assert_eq!(
        macs,
        [(1, claiming(1).mac), (2, None), (3, claiming(3).mac)]
    );
}

/// Commits put back at their numbers by `recover`: gaps allowed, a taken
/// number left alone, the next append after the highest, and no blob check.
pub fn restored_commits(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let restored = new_commit(site, 10, vec![random_id()]);
    assert!(
        cat.write(|w| w.restore_commit(bucket, 2, &restored))
            .unwrap()
    );
    assert!(
        cat.write(|w| w.restore_commit(bucket, 5, &new_commit(site, 50, vec![])))
            .unwrap()
    );
    // A rerun changes nothing, whatever it brings.
    assert!(
        !cat.write(|w| w.restore_commit(bucket, 2, &new_commit(site, 99, vec![])))
            .unwrap()
    );
    let read = cat.read(|r| r.commit(bucket, 2)).unwrap().unwrap();
    assert_eq!(
        (read.time_unix_ms, &read.manifest),
        (10, &restored.manifest)
    );
    let seqs: Vec<u64> = cat
        .read(|r| r.commits(bucket, 0, 10))
        .unwrap()
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [2, 5]);
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &new_commit(site, 60, vec![])))
            .unwrap(),
        6
    );
    let zero = cat
        .write(|w| w.restore_commit(bucket, 0, &new_commit(site, 1, vec![])))
        .unwrap_err();
    assert_eq!(zero.kind(), crate::catalog::ErrorKind::Invalid);
    // A site of another tenant cannot be put in the journal either.
    let (_, other_site, _) = namespace(cat);
    let foreign = cat
        .write(|w| w.restore_commit(bucket, 9, &new_commit(other_site, 1, vec![])))
        .unwrap_err();
    assert_eq!(foreign.kind(), crate::catalog::ErrorKind::Invalid);
    let _ = tenant;
}

/// Paging through the journal and finding the commit at a point in time.
pub fn journal_queries(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    for t in [100, 200, 200, 300, 400] {
        cat.write(|w| w.append_commit(bucket, &new_commit(site, t, vec![])))
            .unwrap();
    }
    let seqs = |v: Vec<crate::catalog::Commit>| v.into_iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(cat.read(|r| r.commits(bucket, 0, 100)).unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(seqs(cat.read(|r| r.commits(bucket, 1, 2)).unwrap()), [2, 3]);
    assert_eq!(seqs(cat.read(|r| r.commits(bucket, 4, 10)).unwrap()), [5]);
    assert!(cat.read(|r| r.commits(bucket, 5, 10)).unwrap().is_empty());
    assert!(cat.read(|r| r.commits(bucket, 0, 0)).unwrap().is_empty());
    assert!(
        cat.read(|r| r.commits(bucket, u64::MAX, 10))
            .unwrap()
            .is_empty()
    );
    assert!(
        cat.read(|r| r.commits(BucketId(i64::MAX), 0, 10))
            .unwrap()
            .is_empty()
    );

    let at = |t| {
        cat.read(|r| r.latest_commit_at_or_before(bucket, t))
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
    store_blobs(cat, BlobOwner { tenant, site }, &[stored]);
    let err = cat
        .write(|w| w.append_commit(bucket, &new_commit(site, 1, vec![stored, absent, absent])))
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingBlobs { count: 1, first } if first == absent),
        "{err:?}"
    );
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &new_commit(site, 2, vec![stored])))
            .unwrap(),
        1
    );
}

/// A commit may reference only blobs of its bucket's tenant: another
/// tenant's copy of an id does not count.
pub fn commit_checks_blobs_of_its_tenant(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let (other, other_site, _) = namespace(cat);
    let (own, foreign) = (random_id(), random_id());
    store_blobs(cat, BlobOwner { tenant, site }, &[own]);
    store_blobs(
        cat,
        BlobOwner {
            tenant: other,
            site: other_site,
        },
        &[own, foreign],
    );
    let err = cat
        .write(|w| w.append_commit(bucket, &new_commit(site, 1, vec![own, foreign])))
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingBlobs { count: 1, first } if first == foreign),
        "{err:?}"
    );
    assert!(cat.read(|r| r.commits(bucket, 0, 10)).unwrap().is_empty());
    // Nor does another site's copy in the same tenant.
    let sibling = site_of(cat, tenant);
    store_blobs(cat, sibling, &[foreign]);
    let err = cat
        .write(|w| w.append_commit(bucket, &new_commit(site, 1, vec![own, foreign])))
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::MissingBlobs { count: 1, .. }),
        "{err:?}"
    );
    store_blobs(cat, BlobOwner { tenant, site }, &[foreign]);
    assert_eq!(
        cat.write(|w| w.append_commit(bucket, &new_commit(site, 2, vec![own, foreign])))
            .unwrap(),
        1
    );
}

/// Commits name an existing bucket and a site of the same tenant; counts must
/// fit the catalog.
pub fn commit_checks_bucket_and_site(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    let (_, foreign_site, _) = namespace(cat);
    assert_not_found(
        cat.write(|w| w.append_commit(BucketId(i64::MAX), &new_commit(site, 1, vec![]))),
    );
    assert_not_found(
        cat.write(|w| w.append_commit(bucket, &new_commit(SiteId(i64::MAX), 1, vec![]))),
    );
    assert_invalid(
        cat.write(|w| w.append_commit(bucket, &new_commit(foreign_site, 1, vec![]))),
        "commit.site",
    );
    let mut huge = new_commit(site, 1, vec![]);
    huge.bytes = u64::MAX;
    assert_invalid(
        cat.write(|w| w.append_commit(bucket, &huge)),
        "commit.bytes",
    );
    assert!(cat.read(|r| r.commits(bucket, 0, 10)).unwrap().is_empty());
}

/// Appends from 4 threads at once get unique, gapless sequence numbers.
pub fn concurrent_append_commit(cat: &dyn Catalog) {
    concurrent_appends_from(&[cat]);
}

/// Appends from 4 threads, spread over `cats` (handles on one catalog, as
/// several hub processes would hold), get unique, gapless sequence numbers.
pub fn concurrent_appends_from(cats: &[&dyn Catalog]) {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 25;
    let (_, site, bucket) = namespace(cats[0]);
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let cat = cats[t as usize % cats.len()];
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let time = (t * PER_THREAD + i) as i64;
                            cat.write(|w| w.append_commit(bucket, &new_commit(site, time, vec![])))
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
    for cat in cats {
        let stored: BTreeSet<u64> = cat
            .read(|r| r.commits(bucket, 0, usize::MAX))
            .unwrap()
            .into_iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(stored.into_iter().collect::<Vec<_>>(), expected);
    }
}
