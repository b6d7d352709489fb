//! Replica cursors: acknowledged by replicas only, never moving back, never
//! past the journal's end.

use super::*;
use crate::catalog::{ReplicaCursor, ReplicaHold};

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

/// A hold: recorded by a replica, confirmed by an operator (the same commit
/// held again keeps its confirmation, a later one does not), ended by the
/// acknowledgement of that commit.
pub fn replica_holds(cat: &dyn Catalog) {
    let (tenant, source, bucket) = namespace(cat);
    let b = cat
        .write(|w| w.create_site(tenant, "site-b", &rand::random()))
        .unwrap();
    cat.write(|w| w.set_bucket_replicas(bucket, &[b])).unwrap();
    for t in 1..=3 {
        cat.write(|w| w.append_commit(bucket, &new_commit(source, t, vec![])))
            .unwrap();
    }
    let hold = |seq| ReplicaHold {
        site: b,
        seq,
        deletes: 80,
        entries: 100,
        held_unix_ms: 5_000,
        confirmed: false,
    };
    assert_not_found(cat.write(|w| w.confirm_hold(bucket, b)));
    cat.write(|w| w.hold_replica(bucket, &hold(2))).unwrap();
    assert_eq!(cat.read(|r| r.replica_holds(bucket)).unwrap(), [hold(2)]);
    assert_eq!(cat.write(|w| w.confirm_hold(bucket, b)).unwrap(), 2);
    // Held again (a restarted replica): still confirmed.
    cat.write(|w| w.hold_replica(bucket, &hold(2))).unwrap();
    assert!(cat.read(|r| r.replica_holds(bucket)).unwrap()[0].confirmed);
    // A later commit held: not confirmed.
    cat.write(|w| w.hold_replica(bucket, &hold(3))).unwrap();
    assert!(!cat.read(|r| r.replica_holds(bucket)).unwrap()[0].confirmed);
    // Only replicas hold, and only commits that exist.
    let mut foreign = hold(2);
    foreign.site = source;
    assert_invalid(cat.write(|w| w.hold_replica(bucket, &foreign)), "ack.site");
    assert_invalid(cat.write(|w| w.hold_replica(bucket, &hold(9))), "ack.seq");
    // Applied: the hold is over.
    cat.write(|w| w.ack_replica(bucket, b, 3, 6_000)).unwrap();
    assert!(cat.read(|r| r.replica_holds(bucket)).unwrap().is_empty());
}
