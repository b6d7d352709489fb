//! Replication lag, as `ferry-hub replication status` shows it: per bucket
//! and replica site, how many commits it is behind and since when the
//! oldest of those has waited (seconds behind), from the cursors replicas
//! acknowledge and the journal. Read from the catalog alone.

use serde::Serialize;

use crate::catalog::{CatalogError, ReadTx, Tenant};

/// One replica of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaLag {
    /// "tenant/bucket".
    pub bucket: String,
    pub source: String,
    pub replica: String,
    /// The last commit the replica acknowledged (0: none).
    pub applied_seq: u64,
    /// When it acknowledged it (0: never).
    pub applied_unix_ms: i64,
    /// The bucket's newest commit.
    pub head_seq: u64,
    pub commits_behind: u64,
    /// Age of the oldest commit not yet applied (0 when caught up).
    pub seconds_behind: f64,
    /// A commit the replica holds back for an operator to confirm.
    pub held: Option<Held>,
    /// Entries the replica gave up writing (`replication dead-letters`
    /// lists them, `replication replay` tries them again).
    pub dead_letters: u64,
    /// An operator asked for the dead letters to be tried again.
    pub replay_requested: bool,
    /// The last error the replica met applying the bucket (resolved when
    /// `applied_seq` has passed its commit).
    pub last_error: Option<LastError>,
    /// When an operator paused the bucket's replication.
    pub paused_since_unix_ms: Option<i64>,
}

/// A replica's last error, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub seq: u64,
    pub message: String,
    pub at_unix_ms: i64,
}

/// A held commit, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub seq: u64,
    pub deletes: u64,
    pub entries: u64,
    pub since_unix_ms: i64,
    pub confirmed: bool,
}

/// The lag of every replica of `tenants`' buckets, in tenant, bucket and
/// site id order, at `now_unix_ms`.
///
/// # Errors
///
/// The catalog's.
pub fn replica_lags(
    r: &mut dyn ReadTx,
    tenants: &[Tenant],
    now_unix_ms: i64,
) -> Result<Vec<ReplicaLag>, CatalogError> {
    let mut out = Vec::new();
    for tenant in tenants {
        let sites = r.list_sites(tenant.id)?;
        let name_of = |id| {
            sites
                .iter()
                .find(|s| s.id == id)
                .map_or_else(|| id.to_string(), |s| s.name.clone())
        };
        for bucket in r.list_buckets(tenant.id)? {
            if bucket.replicas.is_empty() {
                continue;
            }
            let head_seq = r.last_commit(bucket.id)?.map_or(0, |c| c.seq);
            let cursors = r.replica_cursors(bucket.id)?;
            let holds = r.replica_holds(bucket.id)?;
            let troubles = r.replica_troubles(bucket.id)?;
            let paused = r.replication_pause(bucket.id)?.paused_unix_ms;
            for &site in &bucket.replicas {
                let cursor = cursors.iter().find(|c| c.site == site);
                let trouble = troubles.iter().find(|t| t.site == site);
                let applied_seq = cursor.map_or(0, |c| c.seq);
                let oldest_unapplied = match applied_seq < head_seq {
                    true => r.commit(bucket.id, applied_seq + 1)?,
                    false => None,
                };
                out.push(ReplicaLag {
                    bucket: format!("{}/{}", tenant.name, bucket.name),
                    source: name_of(bucket.source_site),
                    replica: name_of(site),
                    applied_seq,
                    applied_unix_ms: cursor.map_or(0, |c| c.applied_unix_ms),
                    head_seq,
                    commits_behind: head_seq.saturating_sub(applied_seq),
                    seconds_behind: oldest_unapplied.map_or(0.0, |c| {
                        (now_unix_ms - c.time_unix_ms).max(0) as f64 / 1000.0
                    }),
                    held: holds.iter().find(|h| h.site == site).map(|h| Held {
                        seq: h.seq,
                        deletes: h.deletes,
                        entries: h.entries,
                        since_unix_ms: h.held_unix_ms,
                        confirmed: h.confirmed,
                    }),
                    dead_letters: trouble.and_then(|t| t.dead.as_ref()).map_or(0, |d| d.total),
                    replay_requested: trouble.is_some_and(|t| t.replay_requested),
                    last_error: trouble
                        .and_then(|t| t.last_error.as_ref())
                        .map(|e| LastError {
                            seq: e.seq,
                            message: e.message.clone(),
                            at_unix_ms: e.at_unix_ms,
                        }),
                    paused_since_unix_ms: paused,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::conformance::{namespace, new_commit};
    use crate::catalog::{CatalogExt, SqliteCatalog};

    #[test]
    fn lag_counts_commits_and_the_age_of_the_oldest_unapplied() {
        let dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(dir.path().join("c.db")).unwrap();
        let (tenant, source, bucket) = namespace(&cat);
        let b = cat
            .write(|w| w.create_site(tenant, "site-b", &rand::random()))
            .unwrap();
        let c = cat
            .write(|w| w.create_site(tenant, "site-c", &rand::random()))
            .unwrap();
        cat.write(|w| w.set_bucket_replicas(bucket, &[b, c]))
            .unwrap();
        for t in [10_000, 20_000, 30_000] {
            cat.write(|w| w.append_commit(bucket, &new_commit(source, t, vec![])))
                .unwrap();
        }
        cat.write(|w| w.ack_replica(bucket, b, 1, 25_000)).unwrap();
        cat.write(|w| w.ack_replica(bucket, c, 3, 31_000)).unwrap();
        let lags = cat
            .read(|r| {
                let tenants = r.list_tenants()?;
                replica_lags(r, &tenants, 50_000)
            })
            .unwrap();
        let t = cat.read(|r| r.tenant(tenant)).unwrap().unwrap().name;
        assert_eq!(
            lags,
            [
                ReplicaLag {
                    bucket: format!("{t}/bucket-a"),
                    source: "site-a".into(),
                    replica: "site-b".into(),
                    applied_seq: 1,
                    applied_unix_ms: 25_000,
                    head_seq: 3,
                    commits_behind: 2,
                    // Commit 2 (made at 20 s) has waited 30 s.
                    seconds_behind: 30.0,
                    held: None,
                    dead_letters: 0,
                    replay_requested: false,
                    last_error: None,
                    paused_since_unix_ms: None,
                },
                ReplicaLag {
                    bucket: format!("{t}/bucket-a"),
                    source: "site-a".into(),
                    replica: "site-c".into(),
                    applied_seq: 3,
                    applied_unix_ms: 31_000,
                    head_seq: 3,
                    commits_behind: 0,
                    seconds_behind: 0.0,
                    held: None,
                    dead_letters: 0,
                    replay_requested: false,
                    last_error: None,
                    paused_since_unix_ms: None,
                },
            ]
        );
    }
}
