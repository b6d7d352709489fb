//! `[[replica]]`: a bucket this site keeps a copy of, followed from the
//! hub's journal by `ferry-agent run`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplicaConfig {
    /// "tenant/bucket"; this site must be one of its replicas at the hub.
    pub bucket: String,
    /// The directory the copy is kept in (made if absent). What is in it
    /// and not in the bucket's newest snapshot is deleted.
    pub path: PathBuf,
    /// The largest share of the copy's entries one commit may delete
    /// before it is held for an operator (`ferry-hub replication
    /// confirm`): 0.5 by default, 1 never holds.
    #[serde(default = "default_max_delete_share")]
    pub max_delete_share: f64,
}

fn default_max_delete_share() -> f64 {
    0.5
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
        if self.path.as_os_str().is_empty() {
            return Err(invalid("path", "empty".into()));
        }
        self.path = base.join(&self.path);
        Ok(())
    }
}
