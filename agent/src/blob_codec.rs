//! One chunk on its way to the hub and back: compress (when it helps), then
//! encrypt as an age payload under the session's file key; and the reverse,
//! which checks the chunk id against the plaintext so that a tampered or
//! corrupt blob is refused, never restored.

use std::cell::RefCell;

use ferry_crypto::{OpenError, SealError, SessionOpener, SessionSealer, TenantKeys};
use ferry_proto::{BlobId, BlobKind, FLAG_ZSTD};

use crate::chunker::MAX_CHUNK;
use crate::compressibility::looks_incompressible;

/// zstd level for chunks of at least [`LARGE_CHUNK`] bytes: zstd's own
/// default. On text-like chunks of about 1 MiB it stores 10 % less than
/// level 1 for about 16 % more time.
const LARGE_LEVEL: i32 = 3;
/// zstd level for smaller chunks (small files): there level 3 saves only
/// about 1 % over level 1, for 20 % more time.
const SMALL_LEVEL: i32 = 1;
const LARGE_CHUNK: usize = 64 << 10;
/// Keep the compressed form only if it saves at least this share.
const MIN_SAVING: f64 = 0.03;

/// An encrypted chunk ready to upload.
#[derive(Debug)]
pub struct SealedBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub flags: u8,
    pub data: Vec<u8>,
}

type Compressor = zstd::bulk::Compressor<'static>;

thread_local! {
    // A zstd context costs more to set up than compressing a small file;
    // each sealing thread keeps one per level.
    static SMALL_COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
    static LARGE_COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let (context, level) = if data.len() >= LARGE_CHUNK {
        (&LARGE_COMPRESSOR, LARGE_LEVEL)
    } else {
        (&SMALL_COMPRESSOR, SMALL_LEVEL)
    };
    context.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Compressor::new(level)?);
        }
        match slot.as_mut() {
            Some(c) => c.compress(data),
            None => zstd::bulk::compress(data, level),
        }
    })
}

fn decompress(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(data, limit),
            None => zstd::bulk::decompress(data, limit),
        }
    })
}

/// The compressed form of `plaintext`, if it saves enough to be worth it.
/// Data that looks random (already compressed or encrypted) is not tried.
pub fn compressed(plaintext: &[u8]) -> Option<Vec<u8>> {
    if plaintext.len() < 512 || looks_incompressible(plaintext) {
        return None;
    }
    let packed = compress(plaintext).ok()?;
    let saves = (packed.len() as f64) < plaintext.len() as f64 * (1.0 - MIN_SAVING);
    saves.then_some(packed)
}

/// Compresses if it helps, then encrypts.
pub fn seal_chunk(
    sealer: &SessionSealer,
    id: BlobId,
    kind: BlobKind,
    plaintext: &[u8],
) -> Result<SealedBlob, SealError> {
    Ok(match compressed(plaintext) {
        Some(packed) => SealedBlob {
            id,
            kind,
            flags: FLAG_ZSTD,
            data: sealer.seal(&packed)?,
        },
        None => SealedBlob {
            id,
            kind,
            flags: 0,
            data: sealer.seal(plaintext)?,
        },
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OpenChunkError {
    #[error("chunk {id}: cannot decrypt: {source}")]
    Decrypt {
        id: BlobId,
        #[source]
        source: OpenError,
    },
    #[error("chunk {id}: cannot decompress: {reason}")]
    Decompress { id: BlobId, reason: String },
    #[error("chunk {id}: content does not match its id (tampered or corrupt)")]
    Mismatch { id: BlobId },
    #[error("chunk {id}: unknown flags {flags:#x}")]
    Flags { id: BlobId, flags: u8 },
}

impl OpenChunkError {
    /// The chunk that failed.
    pub fn id(&self) -> BlobId {
        match self {
            Self::Decrypt { id, .. }
            | Self::Decompress { id, .. }
            | Self::Mismatch { id }
            | Self::Flags { id, .. } => *id,
        }
    }
}

/// Decrypts, decompresses and verifies one chunk.
pub fn open_chunk(
    keys: &TenantKeys,
    opener: &SessionOpener,
    id: BlobId,
    flags: u8,
    data: &[u8],
) -> Result<Vec<u8>, OpenChunkError> {
    if flags & !FLAG_ZSTD != 0 {
        return Err(OpenChunkError::Flags { id, flags });
    }
    let decrypted = opener
        .open(data)
        .map_err(|source| OpenChunkError::Decrypt { id, source })?;
    let plaintext = if flags & FLAG_ZSTD != 0 {
        // Bounded: a hostile blob cannot inflate past the largest chunk.
        decompress(&decrypted, MAX_CHUNK).map_err(|e| OpenChunkError::Decompress {
            id,
            reason: e.to_string(),
        })?
    } else {
        decrypted
    };
    if BlobId(keys.chunk_id(&plaintext)) != id {
        return Err(OpenChunkError::Mismatch { id });
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compressed_and_not() {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().unwrap();
        let opener = keys.opener(sealer.header()).unwrap();
        let text = b"hello world, hello world, hello world ".repeat(1000);
        let noise = crate::test_bytes::noise(100_000, 0x2545_f491_4f6c_dd1d);
        for (plain, compressed) in [(&text[..], true), (&noise[..], false), (&b""[..], false)] {
            let id = BlobId(keys.chunk_id(plain));
            let sealed = seal_chunk(&sealer, id, BlobKind::Data, plain).unwrap();
            assert_eq!(sealed.flags & FLAG_ZSTD != 0, compressed);
            let back = open_chunk(&keys, &opener, id, sealed.flags, &sealed.data).unwrap();
            assert_eq!(back, plain);
        }
    }

    #[test]
    fn tampering_and_wrong_ids_are_refused() {
        let keys = TenantKeys::generate();
        let sealer = keys.sealer().unwrap();
        let opener = keys.opener(sealer.header()).unwrap();
        let id = BlobId(keys.chunk_id(b"data"));
        let mut sealed = seal_chunk(&sealer, id, BlobKind::Data, b"data").unwrap();
        let other = BlobId(keys.chunk_id(b"other"));
        assert!(matches!(
            open_chunk(&keys, &opener, other, sealed.flags, &sealed.data),
            Err(OpenChunkError::Mismatch { .. })
        ));
        let last = sealed.data.len() - 1;
        sealed.data[last] ^= 1;
        assert!(matches!(
            open_chunk(&keys, &opener, id, sealed.flags, &sealed.data),
            Err(OpenChunkError::Decrypt { .. })
        ));
    }
}
