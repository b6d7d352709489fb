//! Namespace records: one object per namespace change, so replaying them
//! in order rebuilds the namespace.
//!
//! Layout, sealed (see [`super::seal`]) with magic `FERRYNS1`:
//!
//! ```text
//! time_unix_ms i64 | kind u8, then by kind:
//! 0 tenant added        name
//! 1 site added          tenant | name | token_hash [32]
//! 2 site token replaced tenant | name | token_hash [32]
//! 3 site revoked        tenant | name
//! 4 bucket added        tenant | name | source site
//! 5 tenant verifier     tenant | present u8 (0 or 1) | key [32] if present
//! 6 bucket replicas     tenant | name | count u64 | site name × count
//! 7 bucket source       tenant | name | site (a failover)
//! 8 policy applied      tenant | version u64 | applied_unix_ms i64 | count u64 | (name, text) × count,
//!                       each a u32 length and UTF-8 bytes
//! ```
//!
//! The object name is `namespace/<time_unix_ms, 13 digits>-<hash>.ns`, so a
//! listing is in the order the changes were made (by the clock of the hub
//! or command that made them).

use super::codec::{Decoder, Encoder};
use super::{RecordError, seal, short_hash, unseal};
use crate::catalog::PolicyFileText;

const MAGIC: &[u8; 8] = b"FERRYNS1";
const RECORD: &str = "namespace record";

/// The prefix under which every namespace record lives.
pub const PREFIX: &str = "namespace/";

/// One namespace change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    TenantAdded {
        name: String,
    },
    SiteAdded {
        tenant: String,
        name: String,
        /// BLAKE3 of the site's token; the token itself is never kept.
        token_hash: [u8; 32],
    },
    SiteTokenReplaced {
        tenant: String,
        name: String,
        token_hash: [u8; 32],
    },
    SiteRevoked {
        tenant: String,
        name: String,
    },
    BucketAdded {
        tenant: String,
        name: String,
        source_site: String,
    },
    /// The tenant's verifier public key registered, or (`None`) removed.
    TenantVerifierSet {
        tenant: String,
        key: Option<[u8; 32]>,
    },
    /// A bucket's source changed (a failover); it is no longer a replica.
    BucketSourceSet {
        tenant: String,
        name: String,
        source_site: String,
    },
    /// A bucket's replica sites, all of them (none: no replicas).
    BucketReplicasSet {
        tenant: String,
        name: String,
        replicas: Vec<String>,
    },
    /// A version of a tenant's policy files (`policy apply`).
    PolicyApplied {
        tenant: String,
        version: u64,
        /// As the catalog has it (the record's own time may differ by a
        /// millisecond or so).
        applied_unix_ms: i64,
        /// In the order given.
        files: Vec<PolicyFileText>,
    },
}

/// Most replica sites one record names (a bound for decoding).
const MAX_REPLICAS: u64 = 1024;

/// Most files one policy version holds (a bound for decoding).
pub const MAX_POLICY_FILES: u64 = 1024;

/// A namespace change and when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub time_unix_ms: i64,
    pub change: Change,
}

