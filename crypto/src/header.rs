//! The age v1 header (C2SP age), written and parsed by hand.
//!
//! Why by hand: the age crate keeps its header type private and its `Encryptor`
//! always draws its own file key, but Ferry reuses one file key for a whole upload
//! session. The parser is strict and bounded because it reads bytes from the hub.

use age_core::format::{FileKey, Stanza};
use age_core::primitives::hkdf;
use age_core::secrecy::ExposeSecret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// First line of every age v1 file.
const INTRO: &[u8] = b"age-encryption.org/v1\n";
/// Start of a recipient stanza line.
const STANZA_PREFIX: &[u8] = b"-> ";
/// The MAC covers the header up to and including this mark.
const MAC_MARK: &[u8] = b"---";
/// Stanza bodies are wrapped at exactly this many base64 columns.
const BODY_COLUMNS: usize = 64;
/// base64 (no padding) of the 32-byte HMAC-SHA256.
const MAC_B64_LEN: usize = 43;

/// Headers larger than this are refused (ours are a few hundred bytes).
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// At most this many recipient stanzas per header.
pub const MAX_STANZAS: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// A parsed header: its stanzas, its MAC, and where the MAC input and header end.
pub(crate) struct ParsedHeader {
    pub stanzas: Vec<Stanza>,
    /// Length of the MAC input: the header through `---`, without the space.
    pub mac_input_len: usize,
    pub mac: [u8; 32],
    /// Total header length, through the newline after the MAC.
    pub len: usize,
}

/// HMAC-SHA256 keyed with HKDF(salt = empty, ikm = file key, info = "header").
fn header_mac(file_key: &FileKey) -> Result<HmacSha256, hmac::digest::InvalidLength> {
    let key = hkdf(&[], b"header", file_key.expose_secret());
    HmacSha256::new_from_slice(&key)
}

/// Writes a complete header: intro, stanzas, `---`, base64 MAC.
pub(crate) fn write(
    stanzas: &[Stanza],
    file_key: &FileKey,
) -> Result<Vec<u8>, hmac::digest::InvalidLength> {
    let mut out = INTRO.to_vec();
    for stanza in stanzas {
        write_stanza(&mut out, stanza);
    }
    out.extend_from_slice(MAC_MARK);
    let mut mac = header_mac(file_key)?;
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.push(b' ');
    out.extend_from_slice(STANDARD_NO_PAD.encode(tag).as_bytes());
    out.push(b'\n');
    Ok(out)
}

fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
    out.extend_from_slice(b"->");
    for field in std::iter::once(&stanza.tag).chain(&stanza.args) {
        out.push(b' ');
        out.extend_from_slice(field.as_bytes());
    }
    out.push(b'\n');
    let encoded = STANDARD_NO_PAD.encode(&stanza.body);
    let mut rest = encoded.as_bytes();
    while rest.len() >= BODY_COLUMNS {
        let (line, tail) = rest.split_at(BODY_COLUMNS);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = tail;
    }
    // The last body line must be short (empty if need be), so the end is unambiguous.
    out.extend_from_slice(rest);
    out.push(b'\n');
}

/// Checks the MAC in constant time. `bytes` is the header the MAC was parsed from.
pub(crate) fn verify_mac(file_key: &FileKey, bytes: &[u8], parsed: &ParsedHeader) -> bool {
    let Some(input) = bytes.get(..parsed.mac_input_len) else {
        return false;
    };
    match header_mac(file_key) {
        Ok(mut mac) => {
            mac.update(input);
            mac.verify_slice(&parsed.mac).is_ok()
        }
        Err(_) => false,
    }
}

/// Reads one `\n`-terminated line starting at `*pos`, advancing past it. Never looks
/// past `MAX_HEADER_LEN`, so a huge payload after a bad header is not scanned.
fn take_line<'a>(bytes: &'a [u8], pos: &mut usize, what: &str) -> Result<&'a [u8], String> {
    let window = bytes.get(..MAX_HEADER_LEN).unwrap_or(bytes);
    let rest = window.get(*pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) => {
            *pos += end + 1;
            Ok(&rest[..end])
        }
        None if bytes.len() >= MAX_HEADER_LEN => {
            Err(format!("header longer than {MAX_HEADER_LEN} bytes"))
        }
        None => Err(format!("truncated header: {what} has no line end")),
    }
}

