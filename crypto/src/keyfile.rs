//! The tenant key file: age X25519 identity, dedup key and chunker seed, as TOML.
//!
//! Two variants share one format. The private one holds the identity (restores
//! need it); the write-only one holds just the recipient, so a backup-only agent
//! can encrypt and deduplicate but never decrypt.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::secrecy::zeroize::Zeroizing;
use age::x25519;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::Deserialize;

use crate::safe_write::{self, WriteFailure};

/// The only key file version this build reads and writes.
const VERSION: u32 = 1;
/// Key files are a few hundred bytes; anything this large is not one.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

const PRIVATE_COMMENT: &str = "\
# Ferry tenant key file (PRIVATE). The identity below decrypts every backup of this tenant.
# Keep it secret (mode 0600) and keep an offline backup: without it nothing can be restored.
";
const PUBLIC_COMMENT: &str = "\
# Ferry tenant key file, write-only variant: no identity, so it can back up but not restore.
# Keep it secret (mode 0600): the dedup key and chunker seed let a holder test guessed content.
";
const AGE_IDENTITY_COMMENT: &str = "\
# age identity of a Ferry tenant (PRIVATE), for the stock `age -d -i` tool. Keep it secret.
";

/// Why a key file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// An I/O step failed.
    #[error("key file {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Refused to overwrite an existing file.
    #[error("key file {}: already exists; refusing to overwrite a key file", path.display())]
    Exists { path: PathBuf },
    /// A key file that group or others can read.
    #[error(
        "key file {}: mode {mode:04o} lets group or others read the key; run `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecureMode { path: PathBuf, mode: u32 },
    /// Not valid TOML, or the wrong shape (unknown or missing field, wrong type).
    #[error("key file {}: {location}{message}", path.display())]
    Syntax {
        path: PathBuf,
        /// e.g. "line 4, field `dedup-key`: "; empty when unknown.
        location: String,
        message: String,
    },
    /// A field is present but its value is wrong.
    #[error("key file {}: field `{field}`: {problem}", path.display())]
    Field {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },
    /// Asked to write an identity that these keys do not have.
    #[error(
        "key file {}: these keys are write-only (no identity), so there is no private key to write",
        path.display()
    )]
    NoIdentity { path: PathBuf },
}

/// A tenant's keys. Clone is cheap enough; secrets are zeroized on drop.
#[derive(Clone)]
pub struct TenantKeys {
    identity: Option<x25519::Identity>,
    recipient: x25519::Recipient,
    escrow: Vec<x25519::Recipient>,
    dedup_key: Zeroizing<[u8; 32]>,
    chunker_seed: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKeys")
            .field("recipient", &self.recipient.to_string())
            .field("escrow", &self.escrow.len())
            .field("can_decrypt", &self.can_decrypt())
            .finish_non_exhaustive()
    }
}

/// The on-disk shape; values are validated after parsing, to name the bad field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KeyFileToml {
    version: u32,
    identity: Option<String>,
    recipient: String,
    #[serde(default)]
    escrow_recipients: Vec<String>,
    dedup_key: String,
    chunker_seed: String,
}

fn random_32() -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut_slice());
    bytes
}

impl TenantKeys {
    /// Fresh random keys: age X25519 identity, 32-byte dedup key, 32-byte chunker seed.
    pub fn generate() -> TenantKeys {
        let identity = x25519::Identity::generate();
        TenantKeys {
            recipient: identity.to_public(),
            identity: Some(identity),
            escrow: Vec::new(),
            dedup_key: random_32(),
            chunker_seed: random_32(),
        }
    }

    /// The write-only variant: same recipient, escrow, dedup key and seed, no identity.
    pub fn to_public(&self) -> TenantKeys {
        TenantKeys {
            identity: None,
            ..self.clone()
        }
    }

    /// True iff these keys hold the identity (can restore).
    pub fn can_decrypt(&self) -> bool {
        self.identity.is_some()
    }

