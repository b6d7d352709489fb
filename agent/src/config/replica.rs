//! `[[replica]]`: a bucket this site keeps a copy of, followed from the
//! hub's journal by `ferry-agent run`.

use std::path::{Path, PathBuf};

use ferry_s3::S3Location;
use serde::Deserialize;

use super::ConfigError;
use crate::replica::tombstones::Tombstones;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplicaConfig {
    /// "tenant/bucket"; this site must be one of its replicas at the hub.
    pub bucket: String,
    /// The directory the copy is kept in (made if absent), or `s3`. What
    /// is in it and not in the bucket's newest snapshot is deleted.
    pub path: Option<PathBuf>,
    /// The S3 bucket (and prefix) the copy is kept in, or `path`: each
    /// file or object of the snapshot an object with its key (directories,
    /// symlinks and hard links have no object form and are left out).
    pub s3: Option<S3Location>,
    /// The largest share of the copy's entries one commit may delete
    /// before it is held for an operator (`ferry-hub replication
    /// confirm`): 0.5 by default, 1 never holds.
    #[serde(default = "default_max_delete_share")]
    pub max_delete_share: f64,
    /// Keep what a commit deletes as tombstones this long (e.g. "24h")
    /// before removing it for good, so a mass delete at the source can be
    /// paused and undone (directory copies; a bucket copy has versioning).
    pub delete_delay: Option<String>,
    /// Where the tombstones go: a directory on the copy's file system
    /// (default: `.<name>.ferry-tombstones` beside the copy).
    pub tombstones: Option<PathBuf>,
}

fn default_max_delete_share() -> f64 {
    0.5
}

/// Where a replica keeps its copy.
pub enum CopyAt<'a> {
    Dir(&'a Path),
    Bucket(&'a S3Location),
}

impl ReplicaConfig {
    /// Checks the fields and resolves `path` against the config's directory.
    ///
    /// # Errors
    /// A bucket that is not "tenant/bucket", naming the field.
    pub fn resolve(&mut self, config: &Path, base: &Path, i: usize) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: config.to_path_buf(),
            field: format!("replica[{i}].{field}"),
            reason,
        };
        match self.bucket.split_once('/') {
            Some((t, b)) if !t.is_empty() && !b.is_empty() && !b.contains('/') => {}
            _ => {
                return Err(invalid(
                    "bucket",
                    format!("{:?}: expected \"tenant/bucket\"", self.bucket),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.max_delete_share) {
            return Err(invalid(
                "max-delete-share",
                format!("{}: a share from 0 to 1", self.max_delete_share),
            ));
        }
        if let Some(delay) = &self.delete_delay {
            humantime::parse_duration(delay)
                .map_err(|e| invalid("delete-delay", format!("{delay:?}: {e}")))?;
            if self.s3.is_some() {
                return Err(invalid(
                    "delete-delay",
                    "for directory copies; keep a bucket copy's deleted objects with the bucket's versioning".into(),
                ));
            }
        }
        if self.tombstones.is_some() && self.delete_delay.is_none() {
            return Err(invalid(
                "tombstones",
                "set with `delete-delay` only (without one, deletes are not kept)".into(),
            ));
        }
        if let Some(t) = &mut self.tombstones {
            *t = base.join(&*t);
        }
        match (&mut self.path, &mut self.s3) {
            (Some(path), None) if path.as_os_str().is_empty() => {
                return Err(invalid("path", "empty".into()));
            }
            (Some(path), None) => *path = base.join(&*path),
            (None, Some(s3)) => {
                s3.resolve_paths(base);
                s3.validate().map_err(|e| invalid("s3", e.to_string()))?;
                // The copy deletes what it does not hold below its prefix:
                // "copy" would also reach "copy2/...".
                if !(s3.prefix.is_empty() || s3.prefix.ends_with('/')) {
                    return Err(invalid(
                        "s3.prefix",
                        format!("{:?}: a copy's prefix ends in '/' (or is empty)", s3.prefix),
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "path",
                    "give the copy's directory (`path`) or S3 bucket (`s3`), one of the two".into(),
                ));
            }
        }
        Ok(())
    }

    /// Where the copy is kept (`resolve` made sure one of the two is set).
    pub fn copy_at(&self) -> CopyAt<'_> {
        match (&self.path, &self.s3) {
            (_, Some(s3)) => CopyAt::Bucket(s3),
            (path, None) => CopyAt::Dir(path.as_deref().unwrap_or(Path::new("."))),
        }
    }

    /// The tombstones of a copy with a `delete-delay` (`resolve` checked it).
    pub fn tombstones(&self) -> Option<Tombstones> {
        let delay = humantime::parse_duration(self.delete_delay.as_deref()?).ok()?;
        let CopyAt::Dir(copy) = self.copy_at() else {
            return None;
        };
        Some(Tombstones {
            root: self
                .tombstones
                .clone()
                .unwrap_or_else(|| crate::replica::tombstones::default_root(copy)),
            delay,
        })
    }

    /// The copy, for logs.
    pub fn describe(&self) -> String {
        match self.copy_at() {
            CopyAt::Dir(path) => path.display().to_string(),
            CopyAt::Bucket(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }
}
