//! The writer of `ferry-agent verify`: a restore that writes nothing. Every
//! chunk of the snapshot is fetched and opened to its id as a restore
//! would (a bad one is reported to the hub; good ones not yet verified are
//! reported verified, see [`crate::verified`]), and each file's chunks must
//! add up to its size.

use std::path::PathBuf;

use ferry_proto::v1::EntryType;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::progress::Progress;
use crate::restore::{Plain, RestoreError, RestoreReport, next_plain, size_mismatch};

/// Takes entries and their plaintext chunks in order, keeping none.
pub fn check_tree(
    mut entries: mpsc::Receiver<crate::restore::Planned>,
    mut plains: mpsc::Receiver<Plain>,
    runtime: &Handle,
    progress: &Progress,
) -> Result<RestoreReport, RestoreError> {
    let mut report = RestoreReport::default();
    while let Some(crate::restore::Planned { entry, .. }) = entries.blocking_recv() {
        let mut held = 0u64;
        for _ in &entry.chunks {
            held += next_plain(&mut plains, runtime)?.len() as u64;
        }
        match EntryType::try_from(entry.r#type) {
            Ok(EntryType::Dir) => report.dirs += 1,
            Ok(EntryType::Symlink) => report.symlinks += 1,
            Ok(EntryType::Fifo | EntryType::CharDevice | EntryType::BlockDevice) => {
                report.specials += 1;
            }
            Ok(EntryType::File) if !entry.hardlink_to.is_empty() => report.hardlinks += 1,
            Ok(EntryType::File | EntryType::Object) => {
                if let Some(reason) = size_mismatch(&entry, held) {
                    return Err(RestoreError::Target {
                        path: PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned()),
                        reason,
                    });
                }
                report.files += 1;
                report.bytes += held;
                report.chunks += entry.chunks.len() as u64;
                progress.add_read(held);
                progress.add_files(1);
            }
            _ => report.skipped += 1,
        }
    }
    Ok(report)
}
