//! Journal segments: one object per commit, in the newest pool before the
//! commit is acknowledged.
//!
//! Layout, sealed (see [`super::seal`]) with magic `FERRYSG2` (`FERRYSG1`,
//! read still, is the same without the MAC):
//!
//! ```text
//! tenant name | bucket name | site name          (length u8, bytes)
//! seq u64 | time_unix_ms i64 | kind u8 (0 batch, 1 snapshot)
//! files u64 | bytes u64
//! manifest         count u32 | ids [32]...
//! reference_parts  count u32 | hashes [32]...   (refs objects, see super::refs)
//! references       count u32 | ids [32]...      (the rest, inline)
//! body             len u32 | bytes               (the agent's, encrypted)
//! mac              len u32 | 0 or 32 bytes       (the agent's commit MAC)
//! parent_mac       len u32 | 0 or 32 bytes       (the MAC of the commit before,
//!                                                 as the catalog had it)
//! ```
//!
//! Everything but the body is plaintext, so the hub (which holds no key)
//! can rebuild the journal and, later, tell which chunks a commit reaches.
//!
//! The object name is `journal/<tenant>/<bucket>/<seq, 20 digits>-<hash>.seg`
//! where `<hash>` is the start of the record's BLAKE3: a name is never
//! reused for other bytes. A sequence number may have more than one
//! segment: an append whose catalog transaction failed after its segment
//! was written leaves one, and the next append at that number writes its
//! own. Appends to a bucket are serialized by the catalog, so of several
//! segments of one number the one the next commit names as its parent is
//! the one that committed; for the newest number, the latest written (the
//! latest time).

use ferry_proto::BlobId;

use super::codec::{Decoder, Encoder};
use super::{RecordError, seal, short_hash, unseal};
use crate::catalog::CommitKind;

const MAGIC: &[u8; 8] = b"FERRYSG2";
/// Segments written before commits carried a MAC.
const MAGIC_V1: &[u8; 8] = b"FERRYSG1";
const RECORD: &str = "journal segment";

/// One commit as the pools keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub tenant: String,
    pub bucket: String,
    /// The site that made the commit.
    pub site: String,
    pub seq: u64,
    pub time_unix_ms: i64,
    pub kind: CommitKind,
    pub files: u64,
    pub bytes: u64,
    /// The chunks of the commit's encrypted manifest, in order.
    pub manifest: Vec<BlobId>,
    /// The hashes of the refs objects holding the data chunk ids the commit
    /// references (parts checked before the commit).
    pub reference_parts: Vec<[u8; 32]>,
    /// The data chunk ids the commit references that are in no part.
    pub references: Vec<BlobId>,
    /// Opaque bytes from the agent (encrypted).
    pub body: Vec<u8>,
    /// The agent's MAC of the commit (`None` in a first-version segment).
    pub mac: Option<[u8; 32]>,
    /// The MAC of the commit before this one when this one was appended
    /// (`None` for a first commit, one without a MAC, or a first-version
    /// segment): it tells which of several segments of that number
    /// committed.
    pub parent_mac: Option<[u8; 32]>,
}

/// Where the segments of one bucket live: `journal/<tenant>/<bucket>/`.
pub fn bucket_prefix(tenant: &str, bucket: &str) -> String {
    format!("journal/{tenant}/{bucket}/")
}

/// The prefix under which every segment lives.
pub const PREFIX: &str = "journal/";

impl Segment {
    /// The sealed bytes and the object name they go under.
    ///
    /// # Errors
    ///
    /// `BadName` for a name outside the catalog's rules, `TooLong` for a
    /// list longer than a `u32` counts.
    pub fn encode(&self) -> Result<(String, Vec<u8>), RecordError> {
        let ids = self.manifest.len() + self.references.len() + self.reference_parts.len();
        let mut e = Encoder::new(RECORD, 256 + ids * 32 + self.body.len());
        e.name("tenant", &self.tenant)?;
        e.name("bucket", &self.bucket)?;
        e.name("site", &self.site)?;
        e.u64(self.seq);
        e.i64(self.time_unix_ms);
        e.u8(match self.kind {
            CommitKind::Batch => 0,
            CommitKind::Snapshot => 1,
        });
        e.u64(self.files);
        e.u64(self.bytes);
        e.ids("manifest", &self.manifest)?;
        e.hashes("reference_parts", &self.reference_parts)?;
        e.ids("references", &self.references)?;
        e.bytes("body", &self.body)?;
        e.bytes("mac", self.mac.as_ref().map_or(&[][..], |m| &m[..]))?;
        e.bytes(
            "parent_mac",
            self.parent_mac.as_ref().map_or(&[][..], |m| &m[..]),
        )?;
        let bytes = seal(MAGIC, &e.finish());
        let name = format!(
            "{}{:020}-{}.seg",
            bucket_prefix(&self.tenant, &self.bucket),
            self.seq,
            short_hash(&bytes)
        );
        Ok((name, bytes))
    }

