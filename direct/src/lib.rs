//! Writing and reading files past the page cache.
//!
//! A buffered write makes the kernel copy every byte into the page cache,
//! and on the machines Ferry was measured on that copy cost more CPU than
//! the rest of writing: for a pack of 800 MiB, a buffered write plus its
//! fdatasync took 3.0 s, a direct one 0.6 s. Files Ferry writes once and
//! does not read back soon (packs on the hub, large restored files) go
//! through [`DirectWriter`]: data is staged in an aligned buffer and written
//! in aligned pieces with O_DIRECT; the last piece is padded and the file
//! cut back to its length. Where the file system refuses O_DIRECT (EINVAL:
//! tmpfs on older kernels, some network file systems) the writer falls back
//! to ordinary buffered writes, so callers need no second path.
//!
//! [`DirectReader`] reads ranges the same way (aligned reads, then the
//! wanted bytes moved to the front): the hub reads back packs it wrote
//! directly, where a buffered read would add the kernel's copy out of the
//! page cache (half the hub's CPU on a restore).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Alignment of O_DIRECT writes: buffer address, file offset and length.
const ALIGN: usize = 4096;
/// Bytes staged and written per O_DIRECT write.
const PIECE: usize = 1 << 20;

/// A new file being written, directly where possible.
#[derive(Debug)]
pub struct DirectWriter {
    file: File,
    path: PathBuf,
    /// `Some` while writing directly: a plain buffer with an aligned window.
    staging: Option<Staging>,
    /// Bytes handed to the file so far (the padding of a last piece excluded).
    len: u64,
}

#[derive(Debug)]
struct Staging {
    buffer: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Staging {
    fn new() -> Self {
        let buffer = vec![0u8; PIECE + ALIGN];
        let start = aligned_start(&buffer);
        Self {
            buffer,
            start,
            filled: 0,
        }
    }

    fn window(&mut self) -> &mut [u8] {
        &mut self.buffer[self.start..self.start + PIECE]
    }
}

impl DirectWriter {
    /// Creates `path`, which must not exist, with permission bits `mode`
    /// (before the umask).
    pub fn create_new(path: &Path, mode: u32) -> io::Result<Self> {
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let (file, staging) = match opened {
            Ok(file) => (file, Some(Staging::new())),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                (create_buffered(path, mode)?, None)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
            staging,
            len: 0,
        })
    }

