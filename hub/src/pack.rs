//! The pack file format.
//!
//! The hub never decrypts: a pack is a sequence of opaque ciphertext blobs
//! followed by an index that says where each blob is, so the pools alone are
//! enough to rebuild the catalog (`ferry-hub recover`) and to scrub for bit rot.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic  b"FERRYPK3"
//! blobs  blob bytes back to back, in index order, no gaps
//! index  tenant_len u8 | tenant [tenant_len] | site_len u8 | site [site_len] |
//!        count u32, then per blob:
//!        id [32] | kind u8 | flags u8 | header_id [32] | offset u64 | length u32
//! footer index_len u32 | blake3 [32] of every byte before the footer | b"FERRYPKS"
//! ```
//!
//! The first version (`FERRYPK2` ... `FERRYPKE`, read still) has no site.
//! The footer's magic says the version too, because recovery reads only a
//! pack's tail.
//!
//! Offsets are absolute positions in the pack file, so a blob can be fetched
//! with one ranged read. The blobs must tile the blob area exactly (first at
//! offset 8, each one starting where the previous ended, the last ending where
//! the index starts): every byte of a pack is then accounted for, which keeps
//! the decoder simple and leaves no room for hidden data.
//!
//! A pack holds the blobs one site of one tenant uploaded, and says which:
//! their names are in the index, so `recover` knows whose copies its
//! entries are from the pack alone (catalog ids are not portable, names
//! are). A site's backups dedup only against its own copies (see
//! `catalog::BlobOwner`), so whose copy a blob is must survive a recovery.
//!
//! A pack's name is the hex of the BLAKE3 of the whole pack file
//! ([`pack_name`]); its object name in a pool is [`pack_object_name`].

use std::fmt;

use bytes::Bytes;
use ferry_proto::{BlobId, BlobKind, ID_LEN};

/// First bytes of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"FERRYPK3";
/// Last bytes of every pack.
pub const FOOTER_MAGIC: &[u8; 8] = b"FERRYPKS";
/// The first version's magics: no site in the index.
const PACK_MAGIC_V2: &[u8; 8] = b"FERRYPK2";
const FOOTER_MAGIC_V2: &[u8; 8] = b"FERRYPKE";
/// Size of one index entry.
pub const ENTRY_LEN: usize = ID_LEN + 1 + 1 + ID_LEN + 8 + 4;
/// Size of the fixed footer.
pub const FOOTER_LEN: usize = 4 + 32 + FOOTER_MAGIC.len();
/// Size of the index's count field.
const COUNT_LEN: usize = 4;
/// Size of the index's tenant (and site) length field.
const TENANT_LEN_LEN: usize = 1;
/// Size of the smallest valid pack: magic, an empty index of a one-letter
/// tenant, the footer.
pub const MIN_PACK_LEN: usize = PACK_MAGIC.len() + TENANT_LEN_LEN + 1 + COUNT_LEN + FOOTER_LEN;

/// A blob to be written into a pack.
#[derive(Clone, PartialEq, Eq)]
pub struct PackBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub flags: u8,
    /// The session header whose file key encrypts this blob.
    pub header_id: BlobId,
    /// The ciphertext, opaque to the hub: a slice of the message it came in.
    pub data: Bytes,
}

impl fmt::Debug for PackBlob {
    // The data is ciphertext of up to megabytes: print its length, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackBlob")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("header_id", &self.header_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// One entry of a pack's index: where a blob lives inside the pack file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: BlobId,
    pub kind: BlobKind,
    pub flags: u8,
    pub header_id: BlobId,
    /// Absolute offset of the blob in the pack file.
    pub offset: u64,
    pub length: u32,
}

/// A pack's decoded index: whose blobs, and where each one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackIndex {
    /// The name of the tenant every blob of the pack belongs to.
    pub tenant: String,
    /// The name of the site that uploaded them (`None` in a first-version
    /// pack, from before copies were per site).
    pub site: Option<String>,
    pub entries: Vec<PackEntry>,
}

