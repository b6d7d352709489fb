//! Parses S3 event notification bodies (`{"Records":[...]}`) as AWS S3,
//! MinIO (webhook target) and Ceph RGW (HTTP push endpoint) send them, into
//! object events. Pure: no I/O, and never panics on any input.
//!
//! What counts:
//! - `ObjectCreated:*` is [`EventKind::Created`]; `ObjectRemoved:*`,
//!   `LifecycleExpiration:Delete` and `LifecycleExpiration:DeleteMarkerCreated`
//!   are [`EventKind::Removed`], and so are Ceph's own names for the latter
//!   (`ObjectLifecycle:Expiration:Current`, `:Noncurrent`, `:DeleteMarker`).
//!   Names may carry MinIO's (and some RGW versions') `s3:` prefix.
//! - Records of any other event (restores, replication, tagging, ACLs,
//!   transitions, accesses...) are skipped, not errors: a bucket may be
//!   configured to send more than we need, and those do not change what a
//!   key holds. A record is checked only as far as its `eventName` then.
//! - The test event S3 sends when a notification is configured
//!   (`{"Event":"s3:TestEvent",...}`, no `Records`) is an empty list.
//! - Unknown fields are ignored everywhere.
//!
//! Keys: AWS and MinIO form-URL-encode them (`+` is a space, `%XX` a byte;
//! MinIO escapes `/` too, AWS does not); Ceph RGW sends them raw, so records
//! whose `eventSource` is `ceph:s3` keep their key as sent (decoding would
//! turn a real `+` into a space).

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most records in one body.
pub const MAX_RECORDS: usize = 10_000;
/// Longest object key S3 allows, in bytes.
const MAX_KEY_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// URL-decoded (except from Ceph RGW, which sends keys raw); valid
    /// UTF-8, 1..=1024 bytes.
    pub key: String,
    pub kind: EventKind,
    /// As sent, e.g. "ObjectCreated:Put" or "s3:ObjectCreated:Put".
    pub event_name: String,
    /// "" when absent.
    pub version_id: String,
    /// Hex digits, "" when absent. Order with [`cmp_sequencers`].
    pub sequencer: String,
    /// "" when absent (removals carry none).
    pub etag: String,
    /// 0 when absent.
    pub size: u64,
    /// As sent (ISO 8601).
    pub event_time: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventParseError {
    #[error("body larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("Records: more than {max} records")]
    TooManyRecords { max: usize },
    /// `path` names the field, e.g. `Records[3].s3.object.key`.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

fn invalid(path: impl Into<String>, problem: impl Into<String>) -> EventParseError {
    EventParseError::Invalid {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Parses one notification body into the object events it holds, in order.
///
/// Records of event kinds other than object creation and removal are
/// skipped (see the module docs), as is the whole body of a test event.
///
/// # Errors
/// The body is over [`MAX_BODY_BYTES`], not JSON, has no `Records` array or
/// more than [`MAX_RECORDS`] records, or a record of a kept event lacks its
/// bucket name or key or has a field of the wrong shape; the error names
/// the record and field.
pub fn parse_events(body: &[u8]) -> Result<Vec<ObjectEvent>, EventParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EventParseError::TooLarge {
            max: MAX_BODY_BYTES,
        });
    }
    // Bodies as servers send them take the typed path; anything it does not
    // take (an error to report, a test event, Ceph's sizes as strings...) goes
    // through the general one, which decides alike and names the problem.
    typed::parse(body).unwrap_or_else(|| parse_general(body))
}

/// Parses through a `serde_json::Value` tree: every shape, exact errors.
fn parse_general(body: &[u8]) -> Result<Vec<ObjectEvent>, EventParseError> {
    // serde_json caps nesting depth, so hostile input cannot blow the stack.
    let root: Value =
        serde_json::from_slice(body).map_err(|e| EventParseError::NotJson(e.to_string()))?;
    let Value::Object(root) = root else {
        return Err(invalid("body", "not a JSON object"));
    };
    let records = match root.get("Records") {
        Some(Value::Array(records)) => records,
        Some(Value::Null) | None => {
            if root.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
                return Ok(Vec::new());
            }
            return Err(invalid("Records", "missing"));
        }
        Some(_) => return Err(invalid("Records", "not an array")),
    };
    if records.len() > MAX_RECORDS {
        return Err(EventParseError::TooManyRecords { max: MAX_RECORDS });
    }
    records
        .iter()
        .enumerate()
        .filter_map(|(i, record)| parse_record(i, record).transpose())
        .collect()
}

/// The typed path: borrowed strings, no tree. `None` whenever the body is
/// anything but well-formed records of the usual shapes, so that
/// [`parse_general`] decides (and words the error).
mod typed {
    use std::borrow::Cow;

