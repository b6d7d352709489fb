//! A replica kept in an S3 bucket: each file or object of the snapshot an
//! object under the copy's prefix with its key.
//!
//! A listing gives an object's key and ETag, not what it was made from,
//! so the replica keeps an index beside it (SQLite, in the agent's state
//! directory): each key it wrote, a digest of the manifest entry it wrote
//! it from, and the ETag the bucket gave it. An object whose entry and
//! ETag are both unchanged is not written again; anything else under the
//! prefix (a key the snapshot lacks, or an object changed behind the
//! replica's back) is deleted or written anew. The snapshot's keys and
//! what goes are tables on disk too, so memory stays flat however many
//! objects the bucket holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_crypto::TenantKeys;
use ferry_proto::BlobId;
use ferry_proto::v1::ManifestEntry;
use ferry_s3::{S3Location, describe};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::task::JoinSet;

use super::ReplicaError;
use crate::client::HubClient;
use crate::restore::{Present, RestoreError, for_each_entry};
use crate::restore_bucket::{BucketTarget, Written, has_object_form};

/// Deletes in flight at once.
const DELETES_IN_FLIGHT: usize = 8;
/// Keys read from the index per round of deletes.
const DELETE_BATCH: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS written (
    key TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    -- As the bucket gave it to the write.
    etag TEXT NOT NULL
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS want (
    key TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    present INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS gone (key TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// A replica's bucket and its index.
pub struct BucketCopy {
    target: Arc<BucketTarget>,
    index: Arc<Mutex<Connection>>,
    index_path: PathBuf,
}

/// A manifest entry's digest: what the object written from it holds (its
/// chunks, size, layout and metadata; the path is the key).
fn digest(entry: &ManifestEntry) -> Vec<u8> {
    let mut entry = entry.clone();
    entry.path.clear();
    blake3::hash(&entry.encode_to_vec()).as_bytes().to_vec()
}

fn key_of(entry: &ManifestEntry) -> String {
    String::from_utf8_lossy(&entry.path).into_owned()
}

impl BucketCopy {
    /// Connects to the bucket (which must exist) and opens the index at
    /// `index_path`, made if absent.
    ///
    /// # Errors
    /// The bucket cannot be reached, or the index opened.
    pub async fn open(location: &S3Location, index_path: &Path) -> Result<Self, ReplicaError> {
        let target = BucketTarget::open(location.clone(), true).await?;
        let path = index_path.to_path_buf();
        let index = tokio::task::spawn_blocking(move || -> Result<Connection, rusqlite::Error> {
            if let Some(dir) = path.parent() {
                // A failure shows as the open's.
                let _ = std::fs::create_dir_all(dir);
            }
            let db = Connection::open(&path)?;
            db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
            db.execute_batch(SCHEMA)?;
            Ok(db)
        })
        .await
        .map_err(|e| ReplicaError::Task(e.to_string()))?
        .map_err(|e| index_error(index_path, &e))?;
        Ok(Self {
            target: Arc::new(target),
            index: Arc::new(Mutex::new(index)),
            index_path: index_path.to_path_buf(),
        })
    }

    /// Runs `f` on the index on a blocking thread.
    async fn with_index<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        let index = self.index.clone();
        let path = self.index_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = index.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            f(&mut db)
        })
        .await
        .map_err(|e| ReplicaError::Task(e.to_string()))?
        .map_err(|e| index_error(&path, &e))
    }

    /// Compares the snapshot (its manifest) with the bucket: gives (objects
    /// that would go, objects the copy holds), and leaves the index knowing
    /// which of the snapshot's objects are there already.
    ///
    /// # Errors
    /// The manifest cannot be read, the bucket listed or the index written.
    pub async fn survey(
        &self,
        client: &HubClient,
        keys: &Arc<TenantKeys>,
        bucket: &str,
        manifest: Vec<BlobId>,
    ) -> Result<(u64, u64), ReplicaError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(String, Vec<u8>)>(1024);
        let filling = self.with_index(move |db| {
            let t = db.transaction()?;
            t.execute_batch("DELETE FROM want; DELETE FROM gone;")?;
            {
                let mut insert =
                    t.prepare("INSERT OR REPLACE INTO want (key, digest) VALUES (?1, ?2)")?;
                for (key, digest) in rx {
                    insert.execute(params![key, digest])?;
                }
            }
            t.commit()
        });
        let fed = async move {
            for_each_entry(client, keys, bucket, manifest, |entry| {
                if has_object_form(&entry) {
                    // The index's thread is gone only if it failed: its error is told.
                    let _ = tx.send((key_of(&entry), digest(&entry)));
                }
                Ok(())
            })
            .await
        };
        let (filled, fed) = tokio::join!(filling, fed);
        fed?;
        filled?;

        let (mut deletes, mut entries) = (0, 0);
        let mut token = None;
        loop {
            let (page, next) = self.list_page(token).await?;
            entries += page.len() as u64;
            deletes += self.with_index(move |db| mark(db, &page)).await?;
            match next {
                Some(next) => token = Some(next),
                None => return Ok((deletes, entries)),
            }
        }
    }

    /// One page of the bucket's listing under the prefix: (key below the
    /// prefix, ETag) and the token of the next page.
    async fn list_page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<(String, String)>, Option<String>), ReplicaError> {
        let location = self.target.location();
        let page = self
            .target
            .client()
            .list_objects_v2()
            .bucket(&location.bucket)
            .prefix(&location.prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| self.bucket_error(&describe(&e)))?;
        let items = page
            .contents()
            .iter()
            .filter_map(|object| {
                let key = object.key()?.strip_prefix(&location.prefix)?;
                Some((
                    key.to_owned(),
                    object.e_tag().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let next = match page.is_truncated() {
            Some(true) => page.next_continuation_token().map(str::to_owned),
            _ => None,
        };
        Ok((items, next))
    }

    fn bucket_error(&self, reason: &str) -> ReplicaError {
        ReplicaError::Restore(RestoreError::Target {
            path: self.target.describe().into(),
            reason: reason.to_owned(),
        })
    }

    /// Deletes what the last survey found the snapshot does not hold;
    /// gives how many objects went, and the keys of the first thousand.
    ///
    /// # Errors
    /// A delete the bucket refused (what went before it is gone).
    pub async fn remove(&self) -> Result<(u64, Vec<String>), ReplicaError> {
        let mut removed = 0;
        let mut listed = Vec::new();
        let mut after = String::new();
        loop {
            let from = after.clone();
            let batch: Vec<String> = self
                .with_index(move |db| {
                    let mut select =
                        db.prepare("SELECT key FROM gone WHERE key > ?1 ORDER BY key LIMIT ?2")?;
                    let keys = select
                        .query_map(params![from, DELETE_BATCH as i64], |row| row.get(0))?
                        .collect::<Result<Vec<String>, _>>()?;
                    Ok(keys)
                })
                .await?;
            let Some(last) = batch.last() else {
                return Ok((removed, listed));
            };
            after = last.clone();
            let mut in_flight = JoinSet::new();
            for key in &batch {
                while in_flight.len() >= DELETES_IN_FLIGHT {
                    self.joined(in_flight.join_next().await)?;
                }
                let client = self.target.client().clone();
                let location = self.target.location().clone();
                let full = location.key(key);
                in_flight.spawn(async move {
                    client
                        .delete_object()
                        .bucket(&location.bucket)
                        .key(&full)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("deleting {full}: {}", describe(&e)))
                });
            }
            while let Some(done) = in_flight.join_next().await {
                self.joined(Some(done))?;
            }
            removed += batch.len() as u64;
            let room = crate::restore::LISTED_ENTRIES.saturating_sub(listed.len());
            listed.extend(batch.iter().take(room).cloned());
            self.with_index(move |db| {
                let t = db.transaction()?;
                {
                    let mut forget = t.prepare("DELETE FROM written WHERE key = ?1")?;
                    for key in &batch {
                        forget.execute([key])?;
                    }
                }
                t.commit()
            })
            .await?;
        }
    }

    fn joined(
        &self,
        done: Option<Result<Result<(), String>, tokio::task::JoinError>>,
    ) -> Result<(), ReplicaError> {
        match done {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(reason))) => Err(self.bucket_error(&reason)),
            Some(Err(e)) => Err(self.bucket_error(&e.to_string())),
        }
    }

    /// The restore target: the bucket, told which of the snapshot's objects
    /// the last survey found there already.
    pub fn target(&self) -> Arc<BucketTarget> {
        let index = self.index.clone();
        let present: Present = Arc::new(move |entry: &ManifestEntry| {
            let Ok(db) = index.lock() else {
                return false;
            };
            db.query_row(
                "SELECT present FROM want WHERE key = ?1",
                [key_of(entry)],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .ok()
            .flatten()
                == Some(1)
        });
        let index = self.index.clone();
        let written: Written = Arc::new(move |key: &str, etag: &str| {
            let Ok(db) = index.lock() else {
                return;
            };
            // Not recorded, the object is written again at the next commit.
            let recorded = db.execute(
                "INSERT OR REPLACE INTO written (key, digest, etag)
                     SELECT key, digest, ?2 FROM want WHERE key = ?1",
                params![key, etag],
            );
            if let Err(e) = recorded {
                tracing::warn!(key, error = %e, "replica index: a written object not recorded");
            }
        });
        let mut target = (*self.target).clone();
        target.present = Some(present);
        target.written = Some(written);
        Arc::new(target)
    }

    /// Forgets the keys the snapshot no longer holds, once it is written.
    ///
    /// # Errors
    /// The index cannot be written.
    pub async fn written(&self) -> Result<(), ReplicaError> {
        self.with_index(|db| {
            db.execute(
                "DELETE FROM written WHERE key NOT IN (SELECT key FROM want)",
                [],
            )
            .map(drop)
        })
        .await
    }
}

/// Marks a page of the listing against the snapshot: a key it lacks goes
/// (into `gone`); a key it holds as the index says it was written is
/// present. Gives how many go.
fn mark(db: &mut Connection, page: &[(String, String)]) -> rusqlite::Result<u64> {
    let t = db.transaction()?;
    let mut deletes = 0;
    {
        let mut wanted = t.prepare("SELECT digest FROM want WHERE key = ?1")?;
        let mut written = t.prepare("SELECT digest, etag FROM written WHERE key = ?1")?;
        let mut gone = t.prepare("INSERT OR IGNORE INTO gone (key) VALUES (?1)")?;
        let mut present = t.prepare("UPDATE want SET present = 1 WHERE key = ?1")?;
        for (key, etag) in page {
            let want: Option<Vec<u8>> = wanted.query_row([key], |row| row.get(0)).optional()?;
            let Some(want) = want else {
                gone.execute([key])?;
                deletes += 1;
                continue;
            };
            let had: Option<(Vec<u8>, String)> = written
                .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            if had.is_some_and(|(digest, known)| digest == want && known == *etag) {
                present.execute([key])?;
            }
        }
    }
    t.commit()?;
    Ok(deletes)
}

fn index_error(path: &Path, e: &rusqlite::Error) -> ReplicaError {
    ReplicaError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}
