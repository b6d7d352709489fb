//! One policy file: its TOML schema, and its checks, each error placed at
//! the file, line and column it is about.
//!
//! ```toml
//! tenant = "acme"
//!
//! [retention]                 # the tenant's default for its buckets
//! keep-last = 7
//! keep-daily = 14
//! keep-within = "2d"
//! journal-window = "7d"
//! timezone = "Europe/Berlin"
//!
//! [compliance]
//! mode = "compliance"         # or "governance"
//! retain-days = { all = 7, monthly = 365 }
//!
//! [[schedule]]                # backups of every source of the tenant
//! cron = "0 */6 * * *"
//! timezone = "Europe/Berlin"
//!
//! [drill]                     # a restore drill
//! cron = "0 3 * * sun"
//! sample-percent = 10
//!
//! [bucket.photos.retention]   # a bucket's own, in place of the default
//! keep-daily = 30
//!
//! [source."site-a/home"]      # one source of one site
//! schedule = [{ cron = "*/15 * * * *" }]
//!
//! [hold.case-17]              # a legal hold
//! bucket = "mail"
//! reason = "Smith v. Acme"
//! taken-before = 2026-12-01T00:00:00Z
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::compliance::{CLASSES, Compliance, Hold, Mode};
use crate::cron::Cron;
use crate::error::{Location, PolicyError, Reason};
use crate::period::Period;
use crate::retention::Retention;
use crate::schedule::Schedule;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    tenant: Spanned<String>,
    retention: Option<Spanned<RawRetention>>,
    compliance: Option<Spanned<RawCompliance>>,
    schedule: Option<Spanned<Vec<RawSchedule>>>,
    drill: Option<Spanned<RawDrill>>,
    #[serde(default)]
    bucket: BTreeMap<String, Spanned<RawScope>>,
    #[serde(default)]
    source: BTreeMap<String, Spanned<RawSourceScope>>,
    #[serde(default)]
    hold: BTreeMap<String, Spanned<RawHold>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawScope {
    retention: Option<Spanned<RawRetention>>,
    compliance: Option<Spanned<RawCompliance>>,
    schedule: Option<Spanned<Vec<RawSchedule>>>,
    drill: Option<Spanned<RawDrill>>,
}

/// A source sets when it is backed up and drilled; what its bucket keeps
/// is the bucket's business.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSourceScope {
    schedule: Option<Spanned<Vec<RawSchedule>>>,
    drill: Option<Spanned<RawDrill>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    journal_window: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCompliance {
    mode: Spanned<String>,
    retain_days: Option<Spanned<BTreeMap<String, u32>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSchedule {
    cron: Spanned<String>,
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDrill {
    cron: Spanned<String>,
    timezone: Option<Spanned<String>>,
    /// How much of the snapshot a drill restores, 1 to 100 (default 100).
    sample_percent: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHold {
    bucket: Spanned<String>,
    reason: Spanned<String>,
    taken_after: Option<Spanned<toml::value::Datetime>>,
    taken_before: Option<Spanned<toml::value::Datetime>>,
}

/// A restore drill: when, and how much of the newest snapshot it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drill {
    pub schedule: Schedule,
    pub sample_percent: u32,
}

/// What one scope (the tenant, a bucket, a source) sets; what it leaves
/// out it takes from the scope above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub retention: Option<Retention>,
    pub compliance: Option<Compliance>,
    /// Empty: none of its own.
    pub schedules: Vec<Schedule>,
    pub drill: Option<Drill>,
}

/// A thing a file defines, and where, so a set can tell two definitions apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed<T> {
    pub value: T,
    pub at: Location,
}

/// A policy file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub tenant: Placed<String>,
    /// The tenant-wide tables, each where it was written.
    pub defaults: Scope,
    pub defaults_at: BTreeMap<&'static str, Location>,
    pub buckets: Vec<Placed<(String, Scope)>>,
    /// Keyed by site and source name.
    pub sources: Vec<Placed<(String, String, Scope)>>,
    pub holds: Vec<Placed<Hold>>,
}