    use serde::Deserialize;

    use super::{EventParseError, MAX_RECORDS, ObjectEvent, SentRecord, classify};

    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<Record<'a>>,
    }

    #[derive(Deserialize)]
    struct Record<'a> {
        #[serde(rename = "eventName", borrow)]
        event_name: Cow<'a, str>,
        #[serde(rename = "eventSource", borrow, default)]
        event_source: Option<Cow<'a, str>>,
        #[serde(rename = "eventTime", borrow, default)]
        event_time: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        s3: Option<S3<'a>>,
    }

    #[derive(Deserialize)]
    struct S3<'a> {
        #[serde(borrow, default)]
        bucket: Option<Bucket<'a>>,
        #[serde(borrow, default)]
        object: Option<Object<'a>>,
    }

    #[derive(Deserialize)]
    struct Bucket<'a> {
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Object<'a> {
        #[serde(borrow, default)]
        key: Option<Cow<'a, str>>,
        #[serde(default)]
        size: Option<u64>,
        #[serde(rename = "eTag", borrow, default)]
        e_tag: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        etag: Option<Cow<'a, str>>,
        #[serde(rename = "versionId", borrow, default)]
        version_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        sequencer: Option<Cow<'a, str>>,
    }

    pub(super) fn parse(body: &[u8]) -> Option<Result<Vec<ObjectEvent>, EventParseError>> {
        // Skipped fields are not decoded: check the whole body is UTF-8 here
        // (their `\u` escapes stay unchecked; nothing reads them).
        let body = std::str::from_utf8(body).ok()?;
        let body: Body = serde_json::from_str(body).ok()?;
        if body.records.len() > MAX_RECORDS {
            return Some(Err(EventParseError::TooManyRecords { max: MAX_RECORDS }));
        }
        let mut events = Vec::with_capacity(body.records.len());
        for record in &body.records {
            let Some(kind) = classify(&record.event_name) else {
                continue;
            };
            let s3 = record.s3.as_ref()?;
            let object = s3.object.as_ref()?;
            // A null "eTag" beside an "etag" reads as absent here but wins
            // there: leave that to the general path.
            if object.etag.is_some() && object.e_tag.is_none() {
                return None;
            }
            let sent = SentRecord {
                kind,
                event_name: &record.event_name,
                event_source: record.event_source.as_deref().unwrap_or(""),
                event_time: record.event_time.as_deref().unwrap_or(""),
                bucket: s3.bucket.as_ref()?.name.as_deref()?,
                key: object.key.as_deref()?,
                version_id: object.version_id.as_deref().unwrap_or(""),
                sequencer: object.sequencer.as_deref().unwrap_or(""),
                etag: object.e_tag.as_deref().unwrap_or(""),
                size: object.size.unwrap_or(0),
            };
            events.push(sent.into_event().ok()?);
        }
        Some(Ok(events))
    }
}

/// What an event name means for the key; `None`: not a change we track.
fn classify(event_name: &str) -> Option<EventKind> {
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if name.starts_with("ObjectCreated:") {
        return Some(EventKind::Created);
    }
    if name.starts_with("ObjectRemoved:") {
        return Some(EventKind::Removed);
    }
    // Lifecycle deletes an object or puts a delete marker on it. Ceph spells
    // "NonCurrent" in its docs and "Noncurrent" on the wire: ignore case.
    let removals = [
        "LifecycleExpiration:Delete",
        "LifecycleExpiration:DeleteMarkerCreated",
        "ObjectLifecycle:Expiration:Current",
        "ObjectLifecycle:Expiration:Noncurrent",
        "ObjectLifecycle:Expiration:DeleteMarker",
    ];
    removals
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
        .then_some(EventKind::Removed)
}

fn parse_record(i: usize, record: &Value) -> Result<Option<ObjectEvent>, EventParseError> {
    let Value::Object(record) = record else {
        return Err(invalid(format!("Records[{i}]"), "not an object"));
    };
    let at = |path: &'static str| Field { i, path };
    let event_name = at("eventName").required_str(record)?;
    let Some(kind) = classify(event_name) else {
        return Ok(None);
    };
    let s3 = at("s3").object(record)?;
    let bucket = at("s3.bucket").object(s3)?;
    let object = at("s3.object").object(s3)?;
    // Old RGW releases spell it "etag".
    let etag = if object.contains_key("eTag") {
        at("s3.object.eTag").optional_str(object)?
    } else {
        at("s3.object.etag").optional_str(object)?
    };
    let sent = SentRecord {
        kind,
        event_name,
        bucket: at("s3.bucket.name").required_str(bucket)?,
        key: at("s3.object.key").required_str(object)?,
        event_source: at("eventSource").optional_str(record)?,
        sequencer: at("s3.object.sequencer").optional_str(object)?,
        etag,
        version_id: at("s3.object.versionId").optional_str(object)?,
        size: at("s3.object.size").size(object)?,
        event_time: at("eventTime").optional_str(record)?,
    };
    sent.into_event()
        .map(Some)
        .map_err(|(path, problem)| at(path).error(problem))
}