/// The decoded fixed-size footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackFooter {
    /// Length of the index (count field included).
    pub index_len: u32,
    /// BLAKE3 of every byte of the pack before the footer.
    pub content_hash: [u8; 32],
    /// Whether the index names a site (the current version).
    pub has_site: bool,
}

impl PackFooter {
    /// How many bytes at the end of the pack hold the index and the footer:
    /// the range to fetch for [`parse_pack_index_unverified`].
    pub fn tail_len(&self) -> u64 {
        u64::from(self.index_len) + FOOTER_LEN as u64
    }
}

/// What is wrong with a pack, or with blobs that cannot be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("pack is {len} bytes, shorter than the minimum of {min}")]
    TooShort { len: u64, min: u64 },
    #[error("pack header: bad magic {found}, expected FERRYPK3 (or FERRYPK2)")]
    BadMagic { found: String },
    #[error("pack footer: bad magic {found}, expected FERRYPKS (or FERRYPKE)")]
    BadFooterMagic { found: String },
    #[error("pack header says {header}, its footer {footer}: not one version")]
    MixedVersions { header: String, footer: String },
    #[error("pack footer: index_len {index_len} does not fit in a pack of {pack_len} bytes")]
    IndexLenOutOfRange { index_len: u32, pack_len: u64 },
    #[error("pack index: tenant name {found:?} is not a valid tenant name")]
    BadTenant { found: String },
    #[error("pack index: site name {found:?} is not a valid site name")]
    BadSite { found: String },
    #[error(
        "pack index: count {count} needs {expected} bytes of index, footer index_len says {index_len}"
    )]
    IndexLenMismatch {
        count: u32,
        index_len: u64,
        expected: u64,
    },
    #[error("pack content hash mismatch: footer says {expected}, content hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("pack index entry {entry}: unknown blob kind {kind}")]
    BadKind { entry: u32, kind: u8 },
    #[error(
        "pack index entry {entry}: blob at offset {offset} (length {length}) should start at {expected}; blobs must tile the blob area in order"
    )]
    EntryMisplaced {
        entry: u32,
        offset: u64,
        length: u32,
        expected: u64,
    },
    #[error(
        "pack index entry {entry}: blob at offset {offset} (length {length}) runs past the blob area end {end}"
    )]
    EntryOutOfBounds {
        entry: u32,
        offset: u64,
        length: u32,
        end: u64,
    },
    #[error("pack index: blobs cover the blob area up to {covered}, but it ends at {end}")]
    UnindexedBytes { covered: u64, end: u64 },
    #[error("pack tail: got {have} bytes, need {need} for the index and footer")]
    TailTooShort { have: u64, need: u64 },
    #[error("pack tail: got {have} bytes, more than the pack length {pack_len}")]
    TailTooLong { have: u64, pack_len: u64 },
    #[error("blob {id}: {len} bytes exceeds the pack format's limit of {max} bytes per blob")]
    BlobTooLarge { id: BlobId, len: usize, max: u32 },
    #[error("{count} blobs exceed the pack format's limit of blobs per pack")]
    TooManyBlobs { count: usize },
}

/// The hex of the BLAKE3 of the whole pack file: the pack's name.
pub fn pack_name(pack: &[u8]) -> String {
    hex::encode(blake3::hash(pack).as_bytes())
}

/// The object name of pack `name` in a pool: `packs/<first 2 hex>/<name>.pack`.
/// The fan-out keeps directories small on local pools.
pub fn pack_object_name(name: &str) -> String {
    let fan = name.get(..2).unwrap_or(name);
    format!("packs/{fan}/{name}.pack")
}

/// A pack as encoded: its bytes, its index entries, and the BLAKE3 of the
/// whole file (which names it).
#[derive(Debug)]
pub struct EncodedPack {
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
    pub hash: [u8; 32],
}

