//! Replica cursors: acknowledged by replicas only, never moving back, never
//! past the journal's end.

use super::*;
use crate::catalog::{
    DeadCount, DeadLetter, DeadLetters, ReplicaCursor, ReplicaFailure, ReplicaHold, ReplicaTrouble,
    ReplicationPause,
};

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

/// A bucket with replica site-b and three commits: (source, replica, bucket).
fn one_replica_three_commits(cat: &dyn Catalog) -> (SiteId, SiteId, BucketId) {
    let (tenant, source, bucket) = namespace(cat);
    let b = cat
        .write(|w| w.create_site(tenant, "site-b", &rand::random()))
        .unwrap();
    cat.write(|w| w.set_bucket_replicas(bucket, &[b])).unwrap();
    for t in 1..=3 {
        cat.write(|w| w.append_commit(bucket, &new_commit(source, t, vec![])))
            .unwrap();
    }
    (source, b, bucket)
}

/// A hold: recorded by a replica, confirmed by an operator (the same commit
/// held again keeps its confirmation, a later one does not), ended by the
/// acknowledgement of that commit.
pub fn replica_holds(cat: &dyn Catalog) {
    let (source, b, bucket) = one_replica_three_commits(cat);
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

/// A replica's trouble: its last error replaced by the next; its dead
/// letters replaced whole (None clears them); a replay asked for only when
/// there are some, and done by a replayed report.
pub fn replica_troubles(cat: &dyn Catalog) {
    let (source, b, bucket) = one_replica_three_commits(cat);
    assert!(cat.read(|r| r.replica_troubles(bucket)).unwrap().is_empty());
    assert_not_found(cat.write(|w| w.request_replay(bucket, b)));

    let failure = |seq, message: &str| ReplicaFailure {
        seq,
        message: message.into(),
        at_unix_ms: 7_000 + seq as i64,
    };
    cat.write(|w| w.record_replica_error(bucket, b, &failure(1, "disk full")))
        .unwrap();
    cat.write(|w| w.record_replica_error(bucket, b, &failure(2, "permission denied")))
        .unwrap();
    let letter = |path: &str| DeadLetter {
        path: path.into(),
        reason: format!("{path}: permission denied"),
    };
    let dead = DeadLetters {
        seq: 2,
        // Listed in path order whatever the order given.
        letters: vec![letter("z/last"), letter("a/first")],
        total: 5,
    };
    cat.write(|w| w.set_dead_letters(bucket, b, Some(&dead), false))
        .unwrap();
    let trouble = |dead: Option<DeadCount>, replay| ReplicaTrouble {
        site: b,
        last_error: Some(failure(2, "permission denied")),
        dead,
        replay_requested: replay,
    };
    let count = DeadCount { seq: 2, total: 5 };
    assert_eq!(
        cat.read(|r| r.replica_troubles(bucket)).unwrap(),
        [trouble(Some(count), false)]
    );
    assert_eq!(
        cat.read(|r| r.dead_letters(bucket, b)).unwrap(),
        [letter("a/first"), letter("z/last")]
    );

    // Asked for a replay; a report that is not from it leaves it asked.
    assert_eq!(cat.write(|w| w.request_replay(bucket, b)).unwrap(), 5);
    cat.write(|w| w.set_dead_letters(bucket, b, Some(&dead), false))
        .unwrap();
    assert!(cat.read(|r| r.replica_troubles(bucket)).unwrap()[0].replay_requested);
    // The replay wrote everything: no dead letters, the replay done, the
    // last error still told.
    cat.write(|w| w.set_dead_letters(bucket, b, None, true))
        .unwrap();
    assert_eq!(
        cat.read(|r| r.replica_troubles(bucket)).unwrap(),
        [trouble(None, false)]
    );
    assert!(cat.read(|r| r.dead_letters(bucket, b)).unwrap().is_empty());
    assert_not_found(cat.write(|w| w.request_replay(bucket, b)));

    // Only replicas report, of commits that exist, and a bounded list.
    assert_invalid(
        cat.write(|w| w.record_replica_error(bucket, source, &failure(1, "x"))),
        "ack.site",
    );
    assert_invalid(
        cat.write(|w| w.record_replica_error(bucket, b, &failure(9, "x"))),
        "ack.seq",
    );
    let too_many = DeadLetters {
        seq: 3,
        letters: (0..=crate::catalog::replication::MAX_DEAD_LETTERS)
            .map(|i| letter(&format!("f{i}")))
            .collect(),
        total: 2_000,
    };
    assert_invalid(
        cat.write(|w| w.set_dead_letters(bucket, b, Some(&too_many), false)),
        "dead_letters",
    );
    assert_not_found(cat.write(|w| w.set_dead_letters(BucketId(i64::MAX), b, None, false)));
}

/// A pause: kept with its first time until resumed, the resume's time
/// kept after; only of buckets that exist.
pub fn replication_pauses(cat: &dyn Catalog) {
    let (_, _, bucket) = namespace(cat);
    let pause = |paused, resumed| ReplicationPause {
        paused_unix_ms: paused,
        resumed_unix_ms: resumed,
    };
    let now = |cat: &dyn Catalog| cat.read(|r| r.replication_pause(bucket)).unwrap();
    assert_eq!(now(cat), pause(None, None));
    // A resume of a bucket never paused changes nothing.
    cat.write(|w| w.set_replication_paused(bucket, false, 500))
        .unwrap();
    assert_eq!(now(cat), pause(None, None));
    cat.write(|w| w.set_replication_paused(bucket, true, 1_000))
        .unwrap();
    cat.write(|w| w.set_replication_paused(bucket, true, 2_000))
        .unwrap();
    assert_eq!(now(cat), pause(Some(1_000), None));
    cat.write(|w| w.set_replication_paused(bucket, false, 3_000))
        .unwrap();
    cat.write(|w| w.set_replication_paused(bucket, false, 4_000))
        .unwrap();
    assert_eq!(now(cat), pause(None, Some(3_000)));
    cat.write(|w| w.set_replication_paused(bucket, true, 5_000))
        .unwrap();
    assert_eq!(now(cat), pause(Some(5_000), Some(3_000)));
    assert_not_found(cat.write(|w| w.set_replication_paused(BucketId(i64::MAX), true, 1)));
}
