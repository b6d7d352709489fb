//! A bucket's commit chain, checked by the agent.
//!
//! Each commit's MAC covers its parent's (ferry_proto::chain), under a key
//! only key holders have. Reading a journal, the agent checks every link
//! from the first commit, so a hub or catalog cannot reorder commits, swap
//! them between buckets or forge one. Dropping the newest commits leaves a
//! valid shorter chain: that is caught against the head this site last saw
//! of the bucket, kept in `state-dir/heads.db`.

use std::path::{Path, PathBuf};

use ferry_crypto::TenantKeys;
use ferry_proto::chain::{CommitClaim, GENESIS, MAC_LEN, body_digest, manifest_digest};
use ferry_proto::v1::{CommitInfo, ListCommitsRequest, ListCommitsResponse};
use ferry_proto::{BadId, BlobId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::client::{HubCallError, HubClient};

/// A bucket's newest commit as a site knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub mac: [u8; MAC_LEN],
}

impl Head {
    /// The parent MAC of the commit after this head (`None`: an empty bucket).
    pub fn parent_of_next(head: Option<&Head>) -> [u8; MAC_LEN] {
        head.map_or(GENESIS, |h| h.mac)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(
        "bucket {bucket}: commit {seq} {reason}; the hub's journal was altered \
         (reordered, swapped or forged), so it is not used"
    )]
    Broken {
        bucket: String,
        seq: u64,
        reason: String,
    },
    #[error(
        "bucket {bucket}: commit {seq} carries no MAC. A journal written before commits were \
         signed has none; if this history is the bucket's own, `ferry-agent trust-history` \
         accepts it as it stands. Otherwise the MACs were stripped, and it is not used"
    )]
    Unsigned { bucket: String, seq: u64 },
    #[error(
        "bucket {bucket}: the hub's journal ends at commit {hub_seq}, but this site has seen \
         commit {known_seq}: the journal was rolled back, so it is not used"
    )]
    RolledBack {
        bucket: String,
        hub_seq: u64,
        known_seq: u64,
    },
    #[error(transparent)]
    Hub(#[from] HubCallError),
    #[error("{0}")]
    BadId(#[from] BadId),
    #[error("creating the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("known heads {path}: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    #[error("known heads {path}: {op}: {source}")]
    State {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
}

/// The claim a commit's MAC covers, as listed.
fn claim<'a>(
    bucket: &'a str,
    parent: [u8; MAC_LEN],
    c: &'a CommitInfo,
) -> Result<CommitClaim<'a>, String> {
    let manifest_digest = <[u8; 32]>::try_from(c.manifest_digest.as_slice())
        .map_err(|_| format!("has a {}-byte manifest digest", c.manifest_digest.len()))?;
    Ok(CommitClaim {
        bucket,
        seq: c.seq,
        parent,
        kind: &c.kind,
        manifest_digest,
        body_digest: body_digest(&c.body),
        files: c.files,
        bytes: c.bytes,
    })
}

/// The MAC a listed commit stands for in the chain: its own, or for a
/// commit without one (made before commits were signed) [`GENESIS`], the
/// parent of the first signed commit after it. `None` for a MAC of another
/// length.
pub fn mac_or_genesis(mac: &[u8]) -> Option<[u8; MAC_LEN]> {
    match mac.len() {
        0 => Some(GENESIS),
        _ => <[u8; MAC_LEN]>::try_from(mac).ok(),
    }
}

/// Checks that `commits` continue the chain after `from` (`None`: they
/// start at the bucket's first commit) and returns the new head. Commits
/// numbered up to `unsigned_upto` may carry no MAC: history made before
/// commits were signed, which this site accepted as it stands
/// (`ferry-agent trust-history`).
///
/// # Errors
///
/// [`ChainError::Broken`] naming the first commit out of place or whose MAC
/// does not verify.
pub fn verify(
    keys: &TenantKeys,
    bucket: &str,
    from: Option<Head>,
    commits: &[CommitInfo],
    unsigned_upto: u64,
) -> Result<Option<Head>, ChainError> {
    let mut head = from;
    for c in commits {
        let broken = |reason: String| ChainError::Broken {
            bucket: bucket.to_owned(),
            seq: c.seq,
            reason,
        };
        let expected = head.map_or(1, |h| h.seq + 1);
        if c.seq != expected {
            return Err(broken(format!("is listed where commit {expected} belongs")));
        }
        if c.mac.is_empty() {
            if c.seq <= unsigned_upto {
                head = Some(Head {
                    seq: c.seq,
                    mac: GENESIS,
                });
                continue;
            }
            return Err(ChainError::Unsigned {
                bucket: bucket.to_owned(),
                seq: c.seq,
            });
        }
        let claim = claim(bucket, Head::parent_of_next(head.as_ref()), c).map_err(broken)?;
        if !keys.commit_mac_verifies(&claim.encode(), &c.mac) {
            return Err(broken(
                "does not verify against its content, its place and its parent".to_owned(),
            ));
        }
        let mut mac = [0; MAC_LEN];
        mac.copy_from_slice(&c.mac);
        head = Some(Head { seq: c.seq, mac });
    }
    Ok(head)
}

