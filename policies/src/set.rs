//! A set of policy files applied together: checked whole (one bad file
//! rejects the set), then resolved per bucket and per source.
//!
//! A bucket's retention, compliance, schedules or drill are its own where
//! it sets them, else the tenant's; a source's schedules and drill are its
//! own, else its bucket's, else the tenant's. A table replaces the one
//! above it whole: fields are not merged, so what is in force can be read
//! off one table.

use std::collections::BTreeMap;

use crate::compliance::{Compliance, Hold};
use crate::error::{Location, PolicyError, Reason};
use crate::file::{self, Drill, Scope};
use crate::retention::Retention;
use crate::schedule::Schedule;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    pub defaults: Scope,
    pub buckets: BTreeMap<String, Scope>,
    /// Keyed by (site, source name).
    pub sources: BTreeMap<(String, String), Scope>,
    pub holds: BTreeMap<String, Hold>,
    /// The names of the set's files that name this tenant, in the order given.
    pub files: Vec<String>,
}

/// Every tenant the set's files name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// What is in force for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPolicy<'a> {
    pub retention: Option<&'a Retention>,
    pub compliance: Option<&'a Compliance>,
    pub schedules: &'a [Schedule],
    pub drill: Option<&'a Drill>,
    pub holds: Vec<&'a Hold>,
}

/// Parses and checks `files` (name, text) as one set.
///
/// # Errors
/// Every error of every file, and each thing defined twice across them
/// (placed at its second definition, naming the first).
pub fn parse(files: &[(String, String)]) -> Result<PolicySet, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let mut set = PolicySet::default();
    let mut first: BTreeMap<String, Location> = BTreeMap::new();
    let mut once =
        |what: String, at: &Location, errors: &mut Vec<PolicyError>| match first.get(&what) {
            Some(earlier) => {
                errors.push(PolicyError {
                    location: at.clone(),
                    reason: Reason::Duplicate {
                        what,
                        first: earlier.clone(),
                    },
                });
                false
            }
            None => {
                first.insert(what, at.clone());
                true
            }
        };
    for (name, text) in files {
        let f = match file::parse(name, text) {
            Ok(f) => f,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let tenant = f.tenant.value.clone();
        let t = set.tenants.entry(tenant.clone()).or_default();
        t.files.push(name.clone());
        for (what, at) in &f.defaults_at {
            if once(format!("tenant {tenant}'s [{what}]"), at, &mut errors) {
                match *what {
                    "retention" => t.defaults.retention = f.defaults.retention.clone(),
                    "compliance" => t.defaults.compliance = f.defaults.compliance.clone(),
                    "schedule" => t.defaults.schedules = f.defaults.schedules.clone(),
                    _ => t.defaults.drill = f.defaults.drill.clone(),
                }
            }
        }
        for b in f.buckets {
            let (bucket, scope) = b.value;
            if once(format!("bucket {tenant}/{bucket}"), &b.at, &mut errors) {
                t.buckets.insert(bucket, scope);
            }
        }
        for s in f.sources {
            let (site, source, scope) = s.value;
            if once(
                format!("source {site}/{source} of tenant {tenant}"),
                &s.at,
                &mut errors,
            ) {
                t.sources.insert((site, source), scope);
            }
        }
        for h in f.holds {
            if once(
                format!("hold {} of tenant {tenant}", h.value.name),
                &h.at,
                &mut errors,
            ) {
                t.holds.insert(h.value.name.clone(), h.value);
            }
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

impl TenantPolicy {
    /// What is in force for `bucket` (a bucket the files do not name gets
    /// the tenant's defaults).
    pub fn bucket(&self, bucket: &str) -> BucketPolicy<'_> {
        let own = self.buckets.get(bucket);
        let d = &self.defaults;
        BucketPolicy {
            retention: own
                .and_then(|s| s.retention.as_ref())
                .or(d.retention.as_ref()),
            compliance: own
                .and_then(|s| s.compliance.as_ref())
                .or(d.compliance.as_ref()),
            schedules: own
                .map(|s| s.schedules.as_slice())
                .filter(|s| !s.is_empty())
                .unwrap_or(&d.schedules),
            drill: own.and_then(|s| s.drill.as_ref()).or(d.drill.as_ref()),
            holds: self.holds.values().filter(|h| h.bucket == bucket).collect(),
        }
    }

    /// The schedules and drill of source `source` of `site`, which backs up
    /// into `bucket`.
    pub fn source(&self, site: &str, source: &str, bucket: &str) -> (&[Schedule], Option<&Drill>) {
        let of_bucket = self.bucket(bucket);
        let own = self.sources.get(&(site.to_string(), source.to_string()));
        let schedules = own
            .map(|s| s.schedules.as_slice())
            .filter(|s| !s.is_empty())
            .unwrap_or(of_bucket.schedules);
        (
            schedules,
            own.and_then(|s| s.drill.as_ref()).or(of_bucket.drill),
        )
    }

    /// The policy as lines, one per thing it sets, in a fixed order: what
    /// `policy show` prints and `policy diff` compares.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = describe_scope("tenant", &self.defaults);
        for (bucket, scope) in &self.buckets {
            lines.extend(describe_scope(&format!("bucket {bucket}"), scope));
        }
        for ((site, source), scope) in &self.sources {
            lines.extend(describe_scope(&format!("source {site}/{source}"), scope));
        }
        lines.extend(self.holds.values().map(ToString::to_string));
        lines
    }
}

fn describe_scope(scope: &str, s: &Scope) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(r) = &s.retention {
        lines.push(format!("{scope}: retention {r}"));
    }
    if let Some(c) = &s.compliance {
        lines.push(format!("{scope}: compliance {c}"));
    }
    for schedule in &s.schedules {
        lines.push(format!("{scope}: backups at {schedule}"));
    }
    if let Some(d) = &s.drill {
        lines.push(format!(
            "{scope}: drill at {}, {}% of the newest snapshot",
            d.schedule, d.sample_percent
        ));
    }
    lines
}

/// The lines of `old` that `new` lacks ("- ") and those it adds ("+ ").
pub fn diff(old: &[String], new: &[String]) -> Vec<String> {
    let gone = old
        .iter()
        .filter(|l| !new.contains(l))
        .map(|l| format!("- {l}"));
    let added = new
        .iter()
        .filter(|l| !old.contains(l))
        .map(|l| format!("+ {l}"));
    gone.chain(added).collect()
}

#[cfg(test)]
mod tests;
