//! The agent's TOML config. Relative paths are relative to the config file.
//! The site token never sits in this file: it comes from `token-file` or
//! the `FERRY_SITE_TOKEN` environment variable.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable that may hold the site token instead of a file.
pub const TOKEN_ENV: &str = "FERRY_SITE_TOKEN";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    /// Hub gRPC address, e.g. "http://127.0.0.1:7420".
    pub hub: String,
    /// File holding this site's token (printed once by `ferry-hub site add`).
    pub token_file: Option<PathBuf>,
    /// The tenant key file (`ferry-agent key generate`).
    pub key_file: PathBuf,
    /// Where the agent keeps its journals.
    pub state_dir: PathBuf,
    /// What this agent protects.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// A short name for the CLI and the journal file.
    pub name: String,
    /// Directory to protect.
    pub path: PathBuf,
    /// Hub bucket, "tenant/bucket".
    pub bucket: String,
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
        for (i, s) in config.sources.iter_mut().enumerate() {
            s.path = base.join(&s.path);
            let invalid = |field: &str, reason: &str| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("source[{i}].{field}"),
                reason: reason.to_string(),
            };
            if s.name.is_empty()
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid("name", "use letters, digits, '-', '_' or '.'"));
            }
            if s.bucket.split('/').count() != 2 || s.bucket.split('/').any(str::is_empty) {
                return Err(invalid("bucket", "expected \"tenant/bucket\""));
            }
        }
        Ok(config)
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
        let token = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::Token(format!("{}: {e}", file.display())))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(ConfigError::Token(format!(
                "{}: file is empty",
                file.display()
            )));
        }
        Ok(token.to_string())
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
        assert_eq!(c.sources[0].path, Path::new("/etc/ferry/data"));
        assert_eq!(c.source(None).unwrap().name, "docs");
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
}