    /// The tenant's age recipient, `age1...`.
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }

    /// Extra escrow recipients (`age1...`) every session header is also wrapped for.
    pub fn escrow_recipients(&self) -> Vec<String> {
        self.escrow.iter().map(ToString::to_string).collect()
    }

    pub(crate) fn age_identity(&self) -> Option<&x25519::Identity> {
        self.identity.as_ref()
    }

    pub(crate) fn age_recipient(&self) -> &x25519::Recipient {
        &self.recipient
    }

    pub(crate) fn age_escrow(&self) -> &[x25519::Recipient] {
        &self.escrow
    }

    pub(crate) fn dedup_key(&self) -> &[u8; 32] {
        &self.dedup_key
    }

    pub(crate) fn chunker_seed(&self) -> &[u8; 32] {
        &self.chunker_seed
    }

    /// Writes the private key file (with the identity): mode 0600, never overwrites.
    pub fn write_private(&self, path: &Path) -> Result<(), KeyFileError> {
        let identity = self
            .identity
            .as_ref()
            .ok_or_else(|| KeyFileError::NoIdentity {
                path: path.to_path_buf(),
            })?;
        let secret = identity.to_string();
        let text = self.render(PRIVATE_COMMENT, Some(secret.expose_secret()));
        write_new(path, &text)
    }

    /// Writes the write-only variant (no identity): mode 0600, never overwrites.
    pub fn write_public(&self, path: &Path) -> Result<(), KeyFileError> {
        let text = self.render(PUBLIC_COMMENT, None);
        write_new(path, &text)
    }

    /// Writes the identity alone as a stock age identity file (`AGE-SECRET-KEY-1...`),
    /// so an auditor can run `age -d -i FILE` on `header ‖ chunk`. Mode 0600, never
    /// overwrites.
    pub fn write_age_identity(&self, path: &Path) -> Result<(), KeyFileError> {
        let identity = self
            .identity
            .as_ref()
            .ok_or_else(|| KeyFileError::NoIdentity {
                path: path.to_path_buf(),
            })?;
        let secret = identity.to_string();
        let mut text = Zeroizing::new(format!(
            "{AGE_IDENTITY_COMMENT}# public key: {}\n",
            self.recipient
        ));
        text.push_str(secret.expose_secret());
        text.push('\n');
        write_new(path, &text)
    }

    /// The TOML text. Values are bech32 or hex, so no TOML escaping is needed.
    fn render(&self, comment: &str, identity: Option<&str>) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(512));
        text.push_str(comment);
        text.push_str(&format!("version = {VERSION}\n"));
        if let Some(identity) = identity {
            // Pushed piecewise so no unzeroized copy of the secret is left behind.
            text.push_str("identity = \"");
            text.push_str(identity);
            text.push_str("\"\n");
        }
        text.push_str(&format!("recipient = \"{}\"\n", self.recipient));
        if !self.escrow.is_empty() {
            let list: Vec<String> = self.escrow.iter().map(|r| format!("\"{r}\"")).collect();
            text.push_str(&format!("escrow-recipients = [{}]\n", list.join(", ")));
        }
        text.push_str(&format!(
            "dedup-key = \"{}\"\n",
            hex::encode(self.dedup_key.as_slice())
        ));
        text.push_str(&format!(
            "chunker-seed = \"{}\"\n",
            hex::encode(self.chunker_seed.as_slice())
        ));
        text
    }

    /// Loads either variant, validating every field; a private file must be 0600.
    pub fn load(path: &Path) -> Result<TenantKeys, KeyFileError> {
        let (text, mode) = read_limited(path)?;
        Self::parse(path, &text, mode)
    }

    /// [`Self::load`] of a key file's text and permission bits (`path` for
    /// messages only).
    ///
    /// # Errors
    /// As [`Self::load`], but for reading the file.
    pub fn parse(path: &Path, text: &str, mode: u32) -> Result<TenantKeys, KeyFileError> {
        let raw: KeyFileToml = toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let field = |field: &'static str, problem: String| KeyFileError::Field {
            path: path.to_path_buf(),
            field,
            problem,
        };

        if raw.version != VERSION {
            return Err(field(
                "version",
                format!(
                    "unsupported version {} (this build reads version {VERSION})",
                    raw.version
                ),
            ));
        }
        let recipient = x25519::Recipient::from_str(&raw.recipient).map_err(|e| {
            field(
                "recipient",
                format!("not an age X25519 recipient (age1...): {e}"),
            )
        })?;
        let identity = match raw.identity.map(Zeroizing::new) {
            None => None,
            Some(text) => {
                let identity = x25519::Identity::from_str(&text).map_err(|e| {
                    field(
                        "identity",
                        format!("not an age X25519 identity (AGE-SECRET-KEY-1...): {e}"),
                    )
                })?;
                let derived = identity.to_public();
                if derived != recipient {
                    return Err(field(
                        "recipient",
                        format!(
                            "does not match `identity` (the identity's recipient is {derived})"
                        ),
                    ));
                }
                Some(identity)
            }
        };
        let mut escrow = Vec::with_capacity(raw.escrow_recipients.len());
        for (i, text) in raw.escrow_recipients.iter().enumerate() {
            escrow.push(x25519::Recipient::from_str(text).map_err(|e| {
                field(
                    "escrow-recipients",
                    format!(
                        "entry {}: not an age X25519 recipient (age1...): {e}",
                        i + 1
                    ),
                )
            })?);
        }
        let dedup_key =
            parse_hex_key(&raw.dedup_key).map_err(|problem| field("dedup-key", problem))?;
        let chunker_seed =
            parse_hex_key(&raw.chunker_seed).map_err(|problem| field("chunker-seed", problem))?;

        // Like ssh: a key others can read is refused, not just warned about.
        // The write-only variant too: its dedup key and chunker seed let a
        // reader test guessed content, and it signs commits.
        if mode & 0o077 != 0 {
            return Err(KeyFileError::InsecureMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        Ok(TenantKeys {
            identity,
            recipient,
            escrow,
            dedup_key,
            chunker_seed,
        })
    }
}

