//! The hub's TOML config. Every field has an embedded default, so a hub runs
//! with no config file at all (the quickstart does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HubConfig {
    /// gRPC listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Holds the catalog (catalog.db) and, unless `pool-dir` says otherwise, the pool.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of the local pool (pack files); default `<data-dir>/pool`.
    pub pool_dir: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    // A literal that always parses.
    SocketAddr::from(([127, 0, 0, 1], 7420))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("ferry-hub-data")
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            pool_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl HubConfig {
    pub fn load(path: &Path) -> Result<Self, HubConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| HubConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: HubConfig = toml::from_str(&text).map_err(|e| HubConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.pool_dir = config.pool_dir.map(|p| base.join(p));
        Ok(config)
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.data_dir.join("catalog.db")
    }

    pub fn pool_path(&self) -> PathBuf {
        self.pool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pool"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, "data-dir = \"d\"\n").unwrap();
        let c = HubConfig::load(&path).unwrap();
        assert_eq!(c.pool_path(), dir.path().join("d/pool"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        std::fs::write(&path, "listen = \"nonsense\"\n").unwrap();
        let err = HubConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("hub.toml") && err.contains("listen"), "{err}");
        std::fs::write(&path, "token = \"secret\"\n").unwrap();
        let err = HubConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
