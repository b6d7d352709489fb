//! The agent's TOML config. Relative paths are relative to the config file.
//! The site token never sits in this file: it comes from `token-file` or
//! the `FERRY_SITE_TOKEN` environment variable.

use std::path::{Path, PathBuf};

use ferry_s3::S3Location;
use serde::Deserialize;

pub mod replica;
mod source;
pub use source::{SourceConfig, SourceKind};

/// Environment variable that may hold the site token instead of a file.
pub const TOKEN_ENV: &str = "FERRY_SITE_TOKEN";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    /// Hub gRPC address, e.g. "http://127.0.0.1:7420" or
    /// "https://hub.example:7420" (then `[tls]` says how it is trusted).
    pub hub: String,
    /// TLS to the hub: how its certificate is trusted, and this site's own
    /// certificate for mutual TLS.
    pub tls: Option<AgentTlsConfig>,
    /// Allows `http://` to a hub that is not on loopback: the site token
    /// and all metadata then cross the network readable.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// File holding this site's token (printed once by `ferry-hub site add`).
    pub token_file: Option<PathBuf>,
    /// The tenant key file (`ferry-agent key generate`).
    pub key_file: PathBuf,
    /// Where the agent keeps its journals.
    pub state_dir: PathBuf,
    /// What this agent protects.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Buckets a restore may write into (`restore --to-target NAME`).
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    /// Buckets this site keeps a copy of (`ferry-agent run` follows them).
    #[serde(default, rename = "replica")]
    pub replicas: Vec<replica::ReplicaConfig>,
    /// The S3 event webhook of `ferry-agent run`.
    pub webhook: Option<WebhookConfig>,
    /// How `ferry-agent run` schedules bucket snapshots.
    #[serde(default)]
    pub run: RunConfig,
}

/// The `[tls]` table: exactly one of `ca-file` and `pin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentTlsConfig {
    /// PEM file of the CA(s) the hub's certificate must chain to, for the
    /// name of `hub` (or `server-name`).
    pub ca_file: Option<PathBuf>,
    /// The hub's certificate itself, "sha256:<hex>" (what `ferry-hub tls
    /// init` and `ferry-hub tls pin` print).
    pub pin: Option<String>,
    /// Mutual TLS: this site's certificate (PEM) ...
    pub cert_file: Option<PathBuf>,
    /// ... and its private key.
    pub key_file: Option<PathBuf>,
    /// The name the certificate is checked for, when not the host of `hub`.
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// Address to listen on, e.g. "127.0.0.1:9120".
    pub listen: std::net::SocketAddr,
    /// File holding the bearer token senders must present; without one
    /// there is no check, which only a loopback `listen` allows.
    pub token_file: Option<PathBuf>,
    /// TLS: the webhook's certificate chain (PEM) ...
    pub cert_file: Option<PathBuf>,
    /// ... and its private key. Required off loopback unless
    /// `insecure-plaintext`.
    pub key_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback `listen` (the bearer token then
    /// crosses the network readable).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Events queued but not yet in a snapshot before the webhook answers 503.
    #[serde(default = "default_max_pending")]
    pub max_pending: u64,
}

fn default_max_pending() -> u64 {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunConfig {
    /// How often a bucket is listed, or a directory walked, in full even
    /// when events keep coming (a safety net for events lost), e.g. "24h".
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval: String,
    /// How long events gather before a snapshot takes them, e.g. "1s".
    #[serde(default = "default_settle")]
    pub settle: String,
    /// Changed paths a directory watcher keeps for its next snapshot; past
    /// that, the snapshot walks the whole tree instead (memory stays bounded).
    #[serde(default = "default_max_changes")]
    pub max_changes: usize,
    /// How directory sources are watched: "auto" (fanotify where the
    /// kernel and privileges allow, inotify otherwise), "fanotify" or
    /// "inotify".
    #[serde(default)]
    pub watcher: crate::watch::WatcherKind,
    /// How often the hub is asked what the policy in force schedules for
    /// this site's sources, e.g. "1m".
    #[serde(default = "default_policy_interval")]
    pub policy_interval: String,
}

fn default_policy_interval() -> String {
    "1m".into()
}

fn default_max_changes() -> usize {
    1_000_000
}

fn default_reconcile_interval() -> String {
    "24h".into()
}

fn default_settle() -> String {
    "1s".into()
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            reconcile_interval: default_reconcile_interval(),
            settle: default_settle(),
            max_changes: default_max_changes(),
            watcher: Default::default(),
            policy_interval: default_policy_interval(),
        }
    }
}

impl RunConfig {
    pub fn reconcile_interval(&self) -> std::time::Duration {
        humantime::parse_duration(&self.reconcile_interval)
            .unwrap_or(std::time::Duration::from_secs(86_400))
    }

