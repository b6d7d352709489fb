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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const AWS_PUT: &str = include_str!("../../tests/fixtures/events/aws-put.json");
    const AWS_DELETE_MARKER: &str =
        include_str!("../../tests/fixtures/events/aws-delete-marker.json");
    const AWS_TEST_EVENT: &str = include_str!("../../tests/fixtures/events/aws-test-event.json");
    const MINIO_PUT: &str = include_str!("../../tests/fixtures/events/minio-put.json");
    const MINIO_DELETE: &str = include_str!("../../tests/fixtures/events/minio-delete.json");
    const CEPH_PUT: &str = include_str!("../../tests/fixtures/events/ceph-put.json");
    const CEPH_DELETE: &str = include_str!("../../tests/fixtures/events/ceph-delete.json");
    const MULTI_RECORDS: &str = include_str!("../../tests/fixtures/events/multi-records.json");
    const FIXTURES: [&str; 8] = [
        AWS_PUT,
        AWS_DELETE_MARKER,
        AWS_TEST_EVENT,
        MINIO_PUT,
        MINIO_DELETE,
        CEPH_PUT,
        CEPH_DELETE,
        MULTI_RECORDS,
    ];

    fn parse_one(body: &str) -> ObjectEvent {
        let mut events = parse_events(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        events.remove(0)
    }

    fn error_of(body: &str) -> String {
        parse_events(body.as_bytes()).unwrap_err().to_string()
    }

    /// A body of one record of `event_name` whose `s3.object` is `object`.
    fn body_with(event_name: &str, object: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventName":"{event_name}","eventTime":"t",
                "s3":{{"bucket":{{"name":"b"}},"object":{object}}}}}]}}"#
        )
    }

    #[test]
    fn aws_put_decodes_the_key() {
        assert_eq!(
            parse_one(AWS_PUT),
            ObjectEvent {
                bucket: "ferry-photos".into(),
                key: "albums/2024/beach day (1) café+.jpg".into(),
                kind: EventKind::Created,
                event_name: "ObjectCreated:Put".into(),
                version_id: "3HL4kqtJvjVBH40Nrjfkd7yAjFq8.Hpq".into(),
                sequencer: "0065F80B47A1C2D3E4".into(),
                etag: "9b2cf535f27731c974343645a3985328".into(),
                size: 2_874_113,
                event_time: "2024-03-18T09:41:27.512Z".into(),
            }
        );
    }

    #[test]
    fn aws_delete_marker_is_a_removal_without_etag_or_size() {
        assert_eq!(
            parse_one(AWS_DELETE_MARKER),
            ObjectEvent {
                bucket: "ferry-photos".into(),
                key: "albums/2023/old cover.png".into(),
                kind: EventKind::Removed,
                event_name: "ObjectRemoved:DeleteMarkerCreated".into(),
                version_id: "w9qTz2mB.Xr4Kd7PnL1sYc8Hv0Gf3Ja5".into(),
                sequencer: "0065F80F2B9E1A7C50".into(),
                etag: String::new(),
                size: 0,
                event_time: "2024-03-18T09:58:03.207Z".into(),
            }
        );
    }

    #[test]
    fn the_typed_path_takes_what_servers_usually_send() {
        for body in [
            AWS_PUT,
            AWS_DELETE_MARKER,
            MINIO_PUT,
            MINIO_DELETE,
            MULTI_RECORDS,
        ] {
            let typed = typed::parse(body.as_bytes());
            assert!(matches!(&typed, Some(Ok(e)) if !e.is_empty()), "{body}");
            assert_eq!(typed, Some(parse_general(body.as_bytes())));
        }
        // Sizes as strings (old Ceph RGW) and test events: the general path.
        assert_eq!(typed::parse(CEPH_DELETE.as_bytes()), None);
        assert_eq!(typed::parse(AWS_TEST_EVENT.as_bytes()), None);
    }

    #[test]
    fn aws_test_event_holds_no_events() {
        assert_eq!(parse_events(AWS_TEST_EVENT.as_bytes()), Ok(Vec::new()));
    }

    #[test]
    fn minio_put_and_delete_decode_escaped_slashes() {
        assert_eq!(
            parse_one(MINIO_PUT),
            ObjectEvent {
                bucket: "backups".into(),
                key: "reports/2024/Q1 summary.pdf".into(),
                kind: EventKind::Created,
                event_name: "s3:ObjectCreated:Put".into(),
                version_id: String::new(),
                sequencer: "17BDC9A1E5F4B810".into(),
                etag: "4c2f8a0d1e6b3957a8c0f2d4e6b81937".into(),
                size: 48_213,
                event_time: "2024-03-18T10:02:44.913Z".into(),
            }
        );
        assert_eq!(
            parse_one(MINIO_DELETE),
            ObjectEvent {
                bucket: "backups".into(),
                key: "reports/2023/draft.txt".into(),
                kind: EventKind::Removed,
                event_name: "s3:ObjectRemoved:Delete".into(),
                version_id: "a1d7c3e9-52f0-4b86-9e1a-7c3d5f8b2e40".into(),
                sequencer: "17BDC9E6A0315C22".into(),
                etag: String::new(),
                size: 0,
                event_time: "2024-03-18T10:07:19.046Z".into(),
            }
        );
    }

    #[test]
    fn ceph_keys_are_taken_raw() {
        assert_eq!(
            parse_one(CEPH_PUT),
            ObjectEvent {
                bucket: "media".into(),
                key: "shows/s01/e01 pilot+extras 100%.mkv".into(),
                kind: EventKind::Created,
                event_name: "ObjectCreated:CompleteMultipartUpload".into(),
                version_id: String::new(),
                sequencer: "3D22F86588D1F717".into(),
                etag: "c8d1f6a2b9e04731d5a8f3c6e2b70914-5".into(),
                size: 73_400_320,
                event_time: "2024-03-18T11:15:09.402117Z".into(),
            }
        );
        // Older RGW: "s3:" prefix, "etag", size as a string.
        assert_eq!(
            parse_one(CEPH_DELETE),
            ObjectEvent {
                bucket: "media".into(),
                key: "shows/s01/trailer.mp4".into(),
                kind: EventKind::Removed,
                event_name: "s3:ObjectRemoved:Delete".into(),
                version_id: String::new(),
                sequencer: "8923F8659838E634".into(),
                etag: String::new(),
                size: 0,
                event_time: "2024-03-18T11:20:41.887503Z".into(),
            }
        );
    }

    #[test]
    fn multi_records_keep_their_order() {
        let events = parse_events(MULTI_RECORDS.as_bytes()).unwrap();
        let summary: Vec<_> = events
            .iter()
            .map(|e| (e.key.as_str(), e.kind.clone(), e.size))
            .collect();
        assert_eq!(
            summary,
            [
                ("2024/03/day-19.csv", EventKind::Created, 1200),
                ("latest.csv", EventKind::Created, 1200),
                ("2024/03/day-19.csv", EventKind::Removed, 0),
            ]
        );
        assert!(events.iter().all(|e| e.bucket == "ledger"));
        assert!(cmp_sequencers(&events[0].sequencer, &events[2].sequencer).is_lt());
    }

    #[test]
    fn other_events_are_skipped_and_lifecycle_deletes_kept() {
        let record = |name: &str, rest: &str| format!(r#"{{"eventName":"{name}"{rest}}}"#);
        let s3 = r#","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}"#;
        let records = [
            // Skipped ones need nothing but their name.
            record("ObjectRestore:Completed", ""),
            record("s3:Replication:OperationFailedReplication", ""),
            record("ObjectTagging:Put", s3),
            record("s3:ObjectAccessed:Get", s3),
            record("ObjectLifecycle:Transition:Current", s3),
            record("LifecycleExpiration:Delete", s3),
            record("s3:LifecycleExpiration:DeleteMarkerCreated", s3),
            record("ObjectLifecycle:Expiration:NonCurrent", s3),
            record("s3:ObjectLifecycle:Expiration:DeleteMarker", s3),
        ];
        let body = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let events = parse_events(body.as_bytes()).unwrap();
        let names: Vec<_> = events.iter().map(|e| e.event_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "LifecycleExpiration:Delete",
                "s3:LifecycleExpiration:DeleteMarkerCreated",
                "ObjectLifecycle:Expiration:NonCurrent",
                "s3:ObjectLifecycle:Expiration:DeleteMarker",
            ]
        );
        assert!(events.iter().all(|e| e.kind == EventKind::Removed));
        assert_eq!(parse_events(br#"{"Records":[]}"#), Ok(Vec::new()));
    }

    #[test]
    fn malformed_bodies_name_what_is_wrong() {
        let put = "ObjectCreated:Put";
        assert!(error_of("not json").starts_with("body is not JSON: "));
        assert!(error_of("").starts_with("body is not JSON: "));
        assert_eq!(error_of("[]"), "body: not a JSON object");
        assert_eq!(error_of("{}"), "Records: missing");
        assert_eq!(error_of(r#"{"Event":"s3:Other"}"#), "Records: missing");
        assert_eq!(error_of(r#"{"Records":{}}"#), "Records: not an array");
        assert_eq!(error_of(r#"{"Records":[1]}"#), "Records[0]: not an object");
        assert_eq!(
            error_of(r#"{"Records":[{}]}"#),
            "Records[0].eventName: missing"
        );
        assert_eq!(
            error_of(r#"{"Records":[{"eventName":5}]}"#),
            "Records[0].eventName: not a string"
        );
        assert_eq!(
            error_of(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#),
            "Records[0].s3: missing"
        );
        assert_eq!(
            error_of(
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}"#
            ),
            "Records[0].s3.bucket: missing"
        );
        assert_eq!(
            error_of(
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{},"object":{"key":"k"}}}]}"#
            ),
            "Records[0].s3.bucket.name: missing"
        );
        assert_eq!(
            error_of(
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#
            ),
            "Records[0].s3.bucket.name: empty"
        );
        // The index is that of the bad record.
        let good = r#"{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}"#;
        let no_key =
            r#"{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{}}}"#;
        assert_eq!(
            error_of(&format!(r#"{{"Records":[{good},{good},{good},{no_key}]}}"#)),
            "Records[3].s3.object.key: missing"
        );
        let cases = [
            (r#"{"key":7}"#, "s3.object.key: not a string"),
            (r#"{"key":""}"#, "s3.object.key: empty"),
            (
                r#"{"key":"%FF%FE"}"#,
                "s3.object.key: not UTF-8 once URL-decoded",
            ),
            (r#"{"key":"a%2"}"#, "s3.object.key: bad %-escape"),
            (r#"{"key":"a%zz"}"#, "s3.object.key: bad %-escape"),
            (
                r#"{"key":"k","size":"big"}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","size":-1}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","size":1.5}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","size":"+5"}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","size":true}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","size":18446744073709551616}"#,
                "s3.object.size: not a non-negative integer",
            ),
            (
                r#"{"key":"k","sequencer":"00XY"}"#,
                "s3.object.sequencer: not a hex string",
            ),
            (
                r#"{"key":"k","versionId":5}"#,
                "s3.object.versionId: not a string",
            ),
            (r#"{"key":"k","eTag":[]}"#, "s3.object.eTag: not a string"),
            ("[]", "s3.object: not an object"),
        ];
        for (object, expected) in cases {
            assert_eq!(
                error_of(&body_with(put, object)),
                format!("Records[0].{expected}"),
                "{object}"
            );
        }
    }

    #[test]
    fn key_length_is_checked_after_decoding() {
        let long = "a".repeat(MAX_KEY_BYTES);
        assert_eq!(
            parse_one(&body_with(
                "ObjectCreated:Put",
                &format!(r#"{{"key":"{long}"}}"#)
            ))
            .key,
            long
        );
        // 3 KiB encoded, 1 KiB decoded: fine.
        let escaped = "%61".repeat(MAX_KEY_BYTES);
        assert_eq!(
            parse_one(&body_with(
                "ObjectCreated:Put",
                &format!(r#"{{"key":"{escaped}"}}"#)
            ))
            .key,
            long
        );
        assert_eq!(
            error_of(&body_with(
                "ObjectCreated:Put",
                &format!(r#"{{"key":"{long}b"}}"#)
            )),
            "Records[0].s3.object.key: longer than 1024 bytes"
        );
    }

    #[test]
    fn lenient_where_servers_differ() {
        let event = parse_one(&body_with(
            "ObjectCreated:Put",
            r#"{"key":"k","size":"1024","versionId":null,"sequencer":"00ab","etag":"e"}"#,
        ));
        assert_eq!(
            (event.size, event.version_id.as_str(), event.etag.as_str()),
            (1024, "", "e")
        );
        // Top-level MinIO fields and unknown ones anywhere are ignored.
        let event = parse_one(
            r#"{"EventName":"x","Key":"y","Extra":{"a":[1]},"Records":[{"eventName":"s3:ObjectCreated:Copy",
               "new":true,"s3":{"bucket":{"name":"b","id":"i"},"object":{"key":"k+1","tags":[]}}}]}"#,
        );
        assert_eq!((event.key.as_str(), event.event_time.as_str()), ("k 1", ""));
    }

    #[test]
    fn limits_are_enforced() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_events(&big).unwrap_err().to_string(),
            format!("body larger than {MAX_BODY_BYTES} bytes")
        );
        let many = format!(
            r#"{{"Records":[{}]}}"#,
            vec!["{}"; MAX_RECORDS + 1].join(",")
        );
        assert_eq!(error_of(&many), "Records: more than 10000 records");
        // At the limit, skipped records cost nothing.
        let skipped = r#"{"eventName":"s3:TestEvent"}"#;
        let ok = format!(
            r#"{{"Records":[{}]}}"#,
            vec![skipped; MAX_RECORDS].join(",")
        );
        assert_eq!(parse_events(ok.as_bytes()), Ok(Vec::new()));
    }

    #[test]
    fn sequencers_compare_as_aws_documents() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("0055AED6DCD90281E5", "0055AED6DCD90281E6", Less),
            ("0055AED6DCD90281E6", "0055AED6DCD90281E5", Greater),
            ("0055aed6dcd90281e5", "0055AED6DCD90281E5", Equal),
            ("0055aed6dcd90281e5", "0055AED6DCD90281E6", Less),
            // Different lengths: the shorter is right-padded with zeros.
            ("A", "A00", Equal),
            ("00A", "A", Less),
            ("FF", "100", Greater),
            ("0055AED6DCD90281E5", "0055AED6DCD90281E501", Less),
            ("", "", Equal),
            ("", "0", Equal),
            ("", "1", Less),
        ];
        for (a, b, expected) in cases {
            assert_eq!(cmp_sequencers(a, b), expected, "{a} vs {b}");
            assert_eq!(cmp_sequencers(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    /// xorshift64*: reproducible bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap()
        }
    }

    #[test]
    fn never_panics_on_random_truncated_or_mutated_input() {
        let check = |body: &[u8]| {
            let parsed = parse_events(body);
            // Errors must format too.
            if let Err(e) = &parsed {
                let _ = e.to_string();
            }
            // The typed path decides as the general one, except that it
            // does not decode the \u escapes of fields it skips.
            let general = parse_general(body);
            match (&parsed, &general) {
                (Ok(_), Err(EventParseError::NotJson(_))) => {
                    assert!(body.windows(2).any(|w| w == b"\\u"), "{general:?}");
                }
                _ => assert_eq!(parsed, general, "{}", String::from_utf8_lossy(body)),
            }
        };
        let mut rng = Rng(0x5EED_F00D_CAFE_B0BA);
        for _ in 0..2000 {
            let len = rng.below(400);
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check(&body);
        }
        // Bytes that steer the JSON and key decoders into their odd corners.
        let interesting = b"{}[]\",:%+-.0123456789eEaAfF\\u \x00\xff\xc3";
        for fixture in FIXTURES {
            let bytes = fixture.as_bytes();
            for end in 0..=bytes.len() {
                check(&bytes[..end]);
            }
            for _ in 0..300 {
                let mut body = bytes.to_vec();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(body.len());
                    body[at] = interesting[rng.below(interesting.len())];
                }
                check(&body);
            }
        }
    }
}
