//! The snapshot manifest stream: a magic, then length-delimited
//! `ManifestEntry` messages in tree order (see [`cmp_paths`]). Encoded by the agent,
//! chunked and encrypted like data; decoded incrementally on restore, so a
//! manifest of millions of entries never has to sit in memory at once.

use prost::Message;

use crate::ids::ID_LEN;
use crate::v1::{EntryType, ManifestEntry};

/// First bytes of every manifest stream; the digit is the format version.
pub const MANIFEST_MAGIC: &[u8; 8] = b"FERRYMF1";

/// Largest encoded entry accepted (a file of about 1.9 M chunks).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest: does not start with the magic {MANIFEST_MAGIC:?}")]
    BadMagic,
    #[error("manifest entry {index}: length {len} exceeds the limit of {MAX_ENTRY_BYTES} bytes")]
    TooLarge { index: u64, len: u64 },
    #[error("manifest entry {index}: undecodable: {reason}")]
    Decode { index: u64, reason: String },
    #[error("manifest entry {index} ({path}): {reason}")]
    Invalid {
        index: u64,
        path: String,
        reason: &'static str,
    },
    #[error("manifest: stream ends inside entry {index}")]
    Truncated { index: u64 },
}

/// Appends the encoding of `entry` to `out` (after [`MANIFEST_MAGIC`] once).
pub fn encode_entry(entry: &ManifestEntry, out: &mut Vec<u8>) {
    // Encoding into a Vec cannot run out of space.
    let _ = entry.encode_length_delimited(out);
}

/// Tree order: paths compared component by component, each component by its
/// bytes. It is the order of a depth-first walk that visits a directory's
/// children sorted by name, so a walker can emit entries as it goes.
pub fn cmp_paths(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.split(|c| *c == b'/').cmp(b.split(|c| *c == b'/'))
}

/// Longest object key accepted (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks an object key: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 (S3's rule).
/// Keys are names in a flat namespace, so `a//b` or `../x` are fine here;
/// only a restore into a directory needs more (see [`check_relative_path`]).
pub fn check_object_key(key: &[u8]) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty object key");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("object key longer than 1024 bytes");
    }
    if std::str::from_utf8(key).is_err() {
        return Err("object key is not UTF-8");
    }
    Ok(())
}

/// Checks a relative path: non-empty, '/'-separated, no empty, `.` or `..`
/// component, no NUL. Restores write only below their target because of this.
pub fn check_relative_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.contains(&0) {
        return Err("path contains a NUL byte");
    }
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" => return Err("path has an empty component or a leading/trailing '/'"),
            b"." | b".." => return Err("path has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Where a file's bytes lie: its holes (sparse files) and, between them,
/// the data its chunks hold, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// (offset, length), sorted, apart and non-empty.
    pub holes: Vec<(u64, u64)>,
    pub size: u64,
}

impl Layout {
    /// The layout `entry` gives.
    ///
    /// # Errors
    ///
    /// A reason if the holes are not (offset, length) pairs, sorted, apart,
    /// non-empty and within the size.
    pub fn of(entry: &ManifestEntry) -> Result<Self, &'static str> {
        if !entry.holes.len().is_multiple_of(2) {
            return Err("holes are not (offset, length) pairs");
        }
        let mut holes = Vec::with_capacity(entry.holes.len() / 2);
        let mut end = 0u64;
        for pair in entry.holes.chunks_exact(2) {
            let (offset, len) = (pair[0], pair[1]);
            let hole_end = offset.checked_add(len).ok_or("a hole ends past 2^64")?;
            if len == 0 || offset < end || (end > 0 && offset == end) || hole_end > entry.size {
                return Err("holes are not sorted, apart, non-empty and within the size");
            }
            holes.push((offset, len));
            end = hole_end;
        }
        Ok(Self {
            holes,
            size: entry.size,
        })
    }

    /// The bytes the chunks hold: the size less the holes.
    pub fn data_bytes(&self) -> u64 {
        self.size - self.holes.iter().map(|(_, len)| len).sum::<u64>()
    }

    /// The (offset, length) ranges between the holes, in order.
    pub fn data(&self) -> Vec<(u64, u64)> {
        let mut data = Vec::with_capacity(self.holes.len() + 1);
        let mut at = 0;
        for (offset, len) in &self.holes {
            if *offset > at {
                data.push((at, offset - at));
            }
            at = offset + len;
        }
        if self.size > at {
            data.push((at, self.size - at));
        }
        data
    }
}

