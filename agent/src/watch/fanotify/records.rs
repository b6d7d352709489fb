//! The bytes fanotify hands back from `read`, in its file-identifier modes:
//! per event a fixed header (`fanotify_event_metadata`) and information
//! records, of which the directory-and-name record and the object record
//! (each a file system id and a file handle) are kept. Parsed by hand,
//! checked at every length: what the kernel gives is not trusted to fit.

use ferry_fhandle::key_of;

/// `FANOTIFY_METADATA_VERSION`.
const VERSION: u8 = 3;
/// `sizeof(struct fanotify_event_metadata)`.
const METADATA_LEN: usize = 24;
const INFO_FID: u8 = 1;
const INFO_DFID_NAME: u8 = 2;
const INFO_DFID: u8 = 3;
/// fsid (8 bytes), then `handle_bytes` and `handle_type`.
const FID_HEAD: usize = 8 + 4 + 4;

/// One event, its handles as map keys ([`ferry_fhandle::key_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub mask: u64,
    /// The directory the event happened in, and the name in it when the
    /// kernel gave one ("." for the directory itself is given as `None`).
    pub dir: Option<(Vec<u8>, Option<Vec<u8>>)>,
    /// The object the event is about.
    pub object: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("an event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("event metadata version {0}, expected {VERSION}")]
    Version(u8),
    #[error("an event's lengths do not fit the bytes read")]
    Length,
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// Appends the events in `buf` (what one `read` returned) to `out`.
///
/// # Errors
/// The bytes are not whole events of the known version; what was parsed
/// before the fault is in `out`.
pub fn parse(mut buf: &[u8], out: &mut Vec<Record>) -> Result<(), RecordError> {
    while !buf.is_empty() {
        if buf.len() < METADATA_LEN {
            return Err(RecordError::Short(buf.len()));
        }
        let event_len = u32_at(buf, 0).ok_or(RecordError::Length)? as usize;
        let version = buf[4];
        let metadata_len = u16_at(buf, 6).ok_or(RecordError::Length)? as usize;
        if version != VERSION {
            return Err(RecordError::Version(version));
        }
        if event_len > buf.len() || metadata_len < METADATA_LEN || metadata_len > event_len {
            return Err(RecordError::Length);
        }
        let mask = u64_at(buf, 8).ok_or(RecordError::Length)?;
        let mut record = Record {
            mask,
            dir: None,
            object: None,
        };
        let mut info = &buf[metadata_len..event_len];
        while !info.is_empty() {
            let kind = info[0];
            let len = u16_at(info, 2).ok_or(RecordError::Length)? as usize;
            if len < 4 || len > info.len() {
                return Err(RecordError::Length);
            }
            let body = &info[4..len];
            match kind {
                INFO_FID => record.object = Some(handle(body)?.0),
                INFO_DFID => record.dir = Some((handle(body)?.0, None)),
                INFO_DFID_NAME => {
                    let (key, rest) = handle(body)?;
                    // NUL-terminated, then padding.
                    let name = rest.split(|b| *b == 0).next().unwrap_or_default();
                    let name = match name {
                        b"" | b"." => None,
                        name => Some(name.to_vec()),
                    };
                    record.dir = Some((key, name));
                }
                _ => {} // pidfd, error, range, mount records: not asked for
            }
            info = &info[len..];
        }
        out.push(record);
        buf = &buf[event_len..];
    }
    Ok(())
}

/// A handle's key and the bytes after it.
fn handle(body: &[u8]) -> Result<(Vec<u8>, &[u8]), RecordError> {
    let bytes = u32_at(body, 8).ok_or(RecordError::Length)? as usize;
    let kind = u32_at(body, 12).ok_or(RecordError::Length)? as i32;
    let end = FID_HEAD.checked_add(bytes).ok_or(RecordError::Length)?;
    let f_handle = body.get(FID_HEAD..end).ok_or(RecordError::Length)?;
    Ok((key_of(kind, f_handle), &body[end..]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as the kernel lays it out.
    pub fn event(mask: u64, records: &[(u8, i32, &[u8], &[u8])]) -> Vec<u8> {
        let mut info = Vec::new();
        for (kind, handle_type, handle, name) in records {
            let mut body = vec![0u8; 8]; // fsid
            body.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
            body.extend_from_slice(&handle_type.to_ne_bytes());
            body.extend_from_slice(handle);
            if !name.is_empty() {
                body.extend_from_slice(name);
                body.push(0);
            }
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            info.push(*kind);
            info.push(0);
            info.extend_from_slice(&((body.len() + 4) as u16).to_ne_bytes());
            info.extend_from_slice(&body);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&0i32.to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    #[test]
    fn events_with_a_directory_a_name_and_an_object_are_read_back() {
        let mut buf = event(
            0x100,
            &[
                (
                    INFO_DFID_NAME,
                    1,
                    b"\x01\x02\x03\x04\x05\x06\x07\x08",
                    b"new file",
                ),
                (INFO_FID, 1, b"\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10", b""),
            ],
        );
        buf.extend(event(
            0x4,
            &[(INFO_DFID_NAME, 1, b"\x01\x02\x03\x04", b".")],
        ));
        buf.extend(event(0x4000, &[]));
        let mut out = Vec::new();
        parse(&buf, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0].dir,
            Some((
                key_of(1, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
                Some(b"new file".to_vec())
            ))
        );
        assert_eq!(
            out[0].object,
            Some(key_of(1, b"\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"))
        );
        assert_eq!(out[1].dir, Some((key_of(1, b"\x01\x02\x03\x04"), None)));
        assert_eq!(
            (out[2].mask, &out[2].dir, &out[2].object),
            (0x4000, &None, &None)
        );
    }

    #[test]
    fn truncated_or_overlong_events_are_refused_not_read_past() {
        let whole = event(0x2, &[(INFO_DFID_NAME, 1, b"\x01\x02\x03\x04", b"name")]);
        for cut in 1..whole.len() {
            let mut out = Vec::new();
            assert!(parse(&whole[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut lying = whole.clone();
        // handle_bytes claims more than the record holds
        lying[METADATA_LEN + 4 + 8..METADATA_LEN + 4 + 12].copy_from_slice(&200u32.to_ne_bytes());
        assert_eq!(parse(&lying, &mut Vec::new()), Err(RecordError::Length));
        let mut old = whole;
        old[4] = 2;
        assert_eq!(parse(&old, &mut Vec::new()), Err(RecordError::Version(2)));
    }
}