    pub fn settle(&self) -> std::time::Duration {
        humantime::parse_duration(&self.settle).unwrap_or(std::time::Duration::from_secs(1))
    }

    pub fn policy_interval(&self) -> std::time::Duration {
        humantime::parse_duration(&self.policy_interval)
            .unwrap_or(std::time::Duration::from_secs(60))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetConfig {
    pub name: String,
    pub s3: S3Location,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    #[error("site token: {0}")]
    Token(String),
    #[error("{what} {}: {reason}", path.display())]
    Secret {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The first line of a secret file (a token), refused when group or others
/// may read the file or when it is empty.
///
/// # Errors
/// The file cannot be read, is readable by others, or is empty.
pub fn read_secret(what: &'static str, path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |reason: String| ConfigError::Secret {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| failed(e.to_string()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(failed(format!(
            "mode {mode:04o} lets group or others read it; run `chmod 600 {}`",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(failed("the file is empty".into()));
    }
    Ok(secret.to_owned())
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.key_file = base.join(&config.key_file);
        config.state_dir = base.join(&config.state_dir);
        config.token_file = config.token_file.map(|t| base.join(t));
        for (field, value) in [
            ("run.reconcile-interval", &config.run.reconcile_interval),
            ("run.settle", &config.run.settle),
            ("run.policy-interval", &config.run.policy_interval),
        ] {
            humantime::parse_duration(value).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: field.into(),
                reason: format!("{value:?}: {e} (write e.g. \"30s\", \"24h\")"),
            })?;
        }
        if let Some(tls) = &mut config.tls {
            let invalid = |field: &str, reason: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("tls.{field}"),
                reason,
            };
            match (&tls.ca_file, &tls.pin) {
                (Some(_), None) => {}
                (None, Some(pin)) => {
                    ferry_tls::Pin::parse(pin).map_err(|e| invalid("pin", e.to_string()))?;
                }
                _ => {
                    return Err(invalid(
                        "ca-file",
                        "give exactly one of `ca-file` and `pin`".into(),
                    ));
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(invalid(
                    "cert-file",
                    "mutual TLS needs both `cert-file` and `key-file`".into(),
                ));
            }
            for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file] {
                *file = file.take().map(|f| base.join(f));
            }
        }
        if let Some(webhook) = &mut config.webhook {
            let invalid = |field: &str, reason: &str| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("webhook.{field}"),
                reason: reason.to_owned(),
            };
            if webhook.cert_file.is_some() != webhook.key_file.is_some() {
                return Err(invalid(
                    "cert-file",
                    "TLS needs both `cert-file` and `key-file`",
                ));
            }
            if !webhook.listen.ip().is_loopback() {
                if webhook.token_file.is_none() {
                    return Err(invalid(
                        "token-file",
                        "a webhook on an address other than loopback must check a bearer token",
                    ));
                }
                if webhook.cert_file.is_none() && !webhook.insecure_plaintext {
                    return Err(invalid(
                        "cert-file",
                        "a webhook on an address other than loopback serves TLS \
                         (cert-file, key-file) unless insecure-plaintext = true",
                    ));
                }
            }
            for file in [
                &mut webhook.token_file,
                &mut webhook.cert_file,
                &mut webhook.key_file,
            ] {
                *file = file.take().map(|f| base.join(f));
            }
        }
        for (i, t) in config.targets.iter_mut().enumerate() {
            t.s3.resolve_paths(base);
            t.s3.validate().map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("target[{i}].s3"),
                reason: e.to_string(),
            })?;
        }
        for (i, s) in config.sources.iter_mut().enumerate() {
            s.resolve(path, base, i)?;
        }
        for (i, r) in config.replicas.iter_mut().enumerate() {
            r.resolve(path, base, i)?;
        }
        Ok(config)
    }

    pub fn target(&self, name: &str) -> Result<&TargetConfig, ConfigError> {
        self.targets
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ConfigError::Invalid {
                path: PathBuf::from("(config)"),
                field: "target".into(),
                reason: format!("no [[target]] named {name:?}"),
            })
    }

    pub fn source(&self, name: Option<&str>) -> Result<&SourceConfig, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: PathBuf::from("(config)"),
            field: "source".into(),
            reason,
        };
        match name {
            Some(name) => self
                .sources
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| invalid(format!("no source named {name:?}"))),
            None => match self.sources.as_slice() {
                [one] => Ok(one),
                [] => Err(invalid("no [[source]] configured".into())),
                _ => Err(invalid(
                    "several sources configured: name one with --source".into(),
                )),
            },
        }
    }

    /// The site token, from `FERRY_SITE_TOKEN` or `token-file`.
    pub fn token(&self) -> Result<String, ConfigError> {
        if let Ok(token) = std::env::var(TOKEN_ENV)
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_string());
        }
        let Some(file) = &self.token_file else {
            return Err(ConfigError::Token(format!(
                "set {TOKEN_ENV} or `token-file` in the config"
            )));
        };
        read_secret("site token file", file)
    }

    /// The exclusions of directory source `source`, its rules plus the
    /// agent's state directory when that lies inside it (a backup of its
    /// own journal would change it, and a watcher would take that for a
    /// change to back up, without end).
    ///
    /// # Errors
    /// As [`SourceConfig::filter`].
    pub fn filter_of(
        &self,
        source: &SourceConfig,
    ) -> Result<crate::source::filter::Filter, crate::source::filter::FilterError> {
        use std::os::unix::ffi::OsStrExt;
        let mut filter = source.filter()?;
        if let SourceKind::Dir(root) = source.kind()
            && let Ok(inside) = self.state_dir.strip_prefix(root)
            && !inside.as_os_str().is_empty()
        {
            filter.always_exclude(inside.as_os_str().as_bytes().to_vec());
        }
        Ok(filter)
    }

    /// The heads of the buckets this site has seen (see [`crate::chain`]).
    pub fn heads_path(&self) -> PathBuf {
        self.state_dir.join("heads.db")
    }

    /// The journal database of a source.
    pub fn journal_path(&self, source: &SourceConfig) -> PathBuf {
        self.state_dir.join(format!("{}.journal.db", source.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let text = r#"
hub = "http://127.0.0.1:7420"
token-file = "site.token"
key-file = "tenant.key"
state-dir = "state"
[[source]]
name = "docs"
path = "data"
bucket = "acme/docs"
"#;
        let c = AgentConfig::parse(Path::new("/etc/ferry/agent.toml"), text).unwrap();
        assert_eq!(c.key_file, Path::new("/etc/ferry/tenant.key"));
        assert!(
            matches!(c.sources[0].kind(), SourceKind::Dir(p) if p == Path::new("/etc/ferry/data"))
        );
        assert_eq!(c.source(None).unwrap().name, "docs");
    }

    #[test]
    fn the_deployed_examples_parse_with_their_commented_sections() {
        let example = include_str!("../../../deploy/agent.toml");
        AgentConfig::parse(Path::new("/etc/ferry/agent.toml"), example).unwrap();
        // Uncommenting every optional table must give a valid config too.
        let uncommented: String = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.starts_with('[') || r.contains(" = "))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = AgentConfig::parse(Path::new("/etc/ferry/agent.toml"), &uncommented).unwrap();
        assert_eq!(c.sources.len(), 2);
        assert!(c.webhook.is_some() && c.target("dr").is_ok());
        assert_eq!(c.replicas.len(), 2);
    }

    #[test]
    fn a_replica_is_kept_in_a_directory_or_a_bucket_never_both() {
        let config = |replica: &str| {
            format!(
                "hub = \"http://127.0.0.1:7420\"\nkey-file = \"k\"\nstate-dir = \"s\"\n[[replica]]\nbucket = \"acme/docs\"\n{replica}"
            )
        };
        let at = Path::new("/etc/ferry/agent.toml");
        let c = AgentConfig::parse(at, &config("path = \"copy\"")).unwrap();
        assert!(
            matches!(c.replicas[0].copy_at(), replica::CopyAt::Dir(p) if p == Path::new("/etc/ferry/copy"))
        );
        assert!(c.replicas[0].tombstones().is_none());
        let c = AgentConfig::parse(at, &config("path = \"copy\"\ndelete-delay = \"2h\"")).unwrap();
        let stones = c.replicas[0].tombstones().unwrap();
        assert_eq!(
            (stones.root.as_path(), stones.delay),
            (
                Path::new("/etc/ferry/.copy.ferry-tombstones"),
                std::time::Duration::from_secs(7200)
            )
        );
        let s3 = "s3 = { bucket = \"copy\", region = \"r\", credentials-file = \"creds\" }";
        let c = AgentConfig::parse(at, &config(s3)).unwrap();
        let replica::CopyAt::Bucket(location) = c.replicas[0].copy_at() else {
            panic!("a bucket copy")
        };
        assert_eq!(
            location.credentials_file.as_deref(),
            Some(Path::new("/etc/ferry/creds"))
        );
        for (bad, field) in [
            ("", "replica[0].path"),
            (&format!("path = \"copy\"\n{s3}"), "replica[0].path"),
            (
                "path = \"c\"\nmax-delete-share = 1.5",
                "replica[0].max-delete-share",
            ),
            ("s3 = { bucket = \"\" }", "replica[0].s3"),
            (
                "s3 = { bucket = \"b\", prefix = \"copy\" }",
                "replica[0].s3.prefix",
            ),
            (
                &format!("{s3}\ndelete-delay = \"1h\""),
                "replica[0].delete-delay",
            ),
            (
                "path = \"c\"\ndelete-delay = \"soon\"",
                "replica[0].delete-delay",
            ),
            ("path = \"c\"\ntombstones = \"t\"", "replica[0].tombstones"),
        ] {
            let e = AgentConfig::parse(at, &config(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bucket_sources_and_targets() {
        let text = r#"
hub = "http://127.0.0.1:7420"
key-file = "tenant.key"
state-dir = "state"
[[source]]
name = "photos"
bucket = "acme/photos"
s3 = { endpoint = "http://127.0.0.1:3900", region = "garage", bucket = "photos", credentials-file = "s3.credentials" }
[[target]]
name = "dr"
s3 = { bucket = "photos-dr", prefix = "restored/" }
"#;
        let c = AgentConfig::parse(Path::new("/etc/ferry/agent.toml"), text).unwrap();
        let SourceKind::Bucket(s3) = c.sources[0].kind() else {
            panic!("a bucket source")
        };
        assert_eq!(
            s3.credentials_file.as_deref(),
            Some(Path::new("/etc/ferry/s3.credentials"))
        );
        assert_eq!(c.target("dr").unwrap().s3.prefix, "restored/");
        assert!(c.target("nope").unwrap_err().to_string().contains("nope"));

        let both = text.replace(
            "bucket = \"acme/photos\"",
            "bucket = \"acme/photos\"\npath = \"d\"",
        );
        let err = AgentConfig::parse(Path::new("/a.toml"), &both)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source[0].path") && err.contains("exactly one"),
            "{err}"
        );
        let inline = text.replace("credentials-file", "secret-access-key");
        let err = AgentConfig::parse(Path::new("/a.toml"), &inline)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let p = Path::new("/x/agent.toml");
        let err = AgentConfig::parse(p, "hub = 1").unwrap_err().to_string();
        assert!(
            err.contains("/x/agent.toml") && err.contains("hub"),
            "{err}"
        );
        let err = AgentConfig::parse(
            p,
            "hub=\"h\"\nkey-file=\"k\"\nstate-dir=\"s\"\nsecret=\"x\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown field") && err.contains("secret"),
            "{err}"
        );
        let bad_bucket = "hub=\"h\"\nkey-file=\"k\"\nstate-dir=\"s\"\n[[source]]\nname=\"a\"\npath=\"p\"\nbucket=\"nobucket\"";
        let err = AgentConfig::parse(p, bad_bucket).unwrap_err().to_string();
        assert!(err.contains("source[0].bucket"), "{err}");
    }

    #[test]
    fn directory_rules_and_hooks_are_checked_where_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(dir.path().join("rules"), "# comment\n*.o\n[oops\n").unwrap();
        let head =
            "hub=\"h\"\nkey-file=\"k\"\nstate-dir=\"s\"\n[[source]]\nname=\"a\"\nbucket=\"t/b\"\n";
        let parse = |rest: &str| AgentConfig::parse(&config, &format!("{head}{rest}"));

        let ok = parse("path=\"p\"\nexclude=[\"*.tmp\", \"!keep.tmp\"]\none-file-system=true\npre-backup=\"true\"\nhook-timeout=\"30s\"").unwrap();
        let filter = ok.sources[0].filter().unwrap();
        assert!(filter.one_file_system && filter.excludes(b"x/a.tmp", false));
        assert!(!filter.excludes(b"keep.tmp", false));
        let (pre, post) = ok.sources[0].hooks();
        assert_eq!(pre.unwrap().timeout, std::time::Duration::from_secs(30));
        assert!(post.is_none());

        for (rest, field, says) in [
            (
                "path=\"p\"\nexclude=[\"[oops\"]",
                "source[0].exclude",
                "[oops",
            ),
            (
                "path=\"p\"\nexclude-file=\"rules\"",
                "source[0].exclude-file",
                "line 3",
            ),
            (
                "path=\"p\"\nexclude-file=\"missing\"",
                "source[0].exclude-file",
                "missing",
            ),
            (
                "s3={bucket=\"x\"}\nexclude-caches=true",
                "source[0].exclude-caches",
                "directory sources",
            ),
            (
                "path=\"p\"\npre-backup=\" \"",
                "source[0].pre-backup",
                "empty",
            ),
            (
                "path=\"p\"\nhook-timeout=\"soon\"",
                "source[0].hook-timeout",
                "",
            ),
        ] {
            let err = parse(rest).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(says), "{rest}: {err}");
        }
    }
}
