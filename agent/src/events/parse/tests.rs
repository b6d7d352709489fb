//! The event parser against providers' real notification bodies.

#![allow(clippy::unwrap_used)]
use super::*;

const AWS_PUT: &str = include_str!("../../../tests/fixtures/events/aws-put.json");
const AWS_DELETE_MARKER: &str =
    include_str!("../../../tests/fixtures/events/aws-delete-marker.json");
const AWS_TEST_EVENT: &str = include_str!("../../../tests/fixtures/events/aws-test-event.json");
const MINIO_PUT: &str = include_str!("../../../tests/fixtures/events/minio-put.json");
const MINIO_DELETE: &str = include_str!("../../../tests/fixtures/events/minio-delete.json");
const CEPH_PUT: &str = include_str!("../../../tests/fixtures/events/ceph-put.json");
const CEPH_DELETE: &str = include_str!("../../../tests/fixtures/events/ceph-delete.json");
const MULTI_RECORDS: &str = include_str!("../../../tests/fixtures/events/multi-records.json");
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
        error_of(r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}"#),
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
    let good =
        r#"{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}"#;
    let no_key = r#"{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{}}}"#;
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