fn write_new(path: &Path, text: &str) -> Result<(), KeyFileError> {
    safe_write::write_new_secret_file(path, text.as_bytes()).map_err(
        |WriteFailure { action, source }| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyFileError::Io {
                    path: path.to_path_buf(),
                    action,
                    source,
                }
            }
        },
    )
}

/// Reads the file (bounded) and its permission bits, from one open handle.
fn read_limited(path: &Path) -> Result<(Zeroizing<String>, u32), KeyFileError> {
    let io_err = |action: &'static str| {
        move |source| KeyFileError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let file = File::open(path).map_err(io_err("opening"))?;
    let meta = file.metadata().map_err(io_err("reading metadata"))?;
    if !meta.is_file() {
        return Err(io_err("opening")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    };
    #[cfg(not(unix))]
    let mode = 0o600;

    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::Syntax {
            path: path.to_path_buf(),
            location: String::new(),
            message: format!("larger than {MAX_KEY_FILE_LEN} bytes: not a Ferry key file"),
        });
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => Zeroizing::new(text.to_string()),
        Err(e) => {
            return Err(KeyFileError::Syntax {
                path: path.to_path_buf(),
                location: String::new(),
                message: format!("not UTF-8 text: {e}"),
            });
        }
    };
    Ok((text, mode))
}

/// Turns a TOML error into one naming the line and the field it is on.
fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> KeyFileError {
    let message = e.message().trim().to_string();
    // serde reports a missing field without a useful span; it names the field itself.
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return KeyFileError::Syntax {
            path: path.to_path_buf(),
            location: format!("field `{name}`: "),
            message: "missing".to_string(),
        };
    }
    let location = e
        .span()
        .and_then(|span| {
            let start = span.start.min(text.len());
            let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
            let line_no = text.get(..start)?.matches('\n').count() + 1;
            let line = text.get(line_start..)?.lines().next().unwrap_or_default();
            let key = line.split('=').next().unwrap_or_default().trim();
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            Some(if key.is_empty() || key.starts_with('#') {
                format!("line {line_no}: ")
            } else {
                format!("line {line_no}, field `{key}`: ")
            })
        })
        .unwrap_or_default();
    KeyFileError::Syntax {
        path: path.to_path_buf(),
        location,
        message,
    }
}

fn parse_hex_key(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, found {} characters",
            text.chars().count()
        ));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, key.as_mut_slice())
        .map_err(|e| format!("expected 64 hex digits: {e}"))?;
    Ok(key)
}
