//! Conformance: Upload sessions.

use super::*;

/// Sessions open, renew (never shrinking the lease), and close for good.
pub fn sessions(cat: &dyn Catalog) {
    let (_, site, bucket) = namespace(cat);
    let header = random_id();
    let id = cat
        .write(|w| w.open_session(site, bucket, &header, 1_000))
        .unwrap();
    let s = cat.read(|r| r.session(id)).unwrap().unwrap();
    assert_eq!(
        (s.id, s.site, s.bucket, s.header_id),
        (id, site, bucket, header)
    );
    assert_eq!((s.lease_until_unix, s.closed), (1_000, false));
    assert!(s.is_live(999) && !s.is_live(1_000));

    cat.write(|w| w.renew_session(id, 2_000)).unwrap();
    cat.write(|w| w.renew_session(id, 1_500)).unwrap();
    assert_eq!(
        cat.read(|r| r.session(id))
            .unwrap()
            .unwrap()
            .lease_until_unix,
        2_000
    );

    cat.write(|w| w.close_session(id)).unwrap();
    cat.write(|w| w.close_session(id)).unwrap();
    let s = cat.read(|r| r.session(id)).unwrap().unwrap();
    assert!(s.closed && !s.is_live(0));
    assert!(matches!(
        cat.write(|w| w.renew_session(id, 3_000)),
        Err(CatalogError::Conflict {
            what: "session",
            ..
        })
    ));

    let absent = crate::catalog::SessionId(i64::MAX);
    assert!(cat.read(|r| r.session(absent)).unwrap().is_none());
    assert_not_found(cat.write(|w| w.renew_session(absent, 1)));
    assert_not_found(cat.write(|w| w.close_session(absent)));
    assert_not_found(cat.write(|w| w.open_session(SiteId(i64::MAX), bucket, &header, 1)));
    assert_not_found(cat.write(|w| w.open_session(site, BucketId(i64::MAX), &header, 1)));
    let (_, foreign_site, _) = namespace(cat);
    assert_invalid(
        cat.write(|w| w.open_session(foreign_site, bucket, &header, 1)),
        "session.site",
    );
}