impl NamespaceRecord {
    /// The sealed bytes and the object name they go under.
    ///
    /// # Errors
    ///
    /// `BadName` for a name outside the catalog's rules; `TooLong` for a
    /// time before 1970 or past the year 2286 (13 digits).
    pub fn encode(&self) -> Result<(String, Vec<u8>), RecordError> {
        let mut e = Encoder::new(RECORD, 256);
        e.i64(self.time_unix_ms);
        match &self.change {
            Change::TenantAdded { name } => {
                e.u8(0);
                e.name("name", name)?;
            }
            Change::SiteAdded {
                tenant,
                name,
                token_hash,
            }
            | Change::SiteTokenReplaced {
                tenant,
                name,
                token_hash,
            } => {
                e.u8(match self.change {
                    Change::SiteAdded { .. } => 1,
                    _ => 2,
                });
                e.name("tenant", tenant)?;
                e.name("name", name)?;
                e.hash(token_hash);
            }
            Change::SiteRevoked { tenant, name } => {
                e.u8(3);
                e.name("tenant", tenant)?;
                e.name("name", name)?;
            }
            Change::BucketAdded {
                tenant,
                name,
                source_site,
            } => {
                e.u8(4);
                e.name("tenant", tenant)?;
                e.name("name", name)?;
                e.name("source_site", source_site)?;
            }
            Change::TenantVerifierSet { tenant, key } => {
                e.u8(5);
                e.name("tenant", tenant)?;
                match key {
                    Some(key) => {
                        e.u8(1);
                        e.hash(key);
                    }
                    None => e.u8(0),
                }
            }
            Change::BucketSourceSet {
                tenant,
                name,
                source_site,
            } => {
                e.u8(7);
                e.name("tenant", tenant)?;
                e.name("name", name)?;
                e.name("source_site", source_site)?;
            }
            Change::BucketReplicasSet {
                tenant,
                name,
                replicas,
            } => {
                e.u8(6);
                e.name("tenant", tenant)?;
                e.name("name", name)?;
                if replicas.len() as u64 > MAX_REPLICAS {
                    return Err(RecordError::TooLong {
                        record: RECORD,
                        field: "replicas",
                        len: replicas.len(),
                    });
                }
                e.u64(replicas.len() as u64);
                for site in replicas {
                    e.name("replica", site)?;
                }
            }
            Change::PolicyApplied {
                tenant,
                version,
                applied_unix_ms,
                files,
            } => {
                e.u8(8);
                e.name("tenant", tenant)?;
                e.u64(*version);
                e.i64(*applied_unix_ms);
                if files.len() as u64 > MAX_POLICY_FILES {
                    return Err(RecordError::TooLong {
                        record: RECORD,
                        field: "files",
                        len: files.len(),
                    });
                }
                e.u64(files.len() as u64);
                for f in files {
                    e.bytes("file name", f.name.as_bytes())?;
                    e.bytes("file text", f.text.as_bytes())?;
                }
            }
        }
        if !(0..10_000_000_000_000).contains(&self.time_unix_ms) {
            return Err(RecordError::TooLong {
                record: RECORD,
                field: "time_unix_ms",
                len: 13,
            });
        }
        let bytes = seal(MAGIC, &e.finish());
        let name = format!(
            "{PREFIX}{:013}-{}.ns",
            self.time_unix_ms,
            short_hash(&bytes)
        );
        Ok((name, bytes))
    }