    /// Decodes and verifies a segment.
    ///
    /// # Errors
    ///
    /// A [`RecordError`] naming what is wrong. Never panics, whatever the
    /// bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (payload, signed) = match unseal(RECORD, MAGIC, bytes) {
            Ok(payload) => (payload, true),
            Err(e) => match unseal(RECORD, MAGIC_V1, bytes) {
                Ok(payload) => (payload, false),
                Err(_) => return Err(e),
            },
        };
        let mut d = Decoder::new(RECORD, payload);
        let tenant = d.name("tenant")?;
        let bucket = d.name("bucket")?;
        let site = d.name("site")?;
        let seq = d.u64("seq")?;
        let time_unix_ms = d.i64("time_unix_ms")?;
        let kind = match d.u8("kind")? {
            0 => CommitKind::Batch,
            1 => CommitKind::Snapshot,
            other => return Err(d.bad_value("kind", u64::from(other))),
        };
        let mut segment = Self {
            tenant,
            bucket,
            site,
            seq,
            time_unix_ms,
            kind,
            files: d.u64("files")?,
            bytes: d.u64("bytes")?,
            manifest: d.ids("manifest")?,
            reference_parts: d.hashes("reference_parts")?,
            references: d.ids("references")?,
            body: d.bytes("body")?,
            mac: None,
            parent_mac: None,
        };
        if signed {
            segment.mac = optional_mac(&mut d, "mac")?;
            segment.parent_mac = optional_mac(&mut d, "parent_mac")?;
        }
        d.finish()?;
        if segment.seq == 0 {
            return Err(RecordError::BadValue {
                record: RECORD,
                field: "seq",
                value: 0,
            });
        }
        Ok(segment)
    }
}

/// A MAC field: empty for none, else 32 bytes.
fn optional_mac(d: &mut Decoder<'_>, field: &'static str) -> Result<Option<[u8; 32]>, RecordError> {
    let bytes = d.bytes(field)?;
    match bytes.len() {
        0 => Ok(None),
        n => <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| d.bad_value(field, n as u64)),
    }
}

/// What a segment's object name says: tenant, bucket and sequence number.
/// `None` for a name that is not a segment's.
pub fn parse_name(name: &str) -> Option<(&str, &str, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.split('/');
    let (tenant, bucket, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (seq, _) = file.strip_suffix(".seg")?.split_once('-')?;
    Some((tenant, bucket, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Segment {
        Segment {
            tenant: "acme".into(),
            bucket: "docs".into(),
            site: "site-a".into(),
            seq: 7,
            time_unix_ms: 1_700_000_000_123,
            kind: CommitKind::Snapshot,
            files: 3,
            bytes: 4096,
            manifest: vec![BlobId([1; 32]), BlobId([2; 32])],
            reference_parts: vec![[9; 32]],
            references: vec![BlobId([3; 32])],
            body: b"ciphertext".to_vec(),
            mac: Some([5; 32]),
            parent_mac: Some([4; 32]),
        }
    }

    #[test]
    fn round_trips_and_the_name_says_where_it_belongs() {
        let segment = sample();
        let (name, bytes) = segment.encode().unwrap();
        assert_eq!(Segment::decode(&bytes).unwrap(), segment);
        assert!(
            name.starts_with("journal/acme/docs/00000000000000000007-"),
            "{name}"
        );
        assert_eq!(parse_name(&name), Some(("acme", "docs", 7)));
        crate::blobstore::validate_name(&name).unwrap();
        // Other bytes, another name.
        let (other, _) = Segment {
            body: b"other".to_vec(),
            ..segment
        }
        .encode()
        .unwrap();
        assert_ne!(name, other);
    }

    /// A segment as the first version wrote it: no MAC field.
    #[test]
    fn a_first_version_segment_reads_without_a_mac() {
        let segment = Segment {
            mac: None,
            parent_mac: None,
            ..sample()
        };
        let mut e = Encoder::new(RECORD, 512);
        e.name("tenant", &segment.tenant).unwrap();
        e.name("bucket", &segment.bucket).unwrap();
        e.name("site", &segment.site).unwrap();
        e.u64(segment.seq);
        e.i64(segment.time_unix_ms);
        e.u8(1);
        e.u64(segment.files);
        e.u64(segment.bytes);
        e.ids("manifest", &segment.manifest).unwrap();
        e.hashes("reference_parts", &segment.reference_parts)
            .unwrap();
        e.ids("references", &segment.references).unwrap();
        e.bytes("body", &segment.body).unwrap();
        let v1 = seal(MAGIC_V1, &e.finish());
        assert_eq!(Segment::decode(&v1).unwrap(), segment);
        // And a second-version one without a MAC round-trips as such.
        let (_, v2) = segment.encode().unwrap();
        assert_eq!(Segment::decode(&v2).unwrap(), segment);
        // A MAC of another length is refused.
        let mut bad = sample();
        bad.parent_mac = None;
        let (_, bytes) = bad.encode().unwrap();
        let mut payload = unseal(RECORD, MAGIC, &bytes).unwrap().to_vec();
        payload.truncate(payload.len() - 4);
        payload.extend_from_slice(&3u32.to_le_bytes());
        payload.extend_from_slice(b"abc");
        assert!(Segment::decode(&seal(MAGIC, &payload)).is_err());
    }

    #[test]
    fn damage_is_refused_not_misread() {
        let (_, bytes) = sample().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(Segment::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x04;
            assert!(Segment::decode(&bad).is_err(), "flip at {pos}");
        }
    }

    #[test]
    fn a_bad_name_is_refused_on_the_way_in() {
        let err = Segment {
            bucket: "Docs".into(),
            ..sample()
        }
        .encode()
        .unwrap_err();
        assert!(matches!(
            err,
            RecordError::BadName {
                field: "bucket",
                ..
            }
        ));
    }

    #[test]
    fn names_that_are_not_segments_are_not_parsed() {
        for name in [
            "packs/ab/ab.pack",
            "journal/acme/docs",
            "journal/acme/docs/x-1.seg",
            "journal/acme/docs/7-ab.seg/x",
            "journal/acme/docs/7.seg",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }
}