/// Checks a verified chain that ends at `hub_seq` against the head this
/// site last saw: the chain may have grown, not shrunk or forked.
/// `at_known` is the MAC the chain has at the known head's number.
///
/// # Errors
///
/// [`ChainError::RolledBack`] or [`ChainError::Broken`].
pub fn check_known(
    bucket: &str,
    known: Option<Head>,
    hub_seq: u64,
    at_known: Option<&[u8]>,
) -> Result<(), ChainError> {
    let Some(known) = known else {
        return Ok(());
    };
    if hub_seq < known.seq {
        return Err(ChainError::RolledBack {
            bucket: bucket.to_owned(),
            hub_seq,
            known_seq: known.seq,
        });
    }
    if at_known.and_then(mac_or_genesis) != Some(known.mac) {
        return Err(ChainError::Broken {
            bucket: bucket.to_owned(),
            seq: known.seq,
            reason: "is not the commit this site saw at that number".to_owned(),
        });
    }
    Ok(())
}

/// Walks the commits of `bucket` after `from` (`None`: from the first),
/// oldest first and a page at a time, checking each link of the chain as
/// it comes (memory stays at one page however long the journal), and hands
/// each checked commit to `visit`. Returns the head the chain reaches.
/// Listings carry no manifests, only their digests.
///
/// # Errors
///
/// [`ChainError::Broken`] at the first bad link, the hub's error, or
/// `Protocol` for a listing out of order.
pub async fn walk(
    client: &HubClient,
    keys: &TenantKeys,
    bucket: &str,
    from: Option<Head>,
    unsigned_upto: u64,
    mut visit: impl FnMut(CommitInfo),
) -> Result<Option<Head>, ChainError> {
    let mut head = from;
    loop {
        let after = head.map_or(0, |h| h.seq);
        let page = list_page(client, bucket, after, 0, true).await?;
        if page.commits.iter().any(|c| c.seq <= after) {
            return Err(HubCallError::Protocol {
                call: "ListCommits",
                reason: "commits out of order".into(),
            }
            .into());
        }
        head = verify(keys, bucket, head, &page.commits, unsigned_upto)?;
        let done = !page.more || page.commits.is_empty();
        page.commits.into_iter().for_each(&mut visit);
        if done {
            return Ok(head);
        }
    }
}

/// Walks every commit of `bucket` ([`walk`] from the first), then checks
/// the chain against the head this site last saw, which then moves to the
/// newest.
///
/// # Errors
///
/// [`ChainError`]: a broken or rolled-back chain, or the hub's error.
pub async fn walk_verified(
    client: &HubClient,
    keys: &TenantKeys,
    bucket: &str,
    heads: &Path,
    mut visit: impl FnMut(CommitInfo),
) -> Result<(), ChainError> {
    let heads = KnownHeads::open(heads)?;
    let known = heads.get(bucket)?;
    let unsigned_upto = heads.unsigned_upto(bucket)?;
    let mut at_known = None;
    let head = walk(client, keys, bucket, None, unsigned_upto, |c| {
        if known.is_some_and(|k| k.seq == c.seq) {
            at_known = Some(c.mac.clone());
        }
        visit(c);
    })
    .await?;
    check_known(
        bucket,
        known,
        head.map_or(0, |h| h.seq),
        at_known.as_deref(),
    )?;
    if let Some(head) = head {
        heads.advance(bucket, head)?;
    }
    Ok(())
}

/// [`walk_verified`], collecting every commit.
///
/// # Errors
///
/// As [`walk_verified`].
pub async fn list_verified(
    client: &HubClient,
    keys: &TenantKeys,
    bucket: &str,
    heads: &Path,
) -> Result<Vec<CommitInfo>, ChainError> {
    let mut all = Vec::new();
    walk_verified(client, keys, bucket, heads, |c| all.push(c)).await?;
    Ok(all)
}

