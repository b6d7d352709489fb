//! The age v1 payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM in 64 KiB pieces.
//!
//! Each piece's AEAD nonce is an 11-byte big-endian counter and a last-piece flag
//! byte, so pieces cannot be reordered, dropped or truncated without detection.

use std::sync::atomic::{AtomicU64, Ordering};

use age_core::format::FileKey;
use age_core::primitives::hkdf;
use age_core::secrecy::ExposeSecret;
use age_core::secrecy::zeroize::Zeroizing;
use rand::RngCore;
use rand::rngs::OsRng;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

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
}

/// Payload key = HKDF-SHA256(salt = nonce, ikm = file key, info = "payload").
/// The AEAD is ring's ChaCha20-Poly1305 (assembly, about 2.5x the portable
/// RustCrypto one on this CPU): the same algorithm, so the bytes are age's.
fn payload_cipher(file_key: &FileKey, nonce: &[u8]) -> LessSafeKey {
    let key = Zeroizing::new(hkdf(nonce, b"payload", file_key.expose_secret()));
    match UnboundKey::new(&CHACHA20_POLY1305, key.as_slice()) {
        Ok(key) => LessSafeKey::new(key),
        // HKDF always yields 32 bytes, the ChaCha20 key length.
        Err(_) => unreachable!("a 32-byte key was refused"),
    }
}

/// The STREAM nonce of a piece. Unique per payload key: each payload has its
/// own key (random salt) and each piece of it its own counter.
fn piece_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    // The 11-byte counter's top three bytes stay zero: u64 pieces are plenty.
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
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
pub(crate) fn seal(file_key: &FileKey, nonces: &NonceSequence, plaintext: &[u8]) -> Vec<u8> {
    let nonce = nonces.next();
    let cipher = payload_cipher(file_key, &nonce);

    let pieces: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(PIECE_LEN).collect()
    };
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN * pieces.len());
    out.extend_from_slice(&nonce);
    let last_index = pieces.len() - 1;
    for (i, piece) in pieces.into_iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(piece);
        let nonce = piece_nonce(i as u64, i == last_index);
        let tag = match cipher.seal_in_place_separate_tag(nonce, Aad::empty(), &mut out[start..]) {
            Ok(tag) => tag,
            // Only fails past ChaCha20's 256 GiB limit; a piece is 64 KiB.
            Err(_) => unreachable!("ChaCha20-Poly1305 refused a 64 KiB piece"),
        };
        out.extend_from_slice(tag.as_ref());
    }
    out
}

/// Decrypts one age payload, enforcing the STREAM rules; never panics on bad
/// input. Works in the payload's own buffer: each piece's plaintext is
/// written over the bytes before it, so no second buffer and no extra copy.
pub(crate) fn open(file_key: &FileKey, mut payload: Vec<u8>) -> Result<Vec<u8>, StreamError> {
    if payload.len() < NONCE_LEN {
        return Err(StreamError::Malformed(format!(
            "{} bytes is shorter than the {NONCE_LEN}-byte nonce",
            payload.len()
        )));
    }
    let (nonce, sealed) = payload.split_at(NONCE_LEN);
    let sealed_len = sealed.len();
    if sealed.is_empty() {
        return Err(StreamError::Malformed(
            "truncated: no ciphertext after the nonce (even an empty chunk has a final piece)"
                .to_string(),
        ));
    }
    let cipher = payload_cipher(file_key, nonce);
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
    // Plaintext bytes written so far, at the front of `payload`.
    let mut written = 0;
    for i in 0..piece_count {
        let last = i + 1 == piece_count;
        let start = NONCE_LEN + i * SEALED_PIECE_LEN;
        let end = (start + SEALED_PIECE_LEN).min(NONCE_LEN + sealed_len);
        // Checked above, but stay panic-free even if that logic changes.
        if end - start < TAG_LEN {
            return Err(StreamError::Auth(i as u64));
        }
        let in_out = payload
            .get_mut(written..end)
            .ok_or(StreamError::Auth(i as u64))?;
        written += cipher
            .open_within(
                piece_nonce(i as u64, last),
                Aad::empty(),
                in_out,
                start - written..,
            )
            .map_err(|_| StreamError::Auth(i as u64))?
            .len();
    }
    payload.truncate(written);
    Ok(payload)
}