/// Encodes `blobs` that `site` of `tenant` uploaded, in order, into one
/// pack.
///
/// # Errors
///
/// [`PackError::BadTenant`] or [`PackError::BadSite`] for a name outside
/// the catalog's rules,
/// [`PackError::BlobTooLarge`] if a blob exceeds `u32::MAX` bytes and
/// [`PackError::TooManyBlobs`] if the index would not fit the footer's
/// `index_len`.
pub fn encode_pack(tenant: &str, site: &str, blobs: &[PackBlob]) -> Result<EncodedPack, PackError> {
    let tenant_len = check_name(tenant.as_bytes(), |found| PackError::BadTenant { found })?;
    let site_len = check_name(site.as_bytes(), |found| PackError::BadSite { found })?;
    let names_len = 2 * TENANT_LEN_LEN + tenant.len() + site.len();
    let index_len = blobs
        .len()
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(names_len + COUNT_LEN))
        .filter(|n| u32::try_from(*n).is_ok())
        .ok_or(PackError::TooManyBlobs { count: blobs.len() })?;
    let count =
        u32::try_from(blobs.len()).map_err(|_| PackError::TooManyBlobs { count: blobs.len() })?;
    let data_len: usize = blobs.iter().map(|b| b.data.len()).sum();
    let mut out = Vec::with_capacity(PACK_MAGIC.len() + data_len + index_len + FOOTER_LEN);
    out.extend_from_slice(PACK_MAGIC);

    let mut entries = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let length = u32::try_from(blob.data.len()).map_err(|_| PackError::BlobTooLarge {
            id: blob.id,
            len: blob.data.len(),
            max: u32::MAX,
        })?;
        entries.push(PackEntry {
            id: blob.id,
            kind: blob.kind,
            flags: blob.flags,
            header_id: blob.header_id,
            offset: out.len() as u64,
            length,
        });
        out.extend_from_slice(&blob.data);
    }

    out.push(tenant_len);
    out.extend_from_slice(tenant.as_bytes());
    out.push(site_len);
    out.extend_from_slice(site.as_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for e in &entries {
        out.extend_from_slice(e.id.as_bytes());
        out.push(e.kind as u8);
        out.push(e.flags);
        out.extend_from_slice(e.header_id.as_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
    }

    // One pass over the content serves both hashes: the footer's (of the
    // content) and the name's (of the whole file, the footer included).
    let mut file_hasher = blake3::Hasher::new();
    file_hasher.update(&out);
    let content_hash = file_hasher.finalize();
    let footer_start = out.len();
    // index_len was checked against u32 above.
    let index_len = index_len as u32;
    out.extend_from_slice(&index_len.to_le_bytes());
    out.extend_from_slice(content_hash.as_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    file_hasher.update(&out[footer_start..]);
    Ok(EncodedPack {
        bytes: out,
        entries,
        hash: *file_hasher.finalize().as_bytes(),
    })
}

/// Parses and fully verifies a whole pack: magic, footer, the BLAKE3 of the
/// content, and an index whose blobs tile the blob area exactly.
///
/// # Errors
///
/// A [`PackError`] naming the first problem found. Never panics, whatever the
/// bytes.
pub fn parse_pack(bytes: &[u8]) -> Result<PackIndex, PackError> {
    let pack_len = bytes.len() as u64;
    if bytes.len() < MIN_PACK_LEN {
        return Err(PackError::TooShort {
            len: pack_len,
            min: MIN_PACK_LEN as u64,
        });
    }
    let magic = &bytes[..PACK_MAGIC.len()];
    let has_site = match magic {
        m if m == PACK_MAGIC => true,
        m if m == PACK_MAGIC_V2 => false,
        _ => {
            return Err(PackError::BadMagic {
                found: printable(magic),
            });
        }
    };
    let content_end = bytes.len() - FOOTER_LEN;
    let footer = parse_footer(&bytes[content_end..])?;
    if footer.has_site != has_site {
        return Err(PackError::MixedVersions {
            header: printable(magic),
            footer: printable(&bytes[bytes.len() - FOOTER_MAGIC.len()..]),
        });
    }
    let index_start = index_start(&footer, pack_len)?;

    let actual = blake3::hash(&bytes[..content_end]);
    if actual.as_bytes() != &footer.content_hash {
        return Err(PackError::HashMismatch {
            expected: hex::encode(footer.content_hash),
            actual: actual.to_hex().to_string(),
        });
    }
    // index_start <= content_end < bytes.len(), so it fits in usize.
    let index =
        bytes
            .get(index_start as usize..content_end)
            .ok_or(PackError::IndexLenOutOfRange {
                index_len: footer.index_len,
                pack_len,
            })?;
    parse_index(index, index_start, has_site)
}

/// Decodes the fixed-size footer (the last [`FOOTER_LEN`] bytes of a pack).
///
/// # Errors
///
/// [`PackError::TailTooShort`] if `footer` is not exactly [`FOOTER_LEN`] bytes,
/// [`PackError::BadFooterMagic`] if the magic is wrong.
pub fn parse_footer(footer: &[u8]) -> Result<PackFooter, PackError> {
    let short = || PackError::TailTooShort {
        have: footer.len() as u64,
        need: FOOTER_LEN as u64,
    };
    if footer.len() != FOOTER_LEN {
        return Err(short());
    }
    let (index_len, rest) = footer.split_first_chunk::<4>().ok_or_else(short)?;
    let (hash, magic) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    let has_site = match magic {
        m if m == FOOTER_MAGIC => true,
        m if m == FOOTER_MAGIC_V2 => false,
        _ => {
            return Err(PackError::BadFooterMagic {
                found: printable(magic),
            });
        }
    };
    Ok(PackFooter {
        index_len: u32::from_le_bytes(*index_len),
        content_hash: *hash,
        has_site,
    })
}

/// Parses the index from the last bytes of a pack, without checking the
/// content hash (which needs the whole pack). For ranged reads during
/// recovery: fetch the last [`FOOTER_LEN`] bytes, [`parse_footer`], then fetch
/// [`PackFooter::tail_len`] bytes and call this. `tail` may be longer than
/// needed.
///
/// # Errors
///
/// A [`PackError`] naming the first problem found. Never panics, whatever the
/// bytes.
pub fn parse_pack_index_unverified(tail: &[u8], pack_len: u64) -> Result<PackIndex, PackError> {
    let have = tail.len() as u64;
    if pack_len < MIN_PACK_LEN as u64 {
        return Err(PackError::TooShort {
            len: pack_len,
            min: MIN_PACK_LEN as u64,
        });
    }
    if have > pack_len {
        return Err(PackError::TailTooLong { have, pack_len });
    }
    let footer_start = tail
        .len()
        .checked_sub(FOOTER_LEN)
        .ok_or(PackError::TailTooShort {
            have,
            need: FOOTER_LEN as u64,
        })?;
    let footer = parse_footer(&tail[footer_start..])?;
    let index_start = index_start(&footer, pack_len)?;
    let index_len = footer.index_len as usize;
    let index_pos = footer_start
        .checked_sub(index_len)
        .ok_or(PackError::TailTooShort {
            have,
            need: footer.tail_len(),
        })?;
    parse_index(&tail[index_pos..footer_start], index_start, footer.has_site)
}

/// Checks that the footer's index_len fits in a pack of `pack_len` bytes and
/// returns where the index starts (which is also where the blob area ends).
fn index_start(footer: &PackFooter, pack_len: u64) -> Result<u64, PackError> {
    let out_of_range = PackError::IndexLenOutOfRange {
        index_len: footer.index_len,
        pack_len,
    };
    if (footer.index_len as usize) < TENANT_LEN_LEN + COUNT_LEN {
        return Err(out_of_range);
    }
    pack_len
        .checked_sub(FOOTER_LEN as u64)
        .and_then(|end| end.checked_sub(u64::from(footer.index_len)))
        .filter(|start| *start >= PACK_MAGIC.len() as u64)
        .ok_or(out_of_range)
}

/// Checks a tenant or site name as the catalog does and returns its length.
fn check_name(name: &[u8], bad: fn(String) -> PackError) -> Result<u8, PackError> {
    match (
        crate::catalog::is_valid_name(name),
        u8::try_from(name.len()),
    ) {
        (true, Ok(len)) => Ok(len),
        _ => Err(bad(printable(name))),
    }
}

/// A length-prefixed name at the start of `bytes`, checked, and the rest.
fn split_name(
    bytes: &[u8],
    short: PackError,
    bad: fn(String) -> PackError,
) -> Result<(String, &[u8]), PackError> {
    let (&len, rest) = bytes.split_first().ok_or_else(|| short.clone())?;
    let (name, rest) = rest.split_at_checked(usize::from(len)).ok_or(short)?;
    check_name(name, bad)?;
    // check_name allowed ASCII only.
    Ok((String::from_utf8_lossy(name).into_owned(), rest))
}

/// Parses an index (names and count fields included) whose blob area ends
/// at `blob_end`; `has_site` for the current version.
fn parse_index(index: &[u8], blob_end: u64, has_site: bool) -> Result<PackIndex, PackError> {
    let index_len = index.len() as u64;
    let short = PackError::IndexLenMismatch {
        count: 0,
        index_len,
        expected: (TENANT_LEN_LEN + COUNT_LEN) as u64,
    };
    let (tenant, rest) = split_name(index, short.clone(), |found| PackError::BadTenant { found })?;
    let (site, rest) = match has_site {
        true => {
            let (site, rest) =
                split_name(rest, short.clone(), |found| PackError::BadSite { found })?;
            (Some(site), rest)
        }
        false => (None, rest),
    };
    let (count, body) = rest.split_first_chunk::<4>().ok_or(short)?;
    let count = u32::from_le_bytes(*count);
    // u32 * 78 + 4 + 2 * 256 cannot overflow u64.
    let expected = u64::from(count) * ENTRY_LEN as u64 + (index.len() - body.len()) as u64;
    if expected != index_len {
        return Err(PackError::IndexLenMismatch {
            count,
            index_len,
            expected,
        });
    }

    // The allocation is bounded by the input: count was checked against its length.
    let mut entries = Vec::with_capacity(count as usize);
    let mut next = PACK_MAGIC.len() as u64;
    for (entry, raw) in (0u32..).zip(body.chunks_exact(ENTRY_LEN)) {
        let e = decode_entry(entry, raw)?;
        if e.offset != next {
            return Err(PackError::EntryMisplaced {
                entry,
                offset: e.offset,
                length: e.length,
                expected: next,
            });
        }
        next = e
            .offset
            .checked_add(u64::from(e.length))
            .filter(|end| *end <= blob_end)
            .ok_or(PackError::EntryOutOfBounds {
                entry,
                offset: e.offset,
                length: e.length,
                end: blob_end,
            })?;
        entries.push(e);
    }
    if next != blob_end {
        return Err(PackError::UnindexedBytes {
            covered: next,
            end: blob_end,
        });
    }
    Ok(PackIndex {
        tenant,
        site,
        entries,
    })
}

/// Decodes one [`ENTRY_LEN`]-byte index entry.
fn decode_entry(entry: u32, raw: &[u8]) -> Result<PackEntry, PackError> {
    let wrong_len = || PackError::IndexLenMismatch {
        count: entry,
        index_len: raw.len() as u64,
        expected: ENTRY_LEN as u64,
    };
    let (id, rest) = raw.split_first_chunk::<ID_LEN>().ok_or_else(wrong_len)?;
    let ([kind, flags], rest) = rest.split_first_chunk::<2>().ok_or_else(wrong_len)?;
    let (header_id, rest) = rest.split_first_chunk::<ID_LEN>().ok_or_else(wrong_len)?;
    let (offset, rest) = rest.split_first_chunk::<8>().ok_or_else(wrong_len)?;
    let length = rest.first_chunk::<4>().ok_or_else(wrong_len)?;
    Ok(PackEntry {
        id: BlobId(*id),
        kind: BlobKind::from_u8(*kind).ok_or(PackError::BadKind { entry, kind: *kind })?,
        flags: *flags,
        header_id: BlobId(*header_id),
        offset: u64::from_le_bytes(*offset),
        length: u32::from_le_bytes(*length),
    })
}

/// Renders magic bytes for an error message without trusting them to be text.
fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests;