fn is_vchar(b: u8) -> bool {
    (33..=126).contains(&b)
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Parses the header at the start of `bytes` (which may continue with a payload).
pub(crate) fn parse(bytes: &[u8]) -> Result<ParsedHeader, String> {
    if !bytes.starts_with(INTRO) {
        return Err(if INTRO.starts_with(bytes) {
            "truncated header: incomplete `age-encryption.org/v1` line".to_string()
        } else {
            "not an age v1 header: the first line must be `age-encryption.org/v1`".to_string()
        });
    }
    let mut pos = INTRO.len();
    let mut stanzas = Vec::new();
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.starts_with(STANZA_PREFIX) {
            if stanzas.len() == MAX_STANZAS {
                return Err(format!("more than {MAX_STANZAS} recipient stanzas"));
            }
            stanzas.push(parse_stanza(bytes, &mut pos, stanzas.len() + 1)?);
        } else if rest.starts_with(MAC_MARK) {
            let mac_input_len = pos + MAC_MARK.len();
            let line = take_line(bytes, &mut pos, "the MAC line")?;
            let mac = parse_mac_line(line)?;
            return Ok(ParsedHeader {
                stanzas,
                mac_input_len,
                mac,
                len: pos,
            });
        } else if rest.len() < MAC_MARK.len() && MAC_MARK.starts_with(rest) {
            return Err("truncated header: missing the `---` MAC line".to_string());
        } else {
            return Err(format!(
                "byte {pos}: expected a recipient stanza (`-> `) or the MAC line (`---`)"
            ));
        }
    }
}

fn parse_stanza(bytes: &[u8], pos: &mut usize, number: usize) -> Result<Stanza, String> {
    let what = format!("stanza {number}");
    let line = take_line(bytes, pos, &what)?;
    let fields = line.get(STANZA_PREFIX.len()..).unwrap_or_default();
    let mut words = Vec::new();
    for word in fields.split(|&b| b == b' ') {
        if word.is_empty() || !word.iter().all(|&b| is_vchar(b)) {
            return Err(format!(
                "{what}: type and arguments must be non-empty printable ASCII separated by single spaces"
            ));
        }
        // Printable ASCII is valid UTF-8, so this conversion is lossless.
        words.push(String::from_utf8_lossy(word).into_owned());
    }
    let tag = words.remove(0);

    let mut encoded = Vec::new();
    loop {
        let line = take_line(bytes, pos, &what)?;
        if line.len() > BODY_COLUMNS || !line.iter().all(|&b| is_base64_char(b)) {
            return Err(format!(
                "{what}: body lines must be base64 wrapped at {BODY_COLUMNS} columns"
            ));
        }
        encoded.extend_from_slice(line);
        if line.len() < BODY_COLUMNS {
            break;
        }
    }
    let body = STANDARD_NO_PAD
        .decode(&encoded)
        .map_err(|e| format!("{what}: body is not canonical unpadded base64: {e}"))?;
    Ok(Stanza {
        tag,
        args: words,
        body,
    })
}

fn parse_mac_line(line: &[u8]) -> Result<[u8; 32], String> {
    let encoded = line
        .strip_prefix(b"--- ")
        .filter(|e| e.len() == MAC_B64_LEN)
        .ok_or_else(|| format!("MAC line must be `--- ` and {MAC_B64_LEN} base64 characters"))?;
    let decoded = STANDARD_NO_PAD
        .decode(encoded)
        .map_err(|e| format!("MAC is not canonical unpadded base64: {e}"))?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| "MAC is not 32 bytes".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey::new(Box::new([7u8; 16]))
    }

    #[test]
    fn write_then_parse_round_trips_stanzas() {
        let stanzas = vec![
            Stanza {
                tag: "X25519".into(),
                args: vec!["abc".into()],
                body: vec![1; 32],
            },
            // A body of exactly 48 bytes is 64 columns: needs the empty last line.
            Stanza {
                tag: "other".into(),
                args: vec![],
                body: vec![2; 48],
            },
            Stanza {
                tag: "empty".into(),
                args: vec!["a".into(), "b".into()],
                body: vec![],
            },
        ];
        let bytes = write(&stanzas, &key()).unwrap();
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.stanzas, stanzas);
        assert_eq!(parsed.len, bytes.len());
        assert!(verify_mac(&key(), &bytes, &parsed));
        assert!(!verify_mac(
            &FileKey::new(Box::new([8u8; 16])),
            &bytes,
            &parsed
        ));
    }

    #[test]
    fn rejects_malformed_headers() {
        let good = write(&[], &key()).unwrap();
        for bad in [
            &b""[..],
            b"age-encryption.org/v1",
            b"age-encryption.org/v2\n--- x\n",
            b"age-encryption.org/v1\n-> \n\n--- x\n",
            b"age-encryption.org/v1\n->  X\n\n",
            b"age-encryption.org/v1\n-> X\nAAA=\n",
            b"age-encryption.org/v1\n-> X\nAB\n",
            b"age-encryption.org/v1\n--",
            b"age-encryption.org/v1\n--- short\n",
            b"age-encryption.org/v1\nhello\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err());
        }
    }

    #[test]
    fn refuses_oversized_header() {
        let mut bytes = INTRO.to_vec();
        bytes.extend_from_slice(b"-> X\n");
        while bytes.len() < MAX_HEADER_LEN + 100 {
            bytes.extend_from_slice(&[b'A'; 64]);
            bytes.push(b'\n');
        }
        let err = parse(&bytes).err().unwrap();
        assert!(err.contains("longer than"), "{err}");
    }
}