/// Incremental decoder: push stream bytes as they arrive, pull entries out.
/// Checks order and shape of every entry; never panics on any input.
#[derive(Default)]
pub struct ManifestDecoder {
    buf: Vec<u8>,
    pos: usize,
    magic_seen: bool,
    index: u64,
    last_path: Option<Vec<u8>>,
    /// Set by the first entry: whether this manifest holds objects.
    objects: Option<bool>,
}

impl ManifestDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete entry, or `None` if more bytes are needed.
    pub fn next_entry(&mut self) -> Result<Option<ManifestEntry>, ManifestError> {
        if !self.magic_seen {
            if self.buf.len() - self.pos < MANIFEST_MAGIC.len() {
                return Ok(None);
            }
            if &self.buf[self.pos..self.pos + MANIFEST_MAGIC.len()] != MANIFEST_MAGIC {
                return Err(ManifestError::BadMagic);
            }
            self.pos += MANIFEST_MAGIC.len();
            self.magic_seen = true;
        }
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        let mut cursor = rest;
        let len = match prost::encoding::decode_varint(&mut cursor) {
            Ok(len) => len,
            // A varint is at most 10 bytes: shorter means it may still be arriving.
            Err(_) if rest.len() < 10 => return Ok(None),
            Err(e) => {
                return Err(ManifestError::Decode {
                    index: self.index,
                    reason: e.to_string(),
                });
            }
        };
        if len > MAX_ENTRY_BYTES as u64 {
            return Err(ManifestError::TooLarge {
                index: self.index,
                len,
            });
        }
        let header = rest.len() - cursor.len();
        let len = len as usize;
        if cursor.len() < len {
            return Ok(None);
        }
        let entry = ManifestEntry::decode(&cursor[..len]).map_err(|e| ManifestError::Decode {
            index: self.index,
            reason: e.to_string(),
        })?;
        self.pos += header + len;
        self.check(&entry)?;
        self.objects = Some(entry.r#type == EntryType::Object as i32);
        self.index += 1;
        self.last_path = Some(entry.path.clone());
        Ok(Some(entry))
    }

    /// Call at the end of the stream: errors if bytes of a partial entry remain.
    pub fn finish(&self) -> Result<(), ManifestError> {
        if !self.magic_seen {
            return Err(ManifestError::BadMagic);
        }
        if self.pos < self.buf.len() {
            return Err(ManifestError::Truncated { index: self.index });
        }
        Ok(())
    }

    fn check(&self, entry: &ManifestEntry) -> Result<(), ManifestError> {
        let invalid = |reason| ManifestError::Invalid {
            index: self.index,
            path: String::from_utf8_lossy(&entry.path).into_owned(),
            reason,
        };
        let is_object = entry.r#type == EntryType::Object as i32;
        if self.objects.is_some_and(|objects| objects != is_object) {
            return Err(invalid("a manifest mixes objects with files"));
        }
        if is_object {
            check_object_key(&entry.path).map_err(invalid)?;
        } else {
            check_relative_path(&entry.path).map_err(invalid)?;
        }
        if let Some(last) = &self.last_path {
            let order = match is_object {
                true => entry.path.as_slice().cmp(last),
                false => cmp_paths(&entry.path, last),
            };
            if order.is_le() {
                return Err(invalid("entries are not sorted by path, or a path repeats"));
            }
        }
        match EntryType::try_from(entry.r#type) {
            Ok(EntryType::Object) => {
                if entry.chunks.iter().any(|c| c.len() != ID_LEN) {
                    return Err(invalid("a chunk id is not 32 bytes"));
                }
            }
            Ok(EntryType::File) => {
                if entry.chunks.iter().any(|c| c.len() != ID_LEN) {
                    return Err(invalid("a chunk id is not 32 bytes"));
                }
                Layout::of(entry).map_err(invalid)?;
                if !entry.hardlink_to.is_empty() {
                    check_relative_path(&entry.hardlink_to).map_err(invalid)?;
                    if cmp_paths(&entry.hardlink_to, &entry.path).is_ge() {
                        return Err(invalid("hard link points to a later entry"));
                    }
                }
            }
            Ok(
                EntryType::Dir | EntryType::Fifo | EntryType::CharDevice | EntryType::BlockDevice,
            ) => {
                if !entry.chunks.is_empty() {
                    return Err(invalid("an entry without content lists chunks"));
                }
            }
            Ok(EntryType::Symlink) => {
                if entry.symlink_target.is_empty() {
                    return Err(invalid("symlink without a target"));
                }
            }
            Ok(EntryType::Unspecified) | Err(_) => return Err(invalid("unknown entry type")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, chunks: usize) -> ManifestEntry {
        ManifestEntry {
            path: path.as_bytes().to_vec(),
            r#type: EntryType::File as i32,
            mode: 0o644,
            size: 10,
            chunks: vec![vec![7; 32]; chunks],
            ..Default::default()
        }
    }

    fn encode(entries: &[ManifestEntry]) -> Vec<u8> {
        let mut out = MANIFEST_MAGIC.to_vec();
        for e in entries {
            encode_entry(e, &mut out);
        }
        out
    }

    fn decode_all(bytes: &[u8], step: usize) -> Result<Vec<ManifestEntry>, ManifestError> {
        let mut dec = ManifestDecoder::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            dec.push(piece);
            while let Some(e) = dec.next_entry()? {
                out.push(e);
            }
        }
        dec.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip_in_any_piece_size() {
        let entries = vec![file("a", 1), file("a/b", 3), file("a.txt", 0), file("b", 0)];
        let bytes = encode(&entries);
        for step in [1, 2, 3, 7, 64, bytes.len()] {
            assert_eq!(decode_all(&bytes, step).unwrap(), entries);
        }
    }

    #[test]
    fn rejects_unsorted_and_bad_paths() {
        let err = decode_all(&encode(&[file("b", 0), file("a", 0)]), 100).unwrap_err();
        assert!(err.to_string().contains("not sorted"), "{err}");
        for bad in ["../x", "/abs", "a//b", "a/./b", "a/"] {
            let err = decode_all(&encode(&[file(bad, 0)]), 100).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{bad}: {err}");
        }
    }

    fn object(key: &str) -> ManifestEntry {
        ManifestEntry {
            r#type: EntryType::Object as i32,
            ..file(key, 1)
        }
    }

    #[test]
    fn objects_sort_by_key_bytes_and_keep_any_utf8_key() {
        // Byte order: "a-c" < "a/" < "a/b"; tree order would put "a/b" first.
        let entries = vec![
            object("/leading"),
            object("a-c"),
            object("a/"),
            object("a//b"),
            object("a/b"),
            object("caf\u{e9}/../x"),
        ];
        assert_eq!(decode_all(&encode(&entries), 3).unwrap(), entries);
        let err = decode_all(&encode(&[object("a/b"), object("a-c")]), 100).unwrap_err();
        assert!(err.to_string().contains("not sorted"), "{err}");
        let mixed = decode_all(&encode(&[file("a", 0), object("b")]), 100).unwrap_err();
        assert!(mixed.to_string().contains("mixes"), "{mixed}");
        let mut not_utf8 = object("x");
        not_utf8.path = vec![0xff, b'x'];
        let err = decode_all(&encode(&[not_utf8]), 100).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        let long = object(&"k".repeat(MAX_KEY_BYTES + 1));
        assert!(decode_all(&encode(&[long]), 100).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&[file("a", 2), file("c", 1)]);
        for cut in 0..bytes.len() {
            let result = decode_all(&bytes[..cut], 5);
            // Cutting exactly between entries yields a valid shorter manifest.
            if let Ok(entries) = result {
                assert!(entries.len() < 2, "cut {cut}");
            }
        }
        assert_eq!(
            decode_all(&bytes[..bytes.len() - 1], 5).unwrap_err(),
            ManifestError::Truncated { index: 1 }
        );
    }

    #[test]
    fn holes_must_be_sorted_pairs_within_the_size() {
        let with = |holes: Vec<u64>| {
            let mut entry = file("a", 1);
            entry.size = 100;
            entry.holes = holes;
            entry
        };
        let layout = Layout::of(&with(vec![0, 10, 50, 20])).unwrap();
        assert_eq!(layout.data_bytes(), 70);
        assert_eq!(layout.data(), [(10, 40), (70, 30)]);
        let tail = Layout::of(&with(vec![60, 40])).unwrap();
        assert_eq!(tail.data(), [(0, 60)]);
        assert_eq!(Layout::of(&with(vec![0, 100])).unwrap().data(), []);
        for bad in [
            vec![5],
            vec![0, 0],
            vec![50, 10, 10, 5],
            vec![0, 10, 10, 5],
            vec![90, 20],
            vec![u64::MAX, 2],
        ] {
            assert!(Layout::of(&with(bad.clone())).is_err(), "{bad:?}");
        }
        let bytes = encode(&[with(vec![0, 10, 10, 5])]);
        assert!(decode_all(&bytes, 7).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..3000 {
            let len = (round % 97) + 1;
            let mut bytes = MANIFEST_MAGIC.to_vec();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = decode_all(&bytes, 3);
        }
    }
}