/// The fields of a kept record, as sent, before their values are checked.
struct SentRecord<'a> {
    kind: EventKind,
    event_name: &'a str,
    event_source: &'a str,
    event_time: &'a str,
    bucket: &'a str,
    key: &'a str,
    version_id: &'a str,
    sequencer: &'a str,
    etag: &'a str,
    size: u64,
}

impl SentRecord<'_> {
    /// Checks the values; an error names the field (below `Records[i].`).
    fn into_event(self) -> Result<ObjectEvent, (&'static str, String)> {
        const KEY: &str = "s3.object.key";
        if self.bucket.is_empty() {
            return Err(("s3.bucket.name", "empty".into()));
        }
        let key = if self.event_source == "ceph:s3" {
            self.key.to_owned()
        } else {
            form_decode(self.key).map_err(|problem| (KEY, problem.into()))?
        };
        if key.is_empty() {
            return Err((KEY, "empty".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err((KEY, format!("longer than {MAX_KEY_BYTES} bytes")));
        }
        if !self.sequencer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(("s3.object.sequencer", "not a hex string".into()));
        }
        Ok(ObjectEvent {
            bucket: self.bucket.to_owned(),
            key,
            kind: self.kind,
            event_name: self.event_name.to_owned(),
            version_id: self.version_id.to_owned(),
            sequencer: self.sequencer.to_owned(),
            etag: self.etag.to_owned(),
            size: self.size,
            event_time: self.event_time.to_owned(),
        })
    }
}

/// A field of record `i` at a dotted path: methods look its last segment up
/// in the map they are given; the full path is formatted only on error.
#[derive(Clone, Copy)]
struct Field {
    i: usize,
    path: &'static str,
}

impl Field {
    fn error(self, problem: impl Into<String>) -> EventParseError {
        invalid(format!("Records[{}].{}", self.i, self.path), problem)
    }

    /// Present and not null.
    fn get(self, map: &Map<String, Value>) -> Option<&Value> {
        let name = self.path.rsplit('.').next().unwrap_or(self.path);
        map.get(name).filter(|v| !v.is_null())
    }

    fn object(self, map: &Map<String, Value>) -> Result<&Map<String, Value>, EventParseError> {
        match self.get(map) {
            Some(Value::Object(inner)) => Ok(inner),
            Some(_) => Err(self.error("not an object")),
            None => Err(self.error("missing")),
        }
    }

    fn required_str(self, map: &Map<String, Value>) -> Result<&str, EventParseError> {
        match self.get(map) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.error("not a string")),
            None => Err(self.error("missing")),
        }
    }

    /// "" when absent or null.
    fn optional_str(self, map: &Map<String, Value>) -> Result<&str, EventParseError> {
        match self.get(map) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.error("not a string")),
            None => Ok(""),
        }
    }

    /// A non-negative integer; 0 when absent. Ceph's docs show it as a
    /// string of digits, so that is taken too.
    fn size(self, map: &Map<String, Value>) -> Result<u64, EventParseError> {
        let parsed = match self.get(map) {
            None => Some(0),
            Some(Value::Number(n)) => n.as_u64(),
            // `u64::from_str` would also take a leading '+'.
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            Some(_) => None,
        };
        parsed.ok_or_else(|| self.error("not a non-negative integer"))
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, then
/// `%XX` a byte; the bytes must be UTF-8.
fn form_decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("bad %-escape"),
                }
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once URL-decoded")
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Orders two sequencers of the same key (they mean nothing across keys).
///
/// AWS documents the rule: sequencers may differ in length, so the shorter
/// is right-padded with zeros, then the two compare lexicographically
/// (here case-insensitively): "A" == "A00", "FF" > "100". Equal lengths
/// compare as hex numbers.
///
/// Ceph RGW's sequencer is its clock's raw little-endian bytes in hex, so
/// its order does not follow time; only AWS's and MinIO's (the event time
/// in nanoseconds, in hex) do.
pub fn cmp_sequencers(a: &str, b: &str) -> Ordering {
    fn padded(s: &str, width: usize) -> impl Iterator<Item = u8> + '_ {
        s.bytes()
            .map(|c| c.to_ascii_uppercase())
            .chain(std::iter::repeat(b'0'))
            .take(width)
    }
    let width = a.len().max(b.len());
    padded(a, width).cmp(padded(b, width))
}

#[cfg(test)]
mod tests;