    /// Decodes and verifies a record.
    ///
    /// # Errors
    ///
    /// A [`RecordError`] naming what is wrong. Never panics, whatever the
    /// bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut d = Decoder::new(RECORD, unseal(RECORD, MAGIC, bytes)?);
        let time_unix_ms = d.i64("time_unix_ms")?;
        let change = match d.u8("kind")? {
            0 => Change::TenantAdded {
                name: d.name("name")?,
            },
            1 => Change::SiteAdded {
                tenant: d.name("tenant")?,
                name: d.name("name")?,
                token_hash: d.hash("token_hash")?,
            },
            2 => Change::SiteTokenReplaced {
                tenant: d.name("tenant")?,
                name: d.name("name")?,
                token_hash: d.hash("token_hash")?,
            },
            3 => Change::SiteRevoked {
                tenant: d.name("tenant")?,
                name: d.name("name")?,
            },
            4 => Change::BucketAdded {
                tenant: d.name("tenant")?,
                name: d.name("name")?,
                source_site: d.name("source_site")?,
            },
            5 => Change::TenantVerifierSet {
                tenant: d.name("tenant")?,
                key: match d.u8("present")? {
                    0 => None,
                    1 => Some(d.hash("key")?),
                    other => return Err(d.bad_value("present", u64::from(other))),
                },
            },
            6 => {
                let tenant = d.name("tenant")?;
                let name = d.name("name")?;
                let count = d.u64("count")?;
                if count > MAX_REPLICAS {
                    return Err(d.bad_value("count", count));
                }
                let replicas = (0..count)
                    .map(|_| d.name("replica"))
                    .collect::<Result<_, _>>()?;
                Change::BucketReplicasSet {
                    tenant,
                    name,
                    replicas,
                }
            }
            7 => Change::BucketSourceSet {
                tenant: d.name("tenant")?,
                name: d.name("name")?,
                source_site: d.name("source_site")?,
            },
            8 => {
                let tenant = d.name("tenant")?;
                let version = d.u64("version")?;
                let applied_unix_ms = d.i64("applied_unix_ms")?;
                let count = d.u64("count")?;
                if count > MAX_POLICY_FILES {
                    return Err(d.bad_value("count", count));
                }
                let files = (0..count)
                    .map(|_| {
                        Ok(PolicyFileText {
                            name: d.text("file name")?,
                            text: d.text("file text")?,
                        })
                    })
                    .collect::<Result<_, RecordError>>()?;
                Change::PolicyApplied {
                    tenant,
                    version,
                    applied_unix_ms,
                    files,
                }
            }
            other => return Err(d.bad_value("kind", u64::from(other))),
        };
        d.finish()?;
        Ok(Self {
            time_unix_ms,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<NamespaceRecord> {
        [
            Change::TenantAdded {
                name: "acme".into(),
            },
            Change::SiteAdded {
                tenant: "acme".into(),
                name: "site-a".into(),
                token_hash: [7; 32],
            },
            Change::SiteTokenReplaced {
                tenant: "acme".into(),
                name: "site-a".into(),
                token_hash: [8; 32],
            },
            Change::SiteRevoked {
                tenant: "acme".into(),
                name: "site-a".into(),
            },
            Change::BucketAdded {
                tenant: "acme".into(),
                name: "docs".into(),
                source_site: "site-a".into(),
            },
            Change::TenantVerifierSet {
                tenant: "acme".into(),
                key: Some([9; 32]),
            },
            Change::TenantVerifierSet {
                tenant: "acme".into(),
                key: None,
            },
            Change::BucketReplicasSet {
                tenant: "acme".into(),
                name: "docs".into(),
                replicas: vec!["site-b".into(), "site-c".into()],
            },
            Change::BucketReplicasSet {
                tenant: "acme".into(),
                name: "docs".into(),
                replicas: vec![],
            },
            Change::BucketSourceSet {
                tenant: "acme".into(),
                name: "docs".into(),
                source_site: "site-b".into(),
            },
            Change::PolicyApplied {
                tenant: "acme".into(),
                version: 3,
                applied_unix_ms: 1_699_999_999_999,
                files: vec![
                    PolicyFileText {
                        name: "acme.toml".into(),
                        text: "tenant = \"acme\"\n# é\n".into(),
                    },
                    PolicyFileText {
                        name: "empty.toml".into(),
                        text: String::new(),
                    },
                ],
            },
        ]
        .into_iter()
        .map(|change| NamespaceRecord {
            time_unix_ms: 1_700_000_000_000,
            change,
        })
        .collect()
    }

    #[test]
    fn every_kind_round_trips_and_sorts_by_time() {
        for record in samples() {
            let (name, bytes) = record.encode().unwrap();
            assert_eq!(NamespaceRecord::decode(&bytes).unwrap(), record);
            assert!(name.starts_with("namespace/1700000000000-"), "{name}");
            crate::blobstore::validate_name(&name).unwrap();
            for pos in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[pos] ^= 0x01;
                assert!(NamespaceRecord::decode(&bad).is_err(), "flip at {pos}");
            }
        }
        let early = NamespaceRecord {
            time_unix_ms: 999,
            ..samples().remove(0)
        };
        let (early_name, _) = early.encode().unwrap();
        let (late_name, _) = samples().remove(0).encode().unwrap();
        assert!(early_name < late_name);
    }

    #[test]
    fn a_time_outside_thirteen_digits_is_refused() {
        for time_unix_ms in [-1, 10_000_000_000_000] {
            let record = NamespaceRecord {
                time_unix_ms,
                ..samples().remove(0)
            };
            assert!(matches!(record.encode(), Err(RecordError::TooLong { .. })));
        }
    }
}