/// One ListCommits call.
async fn list_page(
    client: &HubClient,
    bucket: &str,
    after_seq: u64,
    limit: u32,
    omit_manifests: bool,
) -> Result<ListCommitsResponse, ChainError> {
    let request = ListCommitsRequest {
        bucket: bucket.to_string(),
        after_seq,
        limit,
        omit_manifests,
    };
    let response = client.journal.clone().list_commits(request).await;
    Ok(response
        .map_err(HubCallError::failed("ListCommits"))?
        .into_inner())
}

/// The manifest ids of commit `seq`, checked against the digest its
/// verified listing gave.
///
/// # Errors
///
/// The hub's, or `Broken` if the ids are not the ones the MAC covers.
pub async fn manifest_of(
    client: &HubClient,
    bucket: &str,
    commit: &CommitInfo,
) -> Result<Vec<BlobId>, ChainError> {
    let listed = list_page(client, bucket, commit.seq - 1, 1, false).await?;
    let broken = |reason: &str| ChainError::Broken {
        bucket: bucket.to_owned(),
        seq: commit.seq,
        reason: reason.to_owned(),
    };
    let Some(found) = listed.commits.into_iter().find(|c| c.seq == commit.seq) else {
        return Err(broken("vanished from the journal while it was read"));
    };
    let ids = found
        .manifest
        .iter()
        .map(|id| BlobId::from_slice("CommitInfo.manifest", id))
        .collect::<Result<Vec<_>, _>>()?;
    if manifest_digest(&ids)[..] != commit.manifest_digest[..] {
        return Err(broken("has other manifest chunks than its MAC covers"));
    }
    Ok(ids)
}

/// The head of each bucket this site has seen: a table in a small SQLite
/// file beside the journals.
pub struct KnownHeads {
    conn: Connection,
    path: PathBuf,
}