    /// Creates `path` like [`Self::create_new`], for ordinary buffered
    /// writes: for small files, where a direct write would wait on the disk
    /// each time.
    pub fn create_new_buffered(path: &Path, mode: u32) -> io::Result<Self> {
        Ok(Self {
            file: create_buffered(path, mode)?,
            path: path.to_path_buf(),
            staging: None,
            len: 0,
        })
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(staging) = self.staging.as_mut() else {
                self.file.write_all(data)?;
                self.len += data.len() as u64;
                return Ok(());
            };
            let take = data.len().min(PIECE - staging.filled);
            let filled = staging.filled;
            staging.window()[filled..filled + take].copy_from_slice(&data[..take]);
            staging.filled += take;
            data = &data[take..];
            if staging.filled == PIECE {
                self.write_staged()?;
            }
        }
        Ok(())
    }

    /// Writes what is staged, padded to the alignment.
    fn write_staged(&mut self) -> io::Result<()> {
        let Some(staging) = self.staging.as_mut() else {
            return Ok(());
        };
        let filled = staging.filled;
        if filled == 0 {
            return Ok(());
        }
        let padded = filled.div_ceil(ALIGN) * ALIGN;
        let window = staging.window();
        window[filled..padded].fill(0);
        match self.file.write_all(&window[..padded]) {
            Ok(()) => {
                staging.filled = 0;
                self.len += filled as u64;
                Ok(())
            }
            // Some file systems accept the O_DIRECT open and refuse the
            // write. Nothing reached the file yet: reopen it buffered.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.len == 0 => {
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.file.write_all(&window[..filled])?;
                self.staging = None;
                self.len += filled as u64;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the rest, cuts the padding off and returns the file (not
    /// fsynced: that is the caller's to decide).
    pub fn finish(mut self) -> io::Result<File> {
        self.write_staged()?;
        if self.staging.is_some() {
            self.file.set_len(self.len)?;
        }
        Ok(self.file)
    }
}

/// A file opened for reading ranges, directly where possible.
#[derive(Debug)]
pub struct DirectReader {
    file: File,
    direct: bool,
}

impl DirectReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Ok(Self { file, direct: true }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Self {
                file: File::open(path)?,
                direct: false,
            }),
            Err(e) => Err(e),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads `len` bytes at `offset`; [`io::ErrorKind::UnexpectedEof`] if the
    /// file ends first.
    pub fn read_exact_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if !self.direct {
            let mut buf = vec![0u8; len];
            self.file.read_exact_at(&mut buf, offset)?;
            return Ok(buf);
        }
        let too_far = || io::Error::new(io::ErrorKind::InvalidInput, "range past u64");
        let align = ALIGN as u64;
        let start = offset - offset % align;
        let end = offset
            .checked_add(len as u64)
            .and_then(|end| end.checked_next_multiple_of(align))
            .ok_or_else(too_far)?;
        let span = usize::try_from(end - start).map_err(|_| too_far())?;
        let mut buf = vec![0u8; span + ALIGN];
        let window_start = aligned_start(&buf);
        let lead = (offset - start) as usize;
        let mut filled = 0;
        // Up to the aligned end; the file may end sooner (in its last block).
        while filled < lead + len {
            let window = &mut buf[window_start + filled..window_start + span];
            match self.file.read_at(window, start + filled as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // A short read before the end leaves `filled` unaligned, which
            // O_DIRECT cannot continue from: only the file's end does that.
            if filled < lead + len && filled % ALIGN != 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        buf.copy_within(window_start + lead..window_start + lead + len, 0);
        buf.truncate(len);
        Ok(buf)
    }
}

/// Where an aligned window starts in `buffer`, which has [`ALIGN`] bytes to
/// spare: an aligned window in an ordinary allocation, no unsafe needed.
fn aligned_start(buffer: &[u8]) -> usize {
    buffer.as_ptr().align_offset(ALIGN).min(ALIGN)
}

fn create_buffered(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Writes `data` as the content of the new file `path` (see the crate docs).
pub fn write_new_file(path: &Path, mode: u32, data: &[u8]) -> io::Result<File> {
    let mut writer = DirectWriter::create_new(path, mode)?;
    writer.write_all(data)?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    #[test]
    fn any_length_in_any_pieces_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for (n, len) in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            3 * PIECE + 12_345,
        ]
        .into_iter()
        .enumerate()
        {
            let data = pattern(len);
            for (piece, direct) in [
                (1000, true),
                (4096, true),
                (PIECE, true),
                (5 << 20, true),
                (1000, false),
            ] {
                let path = dir.path().join(format!("f{n}-{piece}-{direct}"));
                let mut writer = match direct {
                    true => DirectWriter::create_new(&path, 0o640),
                    false => DirectWriter::create_new_buffered(&path, 0o640),
                }
                .unwrap();
                for part in data.chunks(piece) {
                    writer.write_all(part).unwrap();
                }
                let file = writer.finish().unwrap();
                assert_eq!(file.metadata().unwrap().len(), len as u64);
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    data,
                    "{len} bytes in {piece}"
                );
            }
        }
    }

    #[test]
    fn ranges_read_back_exactly_and_past_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(3 * PIECE + 12_345);
        write_new_file(&path, 0o600, &data).unwrap();
        let reader = DirectReader::open(&path).unwrap();
        let len = data.len() as u64;
        for (offset, n) in [
            (0, 0),
            (0, 1),
            (1, 4095),
            (4095, 2),
            (4096, 4096),
            (12_345, PIECE + 7),
            (len - 1, 1),
            (len - 5000, 5000),
            (0, data.len()),
        ] {
            let got = reader.read_exact_at(offset, n).unwrap();
            assert_eq!(
                got,
                &data[offset as usize..offset as usize + n],
                "{offset}+{n}"
            );
        }
        for (offset, n) in [(len - 1, 2), (len, 1), (len + 4096, 10)] {
            let err = reader.read_exact_at(offset, n).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{offset}+{n}");
        }
    }

    #[test]
    fn the_mode_is_applied_and_existing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_new_file(&path, 0o600, b"abc").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = write_new_file(&path, 0o600, b"xyz").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }
}
