//! Sparse files: their holes found at backup (SEEK_DATA/SEEK_HOLE), so only
//! the data is read and stored, and left as holes at restore, so a restored
//! file takes no more disk than the original's data.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use ferry_proto::manifest::Layout;
use rustix::fs::{SeekFrom, seek};

/// More holes than this and a file is read whole instead (its map would
/// outgrow a manifest entry; zeros dedup to one chunk anyway).
const MAX_HOLES: usize = 1 << 20;

/// The layout of the first `size` bytes of `file`: where its holes are.
/// The end of the file counts as data up to `size` however the file
/// system reports it, so a file that grew meanwhile is caught by the
/// caller's stamp check, not here.
///
/// # Errors
///
/// The seeks fail (a file system without SEEK_DATA reports the whole file
/// as data, which is not an error).
pub fn map(file: &File, size: u64) -> io::Result<Layout> {
    let mut holes = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(data) => data.min(size),
            // No data from here on: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if data > at {
            holes.push((at, data - at));
            if holes.len() > MAX_HOLES {
                return Ok(Layout {
                    holes: Vec::new(),
                    size,
                });
            }
        }
        if data >= size {
            break;
        }
        at = match seek(file, SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        // A file system that answers without moving on would loop forever.
        if at <= data {
            return Ok(Layout {
                holes: Vec::new(),
                size,
            });
        }
    }
    Ok(Layout { holes, size })
}

/// Reads the data ranges of a file, in order, as one stream.
pub struct DataReader<'a> {
    file: &'a File,
    ranges: std::vec::IntoIter<(u64, u64)>,
    current: Option<(u64, u64)>,
}

impl<'a> DataReader<'a> {
    pub fn new(file: &'a File, ranges: Vec<(u64, u64)>) -> Self {
        Self {
            file,
            ranges: ranges.into_iter(),
            current: None,
        }
    }
}

impl Read for DataReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (offset, left) = match self.current {
                Some((offset, left)) if left > 0 => (offset, left),
                _ => match self.ranges.next() {
                    Some(range) => {
                        self.current = Some(range);
                        continue;
                    }
                    None => return Ok(0),
                },
            };
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.read_at(&mut buf[..want], offset)?;
            if n == 0 {
                // Shorter than its map said: the caller's size check tells.
                self.current = None;
                self.ranges = Vec::new().into_iter();
                return Ok(0);
            }
            self.current = Some((offset + n as u64, left - n as u64));
            return Ok(n);
        }
    }
}

/// Writes a sparse file's data stream into its ranges, leaving the holes
/// unwritten; `finish` sets the full size, so a trailing hole stays one.
pub struct DataWriter<'a> {
    file: &'a File,
    ranges: std::vec::IntoIter<(u64, u64)>,
    current: (u64, u64),
    size: u64,
}

impl<'a> DataWriter<'a> {
    pub fn new(file: &'a File, layout: &Layout) -> Self {
        Self {
            file,
            ranges: layout.data().into_iter(),
            current: (0, 0),
            size: layout.size,
        }
    }

    /// Writes the next `bytes` of the data stream.
    ///
    /// # Errors
    ///
    /// The write fails, or there is more data than the layout has room for.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.current.1 == 0 {
                self.current = self.ranges.next().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "more data than the file's layout holds",
                    )
                })?;
                continue;
            }
            let (offset, left) = self.current;
            let take = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.file.write_all_at(&bytes[..take], offset)?;
            self.current = (offset + take as u64, left - take as u64);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Sets the file's size (holes at the end included).
    ///
    /// # Errors
    ///
    /// The truncate fails.
    pub fn finish(self) -> io::Result<()> {
        self.file.set_len(self.size)
    }
}

/// More data than a sparse file's layout has room for.
#[derive(Debug, thiserror::Error)]
#[error("more data than the file's layout holds")]
pub struct Overflow;

impl From<Overflow> for io::Error {
    fn from(e: Overflow) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Turns a sparse file's data stream back into its bytes, holes as zeros
/// (for targets that have no holes, such as objects), a bounded piece at a
/// time.
pub struct Expander {
    ranges: std::vec::IntoIter<(u64, u64)>,
    /// The data range being filled: (start, end).
    current: Option<(u64, u64)>,
    /// How far the bytes are given out.
    at: u64,
    size: u64,
}

impl Expander {
    pub fn new(layout: &Layout) -> Self {
        let mut ranges = layout.data().into_iter();
        let current = ranges.next().map(|(o, l)| (o, o + l));
        Self {
            ranges,
            current,
            at: 0,
            size: layout.size,
        }
    }