impl KnownHeads {
    /// Opens (creating) the known heads file.
    ///
    /// # Errors
    ///
    /// `State` if SQLite cannot open or set it up.
    pub fn open(path: &Path) -> Result<Self, ChainError> {
        let err = |op| {
            let path = path.to_path_buf();
            move |source| ChainError::State { path, op, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ChainError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err("set busy timeout"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS heads (
                 bucket TEXT PRIMARY KEY,
                 seq    INTEGER NOT NULL,
                 mac    BLOB NOT NULL
             ) STRICT;
             CREATE TABLE IF NOT EXISTS trusted_unsigned (
                 bucket TEXT PRIMARY KEY,
                 upto   INTEGER NOT NULL
             ) STRICT;",
        )
        .map_err(err("create schema"))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> ChainError + '_ {
        move |source| ChainError::State {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// The head last seen of `bucket`, if any.
    ///
    /// # Errors
    ///
    /// `State` for a read that fails or a row that is not a head.
    pub fn get(&self, bucket: &str) -> Result<Option<Head>, ChainError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT seq, mac FROM heads WHERE bucket = ?1",
                [bucket],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("read head"))?;
        let Some((seq, mac)) = row else {
            return Ok(None);
        };
        let bad = || ChainError::CorruptState {
            path: self.path.clone(),
            reason: format!("bucket {bucket}: seq {seq} with a {}-byte MAC", mac.len()),
        };
        Ok(Some(Head {
            seq: u64::try_from(seq).map_err(|_| bad())?,
            mac: <[u8; MAC_LEN]>::try_from(mac.as_slice()).map_err(|_| bad())?,
        }))
    }

    /// The highest commit of `bucket` this site accepted without a MAC (0
    /// for none).
    ///
    /// # Errors
    ///
    /// `State` if the read fails.
    pub fn unsigned_upto(&self, bucket: &str) -> Result<u64, ChainError> {
        let upto: Option<i64> = self
            .conn
            .query_row(
                "SELECT upto FROM trusted_unsigned WHERE bucket = ?1",
                [bucket],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("read trusted history"))?;
        Ok(upto.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// Accepts the commits of `bucket` up to `upto` without MACs.
    ///
    /// # Errors
    ///
    /// `State` if the write fails.
    pub fn trust_unsigned(&self, bucket: &str, upto: u64) -> Result<(), ChainError> {
        let upto = i64::try_from(upto).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "INSERT INTO trusted_unsigned (bucket, upto) VALUES (?1, ?2) \
                 ON CONFLICT (bucket) DO UPDATE SET upto = excluded.upto",
                params![bucket, upto],
            )
            .map_err(self.err("write trusted history"))?;
        Ok(())
    }

    /// Forgets the head seen of `bucket`, returning it.
    ///
    /// # Errors
    ///
    /// `State` if the write fails.
    pub fn forget(&self, bucket: &str) -> Result<Option<Head>, ChainError> {
        let head = self.get(bucket)?;
        self.conn
            .execute("DELETE FROM heads WHERE bucket = ?1", [bucket])
            .map_err(self.err("forget head"))?;
        Ok(head)
    }

    /// Records `head` as seen, unless a later one already is.
    ///
    /// # Errors
    ///
    /// `State` if the write fails.
    pub fn advance(&self, bucket: &str, head: Head) -> Result<(), ChainError> {
        let seq = i64::try_from(head.seq).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "INSERT INTO heads (bucket, seq, mac) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (bucket) DO UPDATE SET seq = excluded.seq, mac = excluded.mac \
                 WHERE excluded.seq > heads.seq",
                params![bucket, seq, &head.mac[..]],
            )
            .map_err(self.err("write head"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(keys: &TenantKeys, bucket: &str, parent: [u8; 32], seq: u64) -> CommitInfo {
        let mut c = CommitInfo {
            seq,
            kind: "snapshot".into(),
            manifest_digest: manifest_digest(&[BlobId([seq as u8; 32])]).to_vec(),
            files: seq,
            bytes: 10 * seq,
            ..Default::default()
        };
        c.mac = keys
            .commit_mac(&claim(bucket, parent, &c).unwrap().encode())
            .to_vec();
        c
    }

    fn chain(keys: &TenantKeys, bucket: &str, n: u64) -> Vec<CommitInfo> {
        let mut out: Vec<CommitInfo> = Vec::new();
        for seq in 1..=n {
            let parent = out
                .last()
                .map_or(GENESIS, |c| c.mac.clone().try_into().unwrap());
            out.push(signed(keys, bucket, parent, seq));
        }
        out
    }

    fn broken_at(result: Result<Option<Head>, ChainError>) -> u64 {
        match result {
            Err(ChainError::Broken { seq, .. }) => seq,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_chain_verifies_and_a_write_only_key_signs_it() {
        let keys = TenantKeys::generate();
        let commits = chain(&keys.to_public(), "acme/docs", 3);
        let head = verify(&keys, "acme/docs", None, &commits, 0)
            .unwrap()
            .unwrap();
        assert_eq!(head.seq, 3);
        assert_eq!(head.mac[..], commits[2].mac[..]);
        // And from a known head onwards.
        let from = verify(&keys, "acme/docs", None, &commits[..1], 0).unwrap();
        assert_eq!(
            verify(&keys, "acme/docs", from, &commits[1..], 0).unwrap(),
            Some(head)
        );
        assert_eq!(verify(&keys, "acme/docs", None, &[], 0).unwrap(), None);
    }

    #[test]
    fn reordered_swapped_altered_or_unsigned_commits_are_refused() {
        let keys = TenantKeys::generate();
        let commits = chain(&keys, "acme/docs", 3);
        // Reordered.
        let mut reordered = commits.clone();
        reordered.swap(1, 2);
        assert_eq!(
            broken_at(verify(&keys, "acme/docs", None, &reordered, 0)),
            3
        );
        // Renumbered to hide the swap.
        let (a, b) = (reordered[1].seq, reordered[2].seq);
        reordered[1].seq = b;
        reordered[2].seq = a;
        assert_eq!(
            broken_at(verify(&keys, "acme/docs", None, &reordered, 0)),
            2
        );
        // A gap: commit 2 dropped.
        let gap = [commits[0].clone(), commits[2].clone()];
        assert_eq!(broken_at(verify(&keys, "acme/docs", None, &gap, 0)), 3);
        // Another bucket's chain, or one commit of it.
        assert_eq!(broken_at(verify(&keys, "acme/other", None, &commits, 0)), 1);
        let mut swapped = commits.clone();
        swapped[2] = chain(&keys, "acme/other", 3)[2].clone();
        assert_eq!(broken_at(verify(&keys, "acme/docs", None, &swapped, 0)), 3);
        // Content changed.
        let mut altered = commits.clone();
        altered[1].files += 1;
        assert_eq!(broken_at(verify(&keys, "acme/docs", None, &altered, 0)), 2);
        let mut altered = commits.clone();
        altered[1].manifest_digest[0] ^= 1;
        assert_eq!(broken_at(verify(&keys, "acme/docs", None, &altered, 0)), 2);
        // No MAC, or a short digest.
        let mut unsigned = commits.clone();
        unsigned[0].mac.clear();
        let err = verify(&keys, "acme/docs", None, &unsigned, 0).unwrap_err();
        assert!(matches!(err, ChainError::Unsigned { seq: 1, .. }), "{err}");
        assert!(err.to_string().contains("trust-history"), "{err}");
        let mut short = commits.clone();
        short[0].manifest_digest.pop();
        assert_eq!(broken_at(verify(&keys, "acme/docs", None, &short, 0)), 1);
        // Another tenant's key.
        let other = TenantKeys::generate();
        assert_eq!(broken_at(verify(&other, "acme/docs", None, &commits, 0)), 1);
    }

    /// History from before commits were signed: accepted only as far as
    /// this site said; the first signed commit after it has GENESIS for
    /// its parent.
    #[test]
    fn an_unsigned_history_is_accepted_only_as_far_as_trusted() {
        let keys = TenantKeys::generate();
        let mut commits = chain(&keys, "acme/docs", 2);
        for c in &mut commits {
            c.mac.clear();
        }
        let third = signed(&keys, "acme/docs", GENESIS, 3);
        commits.push(third.clone());
        let head = verify(&keys, "acme/docs", None, &commits, 2)
            .unwrap()
            .unwrap();
        assert_eq!((head.seq, &head.mac[..]), (3, &third.mac[..]));
        let err = verify(&keys, "acme/docs", None, &commits, 1).unwrap_err();
        assert!(matches!(err, ChainError::Unsigned { seq: 2, .. }), "{err}");
        // A MAC stripped past the trusted prefix is refused.
        commits[2].mac.clear();
        let err = verify(&keys, "acme/docs", None, &commits, 2).unwrap_err();
        assert!(matches!(err, ChainError::Unsigned { seq: 3, .. }), "{err}");
        assert_eq!(mac_or_genesis(&[]), Some(GENESIS));
        assert_eq!(mac_or_genesis(&[1; 31]), None);
    }

    #[test]
    fn a_shorter_or_forked_chain_than_this_site_saw_is_refused() {
        let keys = TenantKeys::generate();
        let commits = chain(&keys, "acme/docs", 3);
        let head = |i: usize| Head {
            seq: commits[i].seq,
            mac: commits[i].mac.clone().try_into().unwrap(),
        };
        // Grown since: fine. Unknown: fine.
        check_known("acme/docs", Some(head(1)), 3, Some(&commits[1].mac)).unwrap();
        check_known("acme/docs", Some(head(2)), 3, Some(&commits[2].mac)).unwrap();
        check_known("acme/docs", None, 3, None).unwrap();
        // Rolled back to commit 2, or to nothing.
        let err = check_known("acme/docs", Some(head(2)), 2, None).unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::RolledBack {
                    hub_seq: 2,
                    known_seq: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = check_known("acme/docs", Some(head(0)), 0, None).unwrap_err();
        assert!(
            matches!(err, ChainError::RolledBack { hub_seq: 0, .. }),
            "{err}"
        );
        // Forked: another commit at the number this site saw.
        let forked = chain(&keys, "acme/fork", 3);
        let err = check_known("acme/docs", Some(head(2)), 3, Some(&forked[2].mac)).unwrap_err();
        assert!(matches!(err, ChainError::Broken { seq: 3, .. }), "{err}");
    }

    #[test]
    fn known_heads_only_move_forward_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.db");
        let heads = KnownHeads::open(&path).unwrap();
        assert_eq!(heads.get("acme/docs").unwrap(), None);
        let (two, three) = (
            Head {
                seq: 2,
                mac: [2; 32],
            },
            Head {
                seq: 3,
                mac: [3; 32],
            },
        );
        heads.advance("acme/docs", three).unwrap();
        heads.advance("acme/docs", two).unwrap();
        heads.advance("acme/other", two).unwrap();
        drop(heads);
        let heads = KnownHeads::open(&path).unwrap();
        assert_eq!(heads.get("acme/docs").unwrap(), Some(three));
        assert_eq!(heads.get("acme/other").unwrap(), Some(two));
        assert_eq!(heads.forget("acme/docs").unwrap(), Some(three));
        assert_eq!(heads.get("acme/docs").unwrap(), None);
        heads.advance("acme/docs", two).unwrap();
        assert_eq!(heads.get("acme/docs").unwrap(), Some(two));
        assert_eq!(heads.unsigned_upto("acme/docs").unwrap(), 0);
        heads.trust_unsigned("acme/docs", 7).unwrap();
        assert_eq!(heads.unsigned_upto("acme/docs").unwrap(), 7);
        assert_eq!(heads.unsigned_upto("acme/other").unwrap(), 0);
    }
}