/// Parses and checks policy file `name` (`text` is its content). Every
/// error found is returned, each with its place.
///
/// # Errors
/// The file's errors: TOML syntax, unknown fields and wrong types (then
/// nothing more is checked), bad names, cron expressions, time zones and
/// periods, and retention that keeps nothing.
pub fn parse(name: &str, text: &str) -> Result<PolicyFile, Vec<PolicyError>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        vec![PolicyError {
            location: Location::of(name, text, e.span().map_or(0, |s| s.start)),
            reason: Reason::Syntax(e.message().trim().to_string()),
        }]
    })?;
    let mut c = Checker {
        name,
        text,
        errors: Vec::new(),
    };
    let tenant_at = c.at(raw.tenant.span());
    c.name_ok("tenant", raw.tenant.get_ref(), raw.tenant.span());
    let mut defaults_at = BTreeMap::new();
    for (what, span) in [
        ("retention", raw.retention.as_ref().map(Spanned::span)),
        ("compliance", raw.compliance.as_ref().map(Spanned::span)),
        ("schedule", raw.schedule.as_ref().map(Spanned::span)),
        ("drill", raw.drill.as_ref().map(Spanned::span)),
    ] {
        if let Some(span) = span {
            defaults_at.insert(what, c.at(span));
        }
    }
    let defaults = c.scope(RawScope {
        retention: raw.retention,
        compliance: raw.compliance,
        schedule: raw.schedule,
        drill: raw.drill,
    });
    let mut buckets = Vec::new();
    for (bucket, scope) in raw.bucket {
        let span = scope.span();
        c.name_ok("bucket", &bucket, span.clone());
        let value = (bucket, c.scope(scope.into_inner()));
        buckets.push(Placed {
            value,
            at: c.at(span),
        });
    }
    let mut sources = Vec::new();
    for (key, scope) in raw.source {
        let span = scope.span();
        let Some((site, source)) = key
            .split_once('/')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        else {
            c.error(
                span,
                Reason::Invalid {
                    field: format!("source.{key:?}"),
                    why: "expected \"SITE/SOURCE\" (a site's name and its [[source]] name)".into(),
                },
            );
            continue;
        };
        c.name_ok("site", site, span.clone());
        let raw = scope.get_ref();
        let s = Scope {
            schedules: raw
                .schedule
                .as_ref()
                .map(|s| c.schedules(s))
                .unwrap_or_default(),
            drill: raw.drill.as_ref().and_then(|d| c.drill(d)),
            ..Scope::default()
        };
        sources.push(Placed {
            value: (site.to_string(), source.to_string(), s),
            at: c.at(span),
        });
    }
    let mut holds = Vec::new();
    for (hold, raw) in raw.hold {
        let span = raw.span();
        c.name_ok("hold", &hold, span.clone());
        if let Some(h) = c.hold(hold, raw.into_inner()) {
            holds.push(Placed {
                value: h,
                at: c.at(span),
            });
        }
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(PolicyFile {
        tenant: Placed {
            value: raw.tenant.into_inner(),
            at: tenant_at,
        },
        defaults,
        defaults_at,
        buckets,
        sources,
        holds,
    })
}

