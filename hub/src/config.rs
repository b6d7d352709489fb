//! The hub's TOML config. Every field has an embedded default, so a hub runs
//! with no config file at all (the quickstart does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";
/// Name under which the default local pool is recorded in the catalog.
pub const DEFAULT_POOL: &str = "local";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HubConfig {
    /// gRPC listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Holds the catalog (catalog.db) and, unless `pool-dir` says otherwise, the pool.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of the local pool (pack files); default `<data-dir>/pool`.
    /// Used only when no `[[pool]]` is configured.
    pub pool_dir: Option<PathBuf>,
    /// Pools, oldest first: new packs go to the last one; packs already
    /// written stay where they are. None configured: one local pool.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    /// Where the catalog lives: SQLite under `data-dir` unless said otherwise.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// TLS on the gRPC listener: required on any address but loopback
    /// unless `insecure-plaintext` says otherwise.
    pub tls: Option<TlsConfig>,
    /// Serve plaintext gRPC on a non-loopback address: site tokens and all
    /// metadata then cross the network readable. For a network that is
    /// protected otherwise (a VPN, a TLS-terminating proxy on the host).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Caps and timeouts that keep one peer from exhausting the hub.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// The `[tls]` table: the hub's certificate and, for mutual TLS, the CA
/// its sites' client certificates must chain to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM certificate chain, the hub's own first (`ferry-hub tls init`
    /// writes a self-signed one).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Mutual TLS: every connection must present a certificate chaining to
    /// a CA in this PEM file, besides its site token.
    pub client_ca_file: Option<PathBuf>,
}

/// The `[limits]` table.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Open connections in all (the unit's LimitNOFILE leaves room for them
    /// and the pools' files).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one IP address (an agent uses two).
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Concurrent calls on one connection.
    #[serde(default = "default_max_streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// Seconds from accept to a finished TLS handshake.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Seconds from accept to the connection's first authenticated call;
    /// a connection that has none by then is closed.
    #[serde(default = "default_auth_timeout_secs")]
    pub auth_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_address() -> usize {
    64
}
fn default_max_streams_per_connection() -> u32 {
    64
}
fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_auth_timeout_secs() -> u64 {
    30
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            max_streams_per_connection: default_max_streams_per_connection(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            auth_timeout_secs: default_auth_timeout_secs(),
        }
    }
}

/// The catalog's engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogEngine {
    /// One file, `<data-dir>/catalog.db` unless `path` says otherwise.
    #[default]
    Sqlite,
    /// A database on a PostgreSQL server: what several hubs share.
    Postgres,
}

/// The `[catalog]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogConfig {
    #[serde(default)]
    pub engine: CatalogEngine,
    /// SQLite: the database file (default `<data-dir>/catalog.db`).
    pub path: Option<PathBuf>,
    /// PostgreSQL: a connection URL without a password, e.g.
    /// `postgresql://ferry@db.example:5432/ferry`.
    pub url: Option<String>,
    /// PostgreSQL: a file holding the password (else the environment's
    /// `FERRY_CATALOG_PASSWORD`, else none).
    pub password_file: Option<PathBuf>,
}

/// The environment variable a PostgreSQL catalog's password may come from.
pub const CATALOG_PASSWORD_ENV: &str = "FERRY_CATALOG_PASSWORD";

/// One pool: a directory or an S3 bucket (exactly one of `dir` and `s3`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    /// The name packs are recorded under in the catalog; never rename a pool
    /// that holds packs.
    pub name: String,
    pub dir: Option<PathBuf>,
    pub s3: Option<ferry_s3::S3Location>,
}

