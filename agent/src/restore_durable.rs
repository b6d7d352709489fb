//! Durable directory restores (a replica's applies): each file is written
//! under its temporary name and gets its real name only once its data is
//! on disk, and the directory entry of the name is flushed too, so what a
//! replica acknowledges survives a power cut.
//!
//! Flushing one file at a time would wait on the disk for each, and a
//! flush of the whole file system (syncfs) waits for every other writer's
//! data too. So files are flushed in batches, several at once (the
//! journal takes concurrent flushes in shared commits), on a thread of
//! their own while the restore goes on writing the next batch.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::restore::RestoreError;

/// Files or bytes written that make a batch.
const BATCH_FILES: usize = 512;
const BATCH_BYTES: u64 = 256 << 20;
/// Files of a batch flushed at once.
const FLUSHERS: usize = 4;

/// (temporary name, real name) of a file written, and whether it is
/// flushed already.
type Rename = (PathBuf, PathBuf, bool);
/// Renames that failed, each with its error: those files' failures.
type Failed = Vec<(PathBuf, io::Error)>;

/// Files written and not yet named, and the thread naming them.
#[derive(Default)]
pub struct Pending {
    batch: Vec<Rename>,
    bytes: u64,
    flusher: Option<Flusher>,
    /// Directories holding a directory made by the restore: flushed at its
    /// end, so the new directory's name is durable too.
    parents_of_made: BTreeSet<PathBuf>,
}

impl Drop for Pending {
    /// A restore that stopped early still waits for its flusher, so no
    /// rename of this restore runs on into the next one.
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            tracing::debug!(error = %e, "flush of a stopped restore");
        }
    }
}

struct Flusher {
    batches: SyncSender<Vec<Rename>>,
    done: JoinHandle<Result<Failed, RestoreError>>,
}

impl Pending {
    /// Adds a file written under `partial`, of `bytes`, to be named
    /// `path` (`synced`: its writer flushed it); gives whether the batch is
    /// full (then [`Pending::send`] it).
    pub fn add(&mut self, partial: PathBuf, path: PathBuf, bytes: u64, synced: bool) -> bool {
        self.batch.push((partial, path, synced));
        self.bytes += bytes;
        self.batch.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES
    }

    /// Hands the batch to the flusher (waiting while it still has one
    /// queued: memory holds two batches at most).
    ///
    /// # Errors
    /// The flusher stopped on a failed flush: that error.
    pub fn send(&mut self) -> Result<(), RestoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let flusher = self.flusher.get_or_insert_with(Flusher::start);
        if flusher.batches.send(batch).is_err() {
            // It stopped, which it does only on a failed flush: its error
            // says why (the batch was not taken, so this is a failure
            // whatever it says).
            return Err(match self.wait() {
                Err(e) => e,
                Ok(_) => RestoreError::Task("the flushing thread stopped".into()),
            });
        }
        Ok(())
    }

    /// Notes a directory made at `path`.
    pub fn made_dir(&mut self, path: &Path) {
        if let Some(parent) = path.parent() {
            self.parents_of_made.insert(parent.to_path_buf());
        }
    }

    /// Flushes the directories that got a new directory.
    ///
    /// # Errors
    /// A flush that fails.
    pub fn sync_made_dirs(&mut self) -> Result<(), RestoreError> {
        for dir in std::mem::take(&mut self.parents_of_made) {
            sync_path(&dir, true)?;
        }
        Ok(())
    }

    /// Waits until every file sent is named; gives the renames that
    /// failed.
    ///
    /// # Errors
    /// A flush that failed: nothing sent since is known to be durable.
    pub fn wait(&mut self) -> Result<Failed, RestoreError> {
        let Some(flusher) = self.flusher.take() else {
            return Ok(Vec::new());
        };
        drop(flusher.batches);
        flusher
            .done
            .join()
            .map_err(|_| RestoreError::Task("the flushing thread panicked".into()))?
    }
}

impl Flusher {
    fn start() -> Self {
        let (batches, queued) = sync_channel::<Vec<Rename>>(1);
        let done = std::thread::spawn(move || {
            let mut failed = Vec::new();
            for batch in queued {
                failed.extend(name_durably(batch)?);
            }
            Ok(failed)
        });
        Self { batches, done }
    }
}

/// Flushes the batch's files, names them, and flushes the directories
/// they were named in.
fn name_durably(batch: Vec<Rename>) -> Result<Failed, RestoreError> {
    sync_files(&batch)?;
    let mut failed = Vec::new();
    let mut dirs = BTreeSet::new();
    for (partial, path, _) in batch {
        match fs::rename(&partial, &path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    dirs.insert(dir.to_path_buf());
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&partial);
                failed.push((path, e));
            }
        }
    }
    for dir in dirs {
        sync_path(&dir, true)?;
    }
    Ok(failed)
}

/// Flushes each file's data, [`FLUSHERS`] at once.
fn sync_files(files: &[Rename]) -> Result<(), RestoreError> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..FLUSHERS.min(files.len()))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((partial, _, synced)) = files.get(i) else {
                            return Ok(());
                        };
                        if !synced {
                            sync_path(partial, false)?;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| RestoreError::Task("a flushing thread panicked".into()))?
        })
    })
}

/// Flushes one file's data, or (`all`) a directory's entries.
fn sync_path(path: &Path, all: bool) -> Result<(), RestoreError> {
    let flush = |source| RestoreError::Flush {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(flush)?;
    match all {
        true => file.sync_all(),
        false => file.sync_data(),
    }
    .map_err(flush)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_get_their_names_once_flushed_and_failed_renames_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut pending = Pending::default();
        let mut names = Vec::new();
        for i in 0..(BATCH_FILES + 3) {
            let partial = dir.path().join(format!("f{i}.partial"));
            fs::write(&partial, format!("file {i}")).unwrap();
            let path = dir.path().join(format!("f{i}"));
            names.push(path.clone());
            if pending.add(partial, path, 6, false) {
                pending.send().unwrap();
            }
        }
        // One whose directory is gone: its rename fails.
        let lost = dir.path().join("gone/x");
        let partial = dir.path().join("x.partial");
        fs::write(&partial, "x").unwrap();
        pending.add(partial.clone(), lost.clone(), 1, false);
        pending.send().unwrap();
        let failed = pending.wait().unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, lost);
        assert!(!partial.exists(), "its temporary file is removed");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(fs::read_to_string(name).unwrap(), format!("file {i}"));
        }
        assert!(pending.wait().unwrap().is_empty(), "nothing more pending");
    }
}