    /// Appends `data` (the next bytes of the data stream) to `out`, with
    /// the zeros of any hole before them; `flush` is called whenever `out`
    /// reaches `piece` bytes (never more), so a hole of any size takes no
    /// more memory than that.
    ///
    /// # Errors
    ///
    /// `flush`'s, or [`Overflow`] if there is more data than the layout has
    /// room for.
    pub fn push<E: From<Overflow>>(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        piece: usize,
        flush: &mut impl FnMut(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !data.is_empty() {
            let Some((start, end)) = self.current else {
                return Err(Overflow.into());
            };
            self.zeros_to(start, out, piece, flush)?;
            let room = piece.saturating_sub(out.len()).max(1);
            let take = data
                .len()
                .min(room)
                .min(usize::try_from(end - self.at).unwrap_or(usize::MAX));
            out.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.at += take as u64;
            if self.at == end {
                self.current = self.ranges.next().map(|(o, l)| (o, o + l));
            }
            if out.len() >= piece {
                flush(out)?;
            }
        }
        Ok(())
    }

    /// Appends the zeros of the holes after the last data.
    ///
    /// # Errors
    ///
    /// `flush`'s.
    pub fn finish<E>(
        &mut self,
        out: &mut Vec<u8>,
        piece: usize,
        flush: &mut impl FnMut(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.zeros_to(self.size, out, piece, flush)
    }

    fn zeros_to<E>(
        &mut self,
        to: u64,
        out: &mut Vec<u8>,
        piece: usize,
        flush: &mut impl FnMut(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.at < to {
            let room = piece.saturating_sub(out.len()).max(1);
            let take = room.min(usize::try_from(to - self.at).unwrap_or(usize::MAX));
            out.resize(out.len() + take, 0);
            self.at += take as u64;
            if out.len() >= piece {
                flush(out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A file of data, a hole, data and a trailing hole, mapped, read as
    /// its data alone and written back sparse: same bytes, no more blocks.
    #[test]
    fn holes_are_mapped_skipped_and_left_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mib = 1u64 << 20;
        file.write_all_at(&vec![1; mib as usize], 0).unwrap();
        file.write_all_at(&vec![2; mib as usize], 8 * mib).unwrap();
        file.set_len(16 * mib).unwrap();
        file.sync_all().unwrap();
        let layout = map(&file, 16 * mib).unwrap();
        if layout.holes.is_empty() {
            // A file system without holes (some tmpfs setups): nothing to test.
            return;
        }
        assert_eq!(layout.data_bytes(), 2 * mib, "{layout:?}");
        let mut data = Vec::new();
        DataReader::new(&file, layout.data())
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data.len() as u64, 2 * mib);
        assert!(data[..mib as usize].iter().all(|b| *b == 1));
        assert!(data[mib as usize..].iter().all(|b| *b == 2));

        let copy_path = dir.path().join("copy");
        let copy = File::create(&copy_path).unwrap();
        let mut writer = DataWriter::new(&copy, &layout);
        for piece in data.chunks(100_000) {
            writer.write(piece).unwrap();
        }
        writer.finish().unwrap();
        copy.sync_all().unwrap();
        assert_eq!(
            std::fs::read(&copy_path).unwrap(),
            std::fs::read(&path).unwrap()
        );
        let blocks = |p: &std::path::Path| std::fs::metadata(p).unwrap().blocks();
        assert!(blocks(&copy_path) <= blocks(&path) + 8, "copy is no denser");
        // Expanded, holes become zeros, in pieces no larger than asked.
        let mut expander = Expander::new(&layout);
        let (mut out, mut whole) = (Vec::new(), Vec::new());
        let mut flush = |out: &mut Vec<u8>| -> Result<(), io::Error> {
            assert!(out.len() <= 300_000);
            whole.append(out);
            Ok(())
        };
        for piece in data.chunks(77_777) {
            expander.push(piece, &mut out, 300_000, &mut flush).unwrap();
        }
        expander.finish(&mut out, 300_000, &mut flush).unwrap();
        whole.append(&mut out);
        assert_eq!(whole, std::fs::read(&path).unwrap());
        // More data than the layout holds is refused.
        let mut over = DataWriter::new(&copy, &layout);
        assert!(over.write(&vec![0; 2 * mib as usize + 1]).is_err());
    }
}