/// Where a pool keeps its packs.
pub enum PoolKind<'a> {
    Dir(PathBuf),
    S3(&'a ferry_s3::S3Location),
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
            pools: Vec::new(),
            catalog: CatalogConfig::default(),
            tls: None,
            insecure_plaintext: false,
            limits: LimitsConfig::default(),
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
    #[error("config {path}: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

impl HubConfig {
    pub fn load(path: &Path) -> Result<Self, HubConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| HubConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// [`Self::load`] of a config's text; relative paths are relative to
    /// `path`'s directory.
    ///
    /// # Errors
    /// The text is not a valid config; the error names the file and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, HubConfigError> {
        let mut config: HubConfig = toml::from_str(text).map_err(|e| HubConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.pool_dir = config.pool_dir.map(|p| base.join(p));
        let invalid = |field: String, reason: &str| HubConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            reason: reason.to_owned(),
        };
        if config.pool_dir.is_some() && !config.pools.is_empty() {
            return Err(invalid(
                "pool-dir".into(),
                "use either pool-dir or [[pool]] tables, not both",
            ));
        }
        let catalog = &mut config.catalog;
        catalog.path = catalog.path.as_ref().map(|p| base.join(p));
        catalog.password_file = catalog.password_file.as_ref().map(|p| base.join(p));
        match catalog.engine {
            CatalogEngine::Sqlite if catalog.url.is_some() || catalog.password_file.is_some() => {
                return Err(invalid(
                    "catalog".into(),
                    "url and password-file are for engine = \"postgres\"",
                ));
            }
            CatalogEngine::Postgres if catalog.path.is_some() => {
                return Err(invalid(
                    "catalog.path".into(),
                    "path is for engine = \"sqlite\"; give url",
                ));
            }
            CatalogEngine::Postgres if catalog.url.is_none() => {
                return Err(invalid(
                    "catalog.url".into(),
                    "engine = \"postgres\" needs url = \"postgresql://user@host:port/db\"",
                ));
            }
            _ => {}
        }
        if let Some(tls) = &mut config.tls {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
            tls.client_ca_file = tls.client_ca_file.as_ref().map(|p| base.join(p));
        }
        let limits = &config.limits;
        for (field, value) in [
            ("limits.max-connections", limits.max_connections as u64),
            (
                "limits.max-connections-per-address",
                limits.max_connections_per_address as u64,
            ),
            (
                "limits.max-streams-per-connection",
                u64::from(limits.max_streams_per_connection),
            ),
            (
                "limits.handshake-timeout-secs",
                limits.handshake_timeout_secs,
            ),
            ("limits.auth-timeout-secs", limits.auth_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(field.into(), "must be at least 1"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, pool) in config.pools.iter_mut().enumerate() {
            if let Err(e) = crate::catalog::validate_name("name", &pool.name) {
                return Err(invalid(format!("pool[{i}].name"), &e.to_string()));
            }
            if !names.insert(pool.name.clone()) {
                return Err(invalid(
                    format!("pool[{i}].name"),
                    "two pools have this name",
                ));
            }
            match (&pool.dir, &mut pool.s3) {
                (Some(dir), None) => pool.dir = Some(base.join(dir)),
                (None, Some(s3)) => {
                    s3.resolve_paths(base);
                    s3.validate()
                        .map_err(|e| invalid(format!("pool[{i}].s3"), &e.to_string()))?;
                }
                _ => {
                    return Err(invalid(
                        format!("pool[{i}]"),
                        "give exactly one of `dir` and `s3`",
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The SQLite catalog's file.
    pub fn catalog_path(&self) -> PathBuf {
        self.catalog
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("catalog.db"))
    }

    pub fn pool_path(&self) -> PathBuf {
        self.pool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pool"))
    }

    /// The pools to open, oldest first, with the embedded default (one
    /// local pool named [`DEFAULT_POOL`]) when none is configured.
    pub fn pool_list(&self) -> Vec<(&str, PoolKind<'_>)> {
        if self.pools.is_empty() {
            return vec![(DEFAULT_POOL, PoolKind::Dir(self.pool_path()))];
        }
        self.pools
            .iter()
            .map(|p| match (&p.dir, &p.s3) {
                (_, Some(s3)) => (p.name.as_str(), PoolKind::S3(s3)),
                (dir, None) => (
                    p.name.as_str(),
                    PoolKind::Dir(dir.clone().unwrap_or_else(|| self.pool_path())),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_example_parses_with_its_pools_uncommented() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        let example = include_str!("../../deploy/hub.toml");
        std::fs::write(&path, example).unwrap();
        assert!(HubConfig::load(&path).unwrap().pools.is_empty());
        let uncommented: String = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.starts_with('[') || r.contains(" = ") && !r.starts_with("pool-dir")
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, uncommented).unwrap();
        let c = HubConfig::load(&path).unwrap();
        let names: Vec<_> = c
            .pool_list()
            .into_iter()
            .map(|(n, _)| n.to_owned())
            .collect();
        assert_eq!(names, ["local", "garage"]);
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.key_file, Path::new("/etc/ferry/hub.key"));
        assert!(tls.client_ca_file.is_some());
        assert_eq!(c.limits.max_connections, default_max_connections());
    }

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
