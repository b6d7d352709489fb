//! Conformance: each bucket's reference index.

use std::collections::HashSet;

use super::*;
use crate::catalog::Referenced;

fn only(ids: &[BlobId]) -> Referenced {
    Referenced::Only(ids.iter().copied().collect::<HashSet<_>>())
}

/// A bucket references what was added for it, each id once however often
/// added or asked, and nothing added for another bucket; a unit of work
/// that fails adds nothing.
pub fn bucket_references(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let other = cat
        .write(|w| w.create_bucket(tenant, &unique("other"), site))
        .unwrap();
    let (a, b, c) = (random_id(), random_id(), random_id());
    let asked = [a, b, c, a];
    // A new bucket is indexed, and references nothing yet.
    assert_eq!(
        cat.read(|r| r.referenced(bucket, &asked)).unwrap(),
        only(&[])
    );
    assert!(
        !cat.read(|r| r.unindexed_buckets())
            .unwrap()
            .contains(&bucket)
    );
    cat.write(|w| w.add_references(bucket, &[a, b, a])).unwrap();
    cat.write(|w| w.add_references(bucket, &[b])).unwrap();
    cat.write(|w| w.add_references(other, &[c])).unwrap();
    assert_eq!(
        cat.read(|r| r.referenced(bucket, &asked)).unwrap(),
        only(&[a, b])
    );
    assert_eq!(
        cat.read(|r| r.referenced(other, &asked)).unwrap(),
        only(&[c])
    );
    assert_eq!(cat.read(|r| r.referenced(bucket, &[])).unwrap(), only(&[]));
    // Marking an indexed bucket changes nothing.
    cat.write(|w| w.mark_references_indexed(bucket)).unwrap();
    assert_eq!(
        cat.read(|r| r.referenced(bucket, &[a])).unwrap(),
        only(&[a])
    );
    // Many at once (past the engines' batch sizes).
    let many: Vec<BlobId> = (0..12_000).map(|_| random_id()).collect();
    cat.write(|w| w.add_references(other, &many)).unwrap();
    match cat.read(|r| r.referenced(other, &many)).unwrap() {
        Referenced::Only(found) => assert_eq!(found.len(), many.len()),
        Referenced::Unindexed => panic!("an indexed bucket said unindexed"),
    }
    // A part is recorded once per bucket: sent again, even with other ids,
    // it changes nothing.
    let (part, e, f) = (rand::random::<[u8; 32]>(), random_id(), random_id());
    assert!(
        cat.write(|w| w.add_reference_part(bucket, &part, &[e]))
            .unwrap()
    );
    assert!(
        !cat.write(|w| w.add_reference_part(bucket, &part, &[f]))
            .unwrap()
    );
    assert!(
        cat.write(|w| w.add_reference_part(other, &part, &[f]))
            .unwrap()
    );
    assert_eq!(
        cat.read(|r| r.referenced(bucket, &[e, f])).unwrap(),
        only(&[e])
    );
    assert_eq!(
        cat.read(|r| r.referenced(other, &[e, f])).unwrap(),
        only(&[f])
    );
    assert_not_found(cat.write(|w| w.add_reference_part(BucketId(i64::MAX), &part, &[e])));
    // Rolled back with the unit of work it was part of.
    let d = random_id();
    let err = cat
        .write(|w| {
            w.add_references(bucket, &[d])?;
            w.create_bucket(tenant, "bucket-a", site)
        })
        .unwrap_err();
    assert_already_exists(Err::<(), _>(err));
    assert_eq!(cat.read(|r| r.referenced(bucket, &[d])).unwrap(), only(&[]));
    assert_not_found(cat.write(|w| w.add_references(BucketId(i64::MAX), &[a])));
}
