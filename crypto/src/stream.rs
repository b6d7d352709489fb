//! The age v1 payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM in 64 KiB pieces.
//!
//! Each piece's AEAD nonce is an 11-byte big-endian counter and a last-piece flag
//! byte, so pieces cannot be reordered, dropped or truncated without detection.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use age_core::format::FileKey;
use age_core::primitives::hkdf;
use age_core::secrecy::ExposeSecret;
use age_core::secrecy::zeroize::Zeroizing;
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::{CipherCtx, CipherCtxRef};
use openssl::error::ErrorStack;
use rand::RngCore;
use rand::rngs::OsRng;

/// Plaintext bytes per STREAM piece.
pub(crate) const PIECE_LEN: usize = 64 * 1024;
/// Poly1305 tag appended to each piece.
pub(crate) const TAG_LEN: usize = 16;
/// Nonce at the start of every payload: the salt of its key, unique per file key.
pub(crate) const NONCE_LEN: usize = 16;
const SEALED_PIECE_LEN: usize = PIECE_LEN + TAG_LEN;

/// Why a payload did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamError {
    /// Structurally wrong: too short, missing or empty pieces.
    Malformed(String),
    /// Piece `n` (0-based) failed authentication.
    Auth(u64),
    /// The cipher library refused to set up (out of memory, or a broken
    /// OpenSSL): says nothing about the payload.
    Cipher(String),
}

impl From<ErrorStack> for StreamError {
    fn from(e: ErrorStack) -> Self {
        StreamError::Cipher(e.to_string())
    }
}

/// Payload key = HKDF-SHA256(salt = nonce, ikm = file key, info = "payload").
/// The AEAD is OpenSSL's ChaCha20-Poly1305: the same algorithm, so the bytes
/// are age's, and on this CPU (AVX-512) 1.65x ring's and 2.7x RustCrypto's.
/// It works from one buffer into another, so opening needs no copy of the
/// payload first. The context keeps the key; OpenSSL wipes it when freed.
fn payload_cipher(
    file_key: &FileKey,
    nonce: &[u8],
    encrypt: bool,
) -> Result<CipherCtx, ErrorStack> {
    let key = Zeroizing::new(hkdf(nonce, b"payload", file_key.expose_secret()));
    let cipher = chacha20_poly1305();
    let mut ctx = CipherCtx::new()?;
    match encrypt {
        true => ctx.encrypt_init(Some(cipher), Some(key.as_slice()), None)?,
        false => ctx.decrypt_init(Some(cipher), Some(key.as_slice()), None)?,
    }
    Ok(ctx)
}

/// The cipher, looked up in OpenSSL's providers once: OpenSSL 3 repeats that
/// lookup on every use of the built-in handle, a third of the cost of sealing
/// a small file's chunk.
fn chacha20_poly1305() -> &'static CipherRef {
    static FETCHED: OnceLock<Option<Cipher>> = OnceLock::new();
    match FETCHED.get_or_init(|| Cipher::fetch(None, "ChaCha20-Poly1305", None).ok()) {
        Some(fetched) => fetched,
        None => Cipher::chacha20_poly1305(),
    }
}

