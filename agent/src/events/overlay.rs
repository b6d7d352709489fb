//! A bucket as the last snapshot's object index plus the keys events named
//! since: the source of an event-driven snapshot, which lists nothing.
//!
//! Unchanged keys come from the index in key order (and are then found
//! unchanged, so not read); each changed key is looked up with a HEAD, so
//! the snapshot holds what the bucket holds now whatever order the events
//! came in: a key whose HEAD finds nothing is gone. The index must stem from
//! a full listing (the run loop starts with one and lists again after a gap).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_proto::v1::ObjectMeta;
use tokio::task::JoinSet;

use crate::journal::{FileStamp, Journal, Keys};
use crate::source::bucket::BucketSource;
use crate::source::{Content, Skipped, Source, SourceEntry, SourceError};

/// HEAD requests in flight at once.
const HEADS_IN_FLIGHT: usize = 32;

pub struct EventOverlay {
    bucket: Arc<BucketSource>,
    journal_path: PathBuf,
    /// Changed keys and what a HEAD found for each (`None`: gone).
    current: BTreeMap<String, Option<(FileStamp, String)>>,
}

impl EventOverlay {
    /// Looks up every changed key now, several at once.
    ///
    /// # Errors
    /// A HEAD fails for another reason than "not found".
    pub async fn new(
        bucket: Arc<BucketSource>,
        journal_path: PathBuf,
        changed: impl IntoIterator<Item = String>,
    ) -> Result<Self, SourceError> {
        let mut current = BTreeMap::new();
        let mut keys = changed.into_iter();
        let mut heads = JoinSet::new();
        loop {
            while heads.len() < HEADS_IN_FLIGHT {
                let Some(key) = keys.next() else { break };
                let bucket = bucket.clone();
                heads.spawn(async move {
                    let found = bucket.head(&key).await;
                    (key, found)
                });
            }
            let Some(done) = heads.join_next().await else {
                break;
            };
            let (key, found) = done.map_err(|e| SourceError::Stopped(e.to_string()))?;
            current.insert(key, found?);
        }
        Ok(Self {
            bucket,
            journal_path,
            current,
        })
    }
}

impl Source for EventOverlay {
    fn describe(&self) -> String {
        format!(
            "{} (index and {} changed keys)",
            self.bucket.describe(),
            self.current.len()
        )
    }

    fn holds_objects(&self) -> bool {
        true
    }

    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError> {
        let journal = Journal::open(&self.journal_path, Keys::Bytes)?;
        let mut changed = self.current.iter().peekable();
        journal.for_each_indexed::<SourceError>(&mut |path, stamp, meta| {
            // Changed keys before this row (new objects) go first: key order.
            while let Some((key, found)) = changed.next_if(|(k, _)| k.as_bytes() < path.as_slice())
            {
                emit_changed(visit, key, found)?;
            }
            if let Some((key, found)) = changed.next_if(|(k, _)| k.as_bytes() == path.as_slice()) {
                return emit_changed(visit, key, found);
            }
            visit(SourceEntry::object(path, stamp, meta.unwrap_or_default()))
        })?;
        for (key, found) in changed {
            emit_changed(visit, key, found)?;
        }
        Ok(Vec::new())
    }

    fn open(&self, entry: &SourceEntry) -> Result<Content, SourceError> {
        self.bucket.open(entry)
    }

    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError> {
        self.bucket.stamp_now(entry)
    }
}

/// Visits a changed key as a HEAD found it; a key found gone is left out.
fn emit_changed(
    visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    key: &str,
    found: &Option<(FileStamp, String)>,
) -> Result<(), SourceError> {
    match found {
        Some((stamp, etag)) => visit(SourceEntry::object(
            key.as_bytes().to_vec(),
            *stamp,
            Box::new(ObjectMeta {
                etag: etag.clone(),
                ..Default::default()
            }),
        )),
        None => Ok(()),
    }
}
