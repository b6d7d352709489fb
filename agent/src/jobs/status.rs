//! What each job of the daemon last did, kept in `status.json` in the
//! state directory: written by `ferry-agent run` after every job, read by
//! `ferry-agent status` (from another process, so a file, not memory).
//!
//! The file is replaced whole (written aside, renamed over) but not
//! synced: a crash may lose its last update, which costs at most one
//! scheduled run taken again, never a run skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("job status {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

/// How a source is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Snapshots follow changes (watcher or bucket events).
    #[default]
    Continuous,
    /// Snapshots follow the policy's schedules.
    Scheduled,
}

/// One run of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    /// `None`: it succeeded.
    pub error: Option<String>,
    /// The commit a backup made.
    pub seq: Option<u64>,
    pub files: u64,
    pub bytes: u64,
}

impl Run {
    /// A backup started at `started` that ended at `finished` with `outcome`.
    pub fn of_backup<E: std::fmt::Display>(
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        outcome: &Result<crate::backup::BackupReport, E>,
    ) -> Self {
        let (error, seq, files, bytes) = match outcome {
            Ok(r) => (None, Some(r.seq), r.files, r.bytes),
            Err(e) => (Some(e.to_string()), None, 0, 0),
        };
        Self {
            started_unix_ms: started.timestamp_millis(),
            finished_unix_ms: finished.timestamp_millis(),
            error,
            seq,
            files,
            bytes,
        }
    }
}

/// A source's backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceStatus {
    pub mode: Mode,
    /// As the policy wrote them, with their zone.
    pub schedules: Vec<String>,
    pub policy_version: u64,
    /// The next scheduled run (none for a continuous source).
    pub next_unix_ms: Option<i64>,
    pub last: Option<Run>,
    /// When the last backup that succeeded started: a scheduled source's
    /// slots up to here are done.
    pub last_ok_started_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// By source name.
    pub sources: BTreeMap<String, SourceStatus>,
}

impl Board {
    /// Reads a status file's bytes.
    ///
    /// # Errors
    /// Bytes that are not a status file; the reason names what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The status file of a state directory.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// Reads the status file at `path` (an empty board when there is none).
///
/// # Errors
/// A file that cannot be read or is not a status file.
pub fn read(path: &Path) -> Result<Board, StatusError> {
    let failed = |reason: String| StatusError::File {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => Board::decode(&bytes).map_err(failed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Board::default()),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The board the daemon keeps, written out after every change.
pub struct StatusFile {
    path: PathBuf,
    board: Mutex<Board>,
}

impl StatusFile {
    /// Opens the status file at `path`. One that cannot be read is started
    /// anew (with a warning): what it held decides at most whether a missed
    /// slot is run at start.
    pub fn open(path: PathBuf) -> Self {
        let board = read(&path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting the job status anew");
            Board::default()
        });
        Self {
            path,
            board: Mutex::new(board),
        }
    }

    /// A copy of what `source`'s status is now.
    pub fn source(&self, source: &str) -> SourceStatus {
        let board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.sources.get(source).cloned().unwrap_or_default()
    }

    /// Changes `source`'s status and writes the file.
    pub fn update(&self, source: &str, change: impl FnOnce(&mut SourceStatus)) {
        let text = {
            let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
            change(board.sources.entry(source.to_owned()).or_default());
            serde_json::to_vec_pretty(&*board)
        };
        let written = text.map_err(std::io::Error::other).and_then(|text| {
            let aside = self.path.with_extension("json.new");
            std::fs::write(&aside, text)?;
            std::fs::rename(&aside, &self.path)
        });
        if let Err(e) = written {
            // The daemon goes on: status is for the operator.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the job status");
        }
    }

    /// Records a backup of `source`, started at `started`, that has just
    /// ended with `outcome`.
    pub fn record_backup<E: std::fmt::Display>(
        &self,
        source: &str,
        started: DateTime<Utc>,
        outcome: &Result<crate::backup::BackupReport, E>,
    ) {
        self.record(source, Run::of_backup(started, Utc::now(), outcome));
    }

    /// Records a finished backup of `source`.
    pub fn record(&self, source: &str, run: Run) {
        self.update(source, |s| {
            if run.error.is_none() {
                s.last_ok_started_unix_ms = Some(run.started_unix_ms);
            }
            s.last = Some(run);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_kept_and_read_back_by_another_reader() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = path_in(dir.path());
        let status = StatusFile::open(path.clone());
        status.record(
            "docs",
            Run {
                started_unix_ms: 1000,
                finished_unix_ms: 2000,
                seq: Some(3),
                ..Run::default()
            },
        );
        status.record(
            "docs",
            Run {
                started_unix_ms: 5000,
                finished_unix_ms: 6000,
                error: Some("hub away".into()),
                ..Run::default()
            },
        );
        let board = read(&path).unwrap_or_else(|e| panic!("{e}"));
        let docs = &board.sources["docs"];
        // A failure is the last outcome, but the slots done stay done.
        assert_eq!(
            docs.last.as_ref().and_then(|r| r.error.as_deref()),
            Some("hub away")
        );
        assert_eq!(docs.last_ok_started_unix_ms, Some(1000));
        // A new daemon reads what the last one left.
        assert_eq!(StatusFile::open(path).source("docs"), docs.clone());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_the_daemon_starts_anew() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = path_in(dir.path());
        std::fs::write(&path, b"{\"sources\": 7}").unwrap_or_else(|e| panic!("{e}"));
        match read(&path) {
            Err(StatusError::File { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            StatusFile::open(path).source("docs"),
            SourceStatus::default()
        );
    }
}
