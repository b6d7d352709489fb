//! Replica cursors: acknowledged by replicas only, never moving back, never
//! past the journal's end.

use super::*;
use crate::catalog::ReplicaCursor;

pub fn replica_cursors(cat: &dyn Catalog) {
    let (tenant, source, bucket) = namespace(cat);
    let site = |name: &str| {
        cat.write(|w| w.create_site(tenant, name, &rand::random()))
            .unwrap()
    };
    let (b, c, outsider) = (site("site-b"), site("site-c"), site("site-x"));
    cat.write(|w| w.set_bucket_replicas(bucket, &[b, c]))
        .unwrap();
    for t in 1..=3 {
        cat.write(|w| w.append_commit(bucket, &new_commit(source, t, vec![])))
            .unwrap();
    }
    assert!(cat.read(|r| r.replica_cursors(bucket)).unwrap().is_empty());

    let at = |site, seq, seq_now, ms| {
        let cursor = cat.write(|w| w.ack_replica(bucket, site, seq, ms)).unwrap();
        assert_eq!(
            cursor,
            ReplicaCursor {
                site,
                seq: seq_now,
                applied_unix_ms: if seq_now == seq {
                    ms
                } else {
                    cursor.applied_unix_ms
                },
            }
        );
        cursor
    };
    at(b, 2, 2, 1_000);
    at(c, 0, 0, 1_500);
    at(b, 3, 3, 2_000);
    // An older acknowledgement (a retry, a reordering) leaves it as it is.
    let kept = at(b, 1, 3, 3_000);
    assert_eq!(kept.applied_unix_ms, 2_000);
    assert_eq!(
        cat.read(|r| r.replica_cursors(bucket)).unwrap(),
        [
            ReplicaCursor {
                site: b,
                seq: 3,
                applied_unix_ms: 2_000
            },
            ReplicaCursor {
                site: c,
                seq: 0,
                applied_unix_ms: 1_500
            },
        ]
    );

    // Past the end, the source, a site with no part, an unknown bucket.
    assert_invalid(cat.write(|w| w.ack_replica(bucket, c, 4, 1)), "ack.seq");
    assert_invalid(
        cat.write(|w| w.ack_replica(bucket, source, 1, 1)),
        "ack.site",
    );
    assert_invalid(
        cat.write(|w| w.ack_replica(bucket, outsider, 1, 1)),
        "ack.site",
    );
    assert_not_found(cat.write(|w| w.ack_replica(BucketId(i64::MAX), b, 1, 1)));
    // A replica removed can acknowledge no more; its cursor stays listed.
    cat.write(|w| w.set_bucket_replicas(bucket, &[c])).unwrap();
    assert_invalid(cat.write(|w| w.ack_replica(bucket, b, 3, 1)), "ack.site");
    assert_eq!(cat.read(|r| r.replica_cursors(bucket)).unwrap().len(), 2);
}
