//! The byte layout shared by the records: little-endian integers, names
//! as a length byte and `[a-z0-9._-]` bytes, id lists as a `u32` count and
//! 32-byte ids, byte strings as a `u32` length and bytes.

use ferry_proto::{BlobId, ID_LEN};

/// What is wrong with a record's bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{record}: {len} bytes is too short to be one")]
    TooShort { record: &'static str, len: usize },
    #[error("{record}: bad magic {found}")]
    BadMagic { record: &'static str, found: String },
    #[error("{record}: its BLAKE3 seal does not match its bytes (damaged)")]
    HashMismatch { record: &'static str },
    #[error("{record}: field {field} runs past the end of the record")]
    Truncated {
        record: &'static str,
        field: &'static str,
    },
    #[error("{record}: field {field}: {found:?} is not a valid name")]
    BadName {
        record: &'static str,
        field: &'static str,
        found: String,
    },
    #[error("{record}: field {field}: unknown value {value}")]
    BadValue {
        record: &'static str,
        field: &'static str,
        value: u64,
    },
    #[error("{record}: field {field} is not UTF-8 text")]
    NotText {
        record: &'static str,
        field: &'static str,
    },
    #[error("{record}: {extra} bytes after the last field")]
    TrailingBytes { record: &'static str, extra: usize },
    #[error("{record}: field {field}: {len} is more than the format holds")]
    TooLong {
        record: &'static str,
        field: &'static str,
        len: usize,
    },
}

/// Builds a record's payload.
pub(crate) struct Encoder {
    record: &'static str,
    out: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(record: &'static str, capacity: usize) -> Self {
        Self {
            record,
            out: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn hash(&mut self, v: &[u8; 32]) {
        self.out.extend_from_slice(v);
    }

    /// A name: checked against the catalog's rules, so what is written can
    /// be read back.
    pub(crate) fn name(&mut self, field: &'static str, name: &str) -> Result<(), RecordError> {
        let len = check_name(self.record, field, name.as_bytes())?;
        self.out.push(len);
        self.out.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn count(&mut self, field: &'static str, len: usize) -> Result<(), RecordError> {
        let n = u32::try_from(len).map_err(|_| RecordError::TooLong {
            record: self.record,
            field,
            len,
        })?;
        self.out.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }

    pub(crate) fn ids(&mut self, field: &'static str, ids: &[BlobId]) -> Result<(), RecordError> {
        self.count(field, ids.len())?;
        self.out.reserve(ids.len() * ID_LEN);
        for id in ids {
            self.out.extend_from_slice(id.as_bytes());
        }
        Ok(())
    }

    pub(crate) fn hashes(
        &mut self,
        field: &'static str,
        hashes: &[[u8; 32]],
    ) -> Result<(), RecordError> {
        self.count(field, hashes.len())?;
        for h in hashes {
            self.out.extend_from_slice(h);
        }
        Ok(())
    }

    pub(crate) fn bytes(&mut self, field: &'static str, bytes: &[u8]) -> Result<(), RecordError> {
        self.count(field, bytes.len())?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads a record's payload field by field; every read is bounds-checked.
pub(crate) struct Decoder<'a> {
    record: &'static str,
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(record: &'static str, payload: &'a [u8]) -> Self {
        Self {
            record,
            rest: payload,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], RecordError> {
        let (now, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(RecordError::Truncated {
                record: self.record,
                field,
            })?;
        self.rest = rest;
        Ok(now)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let bytes = self.take(field, N)?;
        // take returned exactly N bytes.
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn hash(&mut self, field: &'static str) -> Result<[u8; 32], RecordError> {
        self.array(field)
    }

    pub(crate) fn name(&mut self, field: &'static str) -> Result<String, RecordError> {
        let len = self.u8(field)?;
        let bytes = self.take(field, usize::from(len))?;
        check_name(self.record, field, bytes)?;
        // check_name allowed ASCII only.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// A `u32` count of items of `size` bytes, checked against what is left
    /// so a forged count cannot make a huge allocation.
    fn counted(&mut self, field: &'static str, size: usize) -> Result<&'a [u8], RecordError> {
        let count = u32::from_le_bytes(self.array(field)?) as usize;
        let len = count.checked_mul(size).ok_or(RecordError::Truncated {
            record: self.record,
            field,
        })?;
        self.take(field, len)
    }

    pub(crate) fn ids(&mut self, field: &'static str) -> Result<Vec<BlobId>, RecordError> {
        Ok(self
            .counted(field, ID_LEN)?
            .chunks_exact(ID_LEN)
            .map(|c| {
                let mut id = [0u8; ID_LEN];
                id.copy_from_slice(c);
                BlobId(id)
            })
            .collect())
    }

    pub(crate) fn hashes(&mut self, field: &'static str) -> Result<Vec<[u8; 32]>, RecordError> {
        Ok(self
            .counted(field, 32)?
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, RecordError> {
        Ok(self.counted(field, 1)?.to_vec())
    }

    pub(crate) fn text(&mut self, field: &'static str) -> Result<String, RecordError> {
        String::from_utf8(self.bytes(field)?).map_err(|_| RecordError::NotText {
            record: self.record,
            field,
        })
    }

    pub(crate) fn bad_value(&self, field: &'static str, value: u64) -> RecordError {
        RecordError::BadValue {
            record: self.record,
            field,
            value,
        }
    }

    /// Refuses bytes left after the last field.
    pub(crate) fn finish(self) -> Result<(), RecordError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(RecordError::TrailingBytes {
                record: self.record,
                extra,
            }),
        }
    }
}

/// A tenant, site or bucket name as the catalog allows it.
fn check_name(record: &'static str, field: &'static str, name: &[u8]) -> Result<u8, RecordError> {
    match (
        crate::catalog::is_valid_name(name),
        u8::try_from(name.len()),
    ) {
        (true, Ok(len)) => Ok(len),
        _ => Err(RecordError::BadName {
            record,
            field,
            found: name.escape_ascii().to_string(),
        }),
    }
}
