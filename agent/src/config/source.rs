//! A `[[source]]` table: what is protected, what of it is left out, and
//! the commands run around each of its backups.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_s3::S3Location;
use serde::Deserialize;

use super::ConfigError;
use crate::hooks::Hook;
use crate::source::filter::{Filter, FilterError};

/// How long a hook may run when `hook-timeout` is not given.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// A short name for the CLI and the journal file.
    pub name: String,
    /// Directory to protect (or `s3`).
    pub path: Option<PathBuf>,
    /// S3 bucket (and prefix) to protect (or `path`).
    pub s3: Option<S3Location>,
    /// Hub bucket, "tenant/bucket".
    pub bucket: String,
    /// Patterns of paths to leave out (directories only; see
    /// [`crate::source::filter`] for the syntax).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A file of such patterns, one per line.
    pub exclude_file: Option<PathBuf>,
    /// Stays on the file system of `path`: mount points below it are kept
    /// as empty directories.
    #[serde(default)]
    pub one_file_system: bool,
    /// Leaves out the contents of directories tagged with `CACHEDIR.TAG`.
    #[serde(default)]
    pub exclude_caches: bool,
    /// A shell command run before each backup (e.g. to take an LVM or btrfs
    /// snapshot, or flush a database); if it fails, the backup is not run.
    pub pre_backup: Option<String>,
    /// A shell command run after each backup whose pre-backup hook ran,
    /// whether the backup succeeded or not (e.g. to drop that snapshot).
    pub post_backup: Option<String>,
    /// How long each hook may run before it is killed, e.g. "10m".
    pub hook_timeout: Option<String>,
}

/// What a source is.
pub enum SourceKind<'a> {
    Dir(&'a Path),
    Bucket(&'a S3Location),
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind<'_> {
        match (&self.path, &self.s3) {
            (_, Some(s3)) => SourceKind::Bucket(s3),
            // `resolve` made sure one of the two is set.
            (path, None) => SourceKind::Dir(path.as_deref().unwrap_or(Path::new("."))),
        }
    }

    /// The exclusions of a directory source (compiled anew each call, so a
    /// changed exclude file is read at the next backup).
    ///
    /// # Errors
    /// A pattern that does not compile or an exclude file that cannot be read.
    pub fn filter(&self) -> Result<Filter, FilterError> {
        let mut filter = Filter::new(&self.exclude, self.exclude_file.as_deref())?;
        filter.one_file_system = self.one_file_system;
        filter.exclude_caches = self.exclude_caches;
        Ok(filter)
    }

    /// The hooks run before and after each backup.
    pub fn hooks(&self) -> (Option<Hook>, Option<Hook>) {
        // `resolve` checked the timeout parses.
        let timeout = self
            .hook_timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_HOOK_TIMEOUT);
        let hook = |which, command: &Option<String>| {
            command.as_ref().map(|command| Hook {
                which,
                command: command.clone(),
                timeout,
            })
        };
        (
            hook("pre-backup", &self.pre_backup),
            hook("post-backup", &self.post_backup),
        )
    }

    /// Checks the table and makes its paths relative to `base` absolute.
    /// `index` and `path` (the config file) name it in errors.
    pub(super) fn resolve(
        &mut self,
        path: &Path,
        base: &Path,
        index: usize,
    ) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: format!("source[{index}].{field}"),
            reason: reason.to_string(),
        };
        match (&mut self.path, &mut self.s3) {
            (Some(dir), None) => *dir = base.join(&*dir),
            (None, Some(s3)) => {
                s3.resolve_paths(base);
                s3.validate().map_err(|e| invalid("s3", &e.to_string()))?;
                let filtered = [
                    ("exclude", !self.exclude.is_empty()),
                    ("exclude-file", self.exclude_file.is_some()),
                    ("one-file-system", self.one_file_system),
                    ("exclude-caches", self.exclude_caches),
                ];
                if let Some((field, _)) = filtered.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        field,
                        "exclude rules apply to directory sources (`path`), not to `s3`",
                    ));
                }
            }
            _ => return Err(invalid("path", "give exactly one of `path` and `s3`")),
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid("name", "use letters, digits, '-', '_' or '.'"));
        }
        if self.bucket.split('/').count() != 2 || self.bucket.split('/').any(str::is_empty) {
            return Err(invalid("bucket", "expected \"tenant/bucket\""));
        }
        if let Some(file) = &mut self.exclude_file {
            *file = base.join(&*file);
        }
        self.filter().map_err(|e| {
            let field = match &e {
                FilterError::Pattern { at: None, .. } => "exclude",
                FilterError::Pattern { .. } | FilterError::File { .. } => "exclude-file",
            };
            invalid(field, &e.to_string())
        })?;
        for (field, command) in [
            ("pre-backup", &self.pre_backup),
            ("post-backup", &self.post_backup),
        ] {
            if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err(invalid(field, "empty command"));
            }
        }
        if let Some(timeout) = &self.hook_timeout {
            match humantime::parse_duration(timeout) {
                Ok(t) if !t.is_zero() => {}
                Ok(_) => return Err(invalid("hook-timeout", "must be above zero")),
                Err(e) => return Err(invalid("hook-timeout", &e.to_string())),
            }
        }
        Ok(())
    }
}