/// Gathers a file's errors while its tables are turned into the model.
struct Checker<'a> {
    name: &'a str,
    text: &'a str,
    errors: Vec<PolicyError>,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>) -> Location {
        Location::of(self.name, self.text, span.start)
    }

    fn error(&mut self, span: Range<usize>, reason: Reason) {
        let location = self.at(span);
        self.errors.push(PolicyError { location, reason });
    }

    /// Names as the hub spells them: `[a-z0-9._-]`, 1 to 64 bytes.
    fn name_ok(&mut self, field: &str, name: &str, span: Range<usize>) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            self.error(
                span,
                Reason::Invalid {
                    field: field.into(),
                    why: format!("{name:?}: use 1 to 64 of a-z, 0-9, '.', '_' and '-'"),
                },
            );
        }
    }

    fn zone(&mut self, zone: Option<&Spanned<String>>) -> Option<Tz> {
        let Some(zone) = zone else {
            return Some(Tz::UTC);
        };
        match zone.get_ref().parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.error(zone.span(), Reason::TimeZone(zone.get_ref().clone()));
                None
            }
        }
    }

    fn period(&mut self, text: Option<&Spanned<String>>) -> Option<Option<Period>> {
        let Some(text) = text else { return Some(None) };
        match Period::parse(text.get_ref()) {
            Ok(p) => Some(Some(p)),
            Err(why) => {
                self.error(
                    text.span(),
                    Reason::Duration {
                        text: text.get_ref().clone(),
                        why,
                    },
                );
                None
            }
        }
    }

    fn cron(&mut self, cron: &Spanned<String>, zone: Option<&Spanned<String>>) -> Option<Schedule> {
        let parsed = Cron::parse(cron.get_ref()).map_err(|e| {
            self.error(
                cron.span(),
                Reason::Cron {
                    expr: cron.get_ref().clone(),
                    why: e.0,
                },
            )
        });
        let zone = self.zone(zone);
        Some(Schedule {
            cron: parsed.ok()?,
            zone: zone?,
        })
    }

    fn scope(&mut self, raw: RawScope) -> Scope {
        Scope {
            retention: raw.retention.and_then(|r| self.retention(r)),
            compliance: raw.compliance.and_then(|c| self.compliance(c)),
            schedules: raw
                .schedule
                .as_ref()
                .map(|s| self.schedules(s))
                .unwrap_or_default(),
            drill: raw.drill.as_ref().and_then(|d| self.drill(d)),
        }
    }

    fn retention(&mut self, raw: Spanned<RawRetention>) -> Option<Retention> {
        let span = raw.span();
        let r = raw.into_inner();
        let keep_within = self.period(r.keep_within.as_ref());
        let journal_window = self.period(r.journal_window.as_ref());
        let zone = self.zone(r.timezone.as_ref());
        let retention = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: keep_within?,
            journal_window: journal_window?,
            zone: zone?,
        };
        if !retention.keeps_something() {
            self.error(span, Reason::KeepsNothing);
            return None;
        }
        Some(retention)
    }

    fn compliance(&mut self, raw: Spanned<RawCompliance>) -> Option<Compliance> {
        let c = raw.into_inner();
        let mode = match c.mode.get_ref().as_str() {
            "governance" => Some(Mode::Governance),
            "compliance" => Some(Mode::Compliance),
            other => {
                let why = format!("{other:?}: expected \"governance\" or \"compliance\"");
                self.error(
                    c.mode.span(),
                    Reason::Invalid {
                        field: "mode".into(),
                        why,
                    },
                );
                None
            }
        };
        let mut retain_days = BTreeMap::new();
        if let Some(days) = c.retain_days {
            for (class, n) in days.get_ref() {
                if !CLASSES.contains(&class.as_str()) {
                    let why = format!("unknown class {class:?} (known: {})", CLASSES.join(", "));
                    self.error(
                        days.span(),
                        Reason::Invalid {
                            field: "retain-days".into(),
                            why,
                        },
                    );
                } else if *n == 0 {
                    self.error(
                        days.span(),
                        Reason::Invalid {
                            field: format!("retain-days.{class}"),
                            why: "0 days locks nothing: leave the class out".into(),
                        },
                    );
                }
            }
            retain_days = days.into_inner();
        }
        Some(Compliance {
            mode: mode?,
            retain_days,
        })
    }

    fn schedules(&mut self, raw: &Spanned<Vec<RawSchedule>>) -> Vec<Schedule> {
        raw.get_ref()
            .iter()
            .filter_map(|s| self.cron(&s.cron, s.timezone.as_ref()))
            .collect()
    }

    fn drill(&mut self, raw: &Spanned<RawDrill>) -> Option<Drill> {
        let d = raw.get_ref();
        let sample_percent = match &d.sample_percent {
            None => 100,
            Some(p) if (1..=100).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => {
                self.error(
                    p.span(),
                    Reason::Invalid {
                        field: "sample-percent".into(),
                        why: format!("{}: expected 1 to 100", p.get_ref()),
                    },
                );
                return None;
            }
        };
        Some(Drill {
            schedule: self.cron(&d.cron, d.timezone.as_ref())?,
            sample_percent,
        })
    }

    fn hold(&mut self, name: String, raw: RawHold) -> Option<Hold> {
        self.name_ok("bucket", raw.bucket.get_ref(), raw.bucket.span());
        if raw.reason.get_ref().trim().is_empty() {
            self.error(
                raw.reason.span(),
                Reason::Invalid {
                    field: "reason".into(),
                    why: "a hold says why it is held".into(),
                },
            );
        }
        let after = raw
            .taken_after
            .as_ref()
            .map(|t| self.instant("taken-after", t));
        let before = raw
            .taken_before
            .as_ref()
            .map(|t| self.instant("taken-before", t));
        // Given but bad (already told): no hold.
        let given = |t: Option<Option<DateTime<Utc>>>| t.map_or(Some(None), |t| t.map(Some));
        let (taken_after, taken_before) = (given(after)?, given(before)?);
        if let (Some(a), Some(b), Some(span)) = (
            taken_after,
            taken_before,
            raw.taken_before.as_ref().map(Spanned::span),
        ) && a >= b
        {
            self.error(
                span,
                Reason::Invalid {
                    field: "taken-before".into(),
                    why: "is not after taken-after: the hold would cover nothing".into(),
                },
            );
        }
        Some(Hold {
            name,
            bucket: raw.bucket.into_inner(),
            reason: raw.reason.into_inner(),
            taken_after,
            taken_before,
        })
    }

    fn instant(
        &mut self,
        field: &str,
        t: &Spanned<toml::value::Datetime>,
    ) -> Option<DateTime<Utc>> {
        match DateTime::parse_from_rfc3339(&t.get_ref().to_string()) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                let why = format!(
                    "{}: give a date, a time and an offset, e.g. 2026-12-01T00:00:00Z",
                    t.get_ref()
                );
                self.error(
                    t.span(),
                    Reason::Invalid {
                        field: field.into(),
                        why,
                    },
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