/// The STREAM nonce of a piece. Unique per payload key: each payload has its
/// own key (random salt) and each piece of it its own counter.
fn piece_nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    // The 11-byte counter's top three bytes stay zero: u64 pieces are plenty.
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Appends one sealed piece (ciphertext, then tag) to `out`.
fn seal_piece(
    ctx: &mut CipherCtxRef,
    nonce: [u8; 12],
    piece: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ErrorStack> {
    ctx.encrypt_init(None, None, Some(&nonce))?;
    ctx.cipher_update_vec(piece, out)?;
    ctx.cipher_final_vec(out)?;
    let mut tag = [0u8; TAG_LEN];
    ctx.tag(&mut tag)?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Appends the plaintext of one sealed piece to `out`; false if it does not
/// authenticate (then `out` may hold unauthenticated bytes: the caller drops it).
fn open_piece(
    ctx: &mut CipherCtxRef,
    nonce: [u8; 12],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, ErrorStack> {
    // Never hand OpenSSL a short tag: it would compare only that many bytes.
    let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
        return Ok(false);
    };
    let (ciphertext, tag) = sealed.split_at(split);
    ctx.decrypt_init(None, None, Some(&nonce))?;
    ctx.set_tag(tag)?;
    ctx.cipher_update_vec(ciphertext, out)?;
    // The final step is where the tag is compared.
    Ok(ctx.cipher_final_vec(out).is_ok())
}

/// A payload nonce never used before under `file_key`'s session: a random
/// prefix drawn once per session, then a count of the payloads sealed.
/// age asks only that no two payloads under one file key share a nonce;
/// a counter guarantees what 16 random bytes make merely likely, without a
/// `getrandom` call per chunk.
pub(crate) struct NonceSequence {
    prefix: [u8; NONCE_LEN - 8],
    next: AtomicU64,
}

impl NonceSequence {
    pub(crate) fn random() -> Self {
        let mut prefix = [0u8; NONCE_LEN - 8];
        OsRng.fill_bytes(&mut prefix);
        Self {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> [u8; NONCE_LEN] {
        let count = self.next.fetch_add(1, Ordering::Relaxed);
        // 2^64 payloads under one session key will not be sealed.
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_LEN - 8].copy_from_slice(&self.prefix);
        nonce[NONCE_LEN - 8..].copy_from_slice(&count.to_be_bytes());
        nonce
    }
}

/// Encrypts `plaintext` as one age payload. An empty plaintext is one empty final piece.
pub(crate) fn seal(
    file_key: &FileKey,
    nonces: &NonceSequence,
    plaintext: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    let nonce = nonces.next();
    let mut ctx = payload_cipher(file_key, &nonce, true)?;

    let pieces: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(PIECE_LEN).collect()
    };
    // One spare byte: OpenSSL's update asks for a block (1 byte) of room beyond its input.
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN * pieces.len() + 1);
    out.extend_from_slice(&nonce);
    let last_index = pieces.len() - 1;
    for (i, piece) in pieces.into_iter().enumerate() {
        seal_piece(
            &mut ctx,
            piece_nonce(i as u64, i == last_index),
            piece,
            &mut out,
        )?;
    }
    Ok(out)
}

/// Decrypts one age payload into a new buffer, enforcing the STREAM rules;
/// never panics on bad input.
pub(crate) fn open(file_key: &FileKey, payload: &[u8]) -> Result<Vec<u8>, StreamError> {
    if payload.len() < NONCE_LEN {
        return Err(StreamError::Malformed(format!(
            "{} bytes is shorter than the {NONCE_LEN}-byte nonce",
            payload.len()
        )));
    }
    let (nonce, sealed) = payload.split_at(NONCE_LEN);
    if sealed.is_empty() {
        return Err(StreamError::Malformed(
            "truncated: no ciphertext after the nonce (even an empty chunk has a final piece)"
                .to_string(),
        ));
    }
    // Position decides which piece is final: anything after a real final piece, or a
    // cut at a piece boundary, then fails authentication with the wrong flag.
    let piece_count = sealed.len().div_ceil(SEALED_PIECE_LEN);
    // Structural checks first, so the error says what is wrong rather than "auth".
    // Only the final piece can be short; non-final pieces are full by construction.
    let final_len = sealed.len() - (piece_count - 1) * SEALED_PIECE_LEN;
    if final_len < TAG_LEN {
        return Err(StreamError::Malformed(format!(
            "truncated: final piece is {final_len} bytes, shorter than its {TAG_LEN}-byte tag"
        )));
    }
    if final_len == TAG_LEN && piece_count > 1 {
        // age: the final piece may be empty only if it is the only piece.
        return Err(StreamError::Malformed(
            "an empty final piece after a full one (trailing bytes?)".to_string(),
        ));
    }
    let mut ctx = payload_cipher(file_key, nonce, false)?;
    let mut out = Vec::with_capacity(sealed.len() - piece_count * TAG_LEN + 1);
    for (i, piece) in sealed.chunks(SEALED_PIECE_LEN).enumerate() {
        let last = i + 1 == piece_count;
        if !open_piece(&mut ctx, piece_nonce(i as u64, last), piece, &mut out)? {
            return Err(StreamError::Auth(i as u64));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> FileKey {
        FileKey::new(Box::new([7u8; 16]))
    }

    #[test]
    fn a_piece_shorter_than_its_tag_or_with_a_cut_tag_never_opens() {
        let nonces = NonceSequence::random();
        let payload = seal(&key(), &nonces, b"twelve bytes").unwrap();
        let (nonce, piece) = payload.split_at(NONCE_LEN);
        let mut ctx = payload_cipher(&key(), nonce, false).unwrap();
        let mut out = Vec::new();
        assert!(open_piece(&mut ctx, piece_nonce(0, true), piece, &mut out).unwrap());
        assert_eq!(out, b"twelve bytes");
        // Fewer bytes than a tag, or the tag's last bytes cut off: OpenSSL
        // would compare a short tag, so these must be refused before it.
        for cut in [piece.len() - 1, TAG_LEN - 1, 4, 0] {
            let mut out = Vec::new();
            let opened = open_piece(&mut ctx, piece_nonce(0, true), &piece[..cut], &mut out);
            assert!(!opened.unwrap(), "cut to {cut} bytes");
        }
    }
}
