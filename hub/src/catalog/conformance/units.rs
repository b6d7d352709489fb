//! Conformance: Units of work and error kinds.

use super::*;

/// A unit of work that fails half way leaves nothing of itself behind: the
/// tenant it created, the commit it appended and the session it closed are
/// all as they were.
pub fn a_failed_unit_of_work_changes_nothing(cat: &dyn Catalog) {
    let (tenant, site, bucket) = namespace(cat);
    let session = cat
        .write(|w| w.open_session(site, bucket, &random_id(), 1_000))
        .unwrap();
    let name = unique("rolled-back");
    let err = cat
        .write(|w| {
            w.create_tenant(&name)?;
            w.append_commit(bucket, &new_commit(site, 1, vec![]))?;
            w.close_session(session)?;
            // Fails after three changes: none of them may stay.
            w.create_bucket(tenant, "bucket-a", site)
        })
        .unwrap_err();
    assert_already_exists(Err::<(), _>(err));
    assert!(cat.read(|r| r.tenant_by_name(&name)).unwrap().is_none());
    assert!(cat.read(|r| r.commits(bucket, 0, 10)).unwrap().is_empty());
    assert!(!cat.read(|r| r.session(session)).unwrap().unwrap().closed);
    // The journal goes on at 1.
    let seq = cat
        .write(|w| w.append_commit(bucket, &new_commit(site, 2, vec![])))
        .unwrap();
    assert_eq!(seq, 1);
}

/// A unit of work's changes are all there once it returns, and one read
/// sees them together.
pub fn a_unit_of_work_commits_all_its_changes(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    let session = cat
        .write(|w| w.open_session(site, bucket, &random_id(), 1_000))
        .unwrap();
    let seq = cat
        .write(|w| {
            let seq = w.append_commit(bucket, &new_commit(site, 5, vec![]))?;
            w.close_session(session)?;
            Ok(seq)
        })
        .unwrap();
    let (commit, closed) = cat
        .read(|r| Ok((r.commit(bucket, seq)?, r.session(session)?)))
        .unwrap();
    assert_eq!(commit.unwrap().time_unix_ms, 5);
    assert!(closed.unwrap().closed);
}

/// Errors carry the kind callers branch on.
pub fn error_kinds(cat: &dyn Catalog) {
    use crate::catalog::ErrorKind;
    let (tenant, site, bucket) = namespace(cat);
    let kind = |r: Result<u64, CatalogError>| r.unwrap_err().kind();
    assert_eq!(
        kind(cat.write(|w| w.append_commit(BucketId(i64::MAX), &new_commit(site, 1, vec![])))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(cat.write(|w| w.append_commit(bucket, &new_commit(site, 1, vec![random_id()])))),
        ErrorKind::Conflict
    );
    let mut huge = new_commit(site, 1, vec![]);
    huge.files = u64::MAX;
    assert_eq!(
        kind(cat.write(|w| w.append_commit(bucket, &huge))),
        ErrorKind::Invalid
    );
    let taken = cat
        .write(|w| w.create_bucket(tenant, "bucket-a", site))
        .unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
}
