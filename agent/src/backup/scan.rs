//! Stage 1 of the backup: walk the source, reuse the chunk lists of
//! unchanged files from the journal, read and chunk the rest, hash each
//! chunk, and build the manifest as it goes.

use super::*;
use crate::journal::Extra;
use crate::owners::Names;
use crate::sparse;

pub(super) struct Scanned {
    pub(super) manifest: Vec<BlobId>,
    pub(super) report: BackupReport,
}

/// Hands chunk jobs to the dedup stage in bundles, so that tiny files do
/// not cost a thread wake-up each.
struct Bundler<'a> {
    tx: &'a mpsc::Sender<Vec<ChunkJob>>,
    pending: std::cell::RefCell<(Vec<ChunkJob>, usize)>,
}

impl<'a> Bundler<'a> {
    fn new(tx: &'a mpsc::Sender<Vec<ChunkJob>>) -> Self {
        Self {
            tx,
            pending: Default::default(),
        }
    }

    fn send(&self, job: ChunkJob) -> Result<(), BackupError> {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.1 += job.data.len();
            pending.0.push(job);
            pending.1 >= BUNDLE_BYTES || pending.0.len() >= BUNDLE_JOBS
        };
        if full { self.flush() } else { Ok(()) }
    }

    fn flush(&self) -> Result<(), BackupError> {
        let (jobs, _) = std::mem::take(&mut *self.pending.borrow_mut());
        if jobs.is_empty() {
            return Ok(());
        }
        self.tx
            .blocking_send(jobs)
            .map_err(|_| BackupError::Aborted)
    }
}

/// Stage 1: walk, chunk, hash; emits chunk jobs and returns the manifest ids.
pub(super) fn scan_source(
    source: Arc<dyn Source>,
    walker_journal: Option<PathBuf>,
    keys: &TenantKeys,
    journal: &Journal,
    chunks: &mpsc::Sender<Vec<ChunkJob>>,
    progress: &Progress,
) -> Result<Scanned, BackupError> {
    let (gear, gear_ls) = keys.gear_tables();
    let params = ChunkerParams::new(gear, gear_ls);
    let mut report = BackupReport::default();
    let mut manifest_ids = Vec::new();
    let mut manifest = ChunkBuffer::new(&params);
    let mut content = ChunkBuffer::new(&params);
    let mut encoded = MANIFEST_MAGIC.to_vec();
    // The first path of each inode with further links, and what its content is.
    let mut first_link: HashMap<(u64, u64), FirstLink> = HashMap::new();
    let mut skipped_files = Vec::new();

    let bundler = Bundler::new(chunks);
    let send = |kind: BlobKind, data: Vec<u8>| -> Result<BlobId, BackupError> {
        let id = BlobId(keys.chunk_id(&data));
        bundler.send(ChunkJob { id, kind, data })?;
        Ok(id)
    };

    let mut names = Names::default();
    // An entry's extended attributes, as the source has them now; one that
    // cannot be read is counted and the entry kept without them.
    let read_xattrs = |entry: &SourceEntry, report: &mut BackupReport| match source.xattrs(entry) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(path = %String::from_utf8_lossy(&entry.path), error = %e, "extended attributes not readable");
            report.xattrs_unreadable += 1;
            Vec::new()
        }
    };
    let mut on_entry = |item: Item| -> Result<(), BackupError> {
        let mut entry = item.entry;
        let mut out = ManifestEntry {
            path: entry.path.clone(),
            uid: entry.uid,
            gid: entry.gid,
            ..Default::default()
        };
        if !source.holds_objects() {
            out.user = names.user(entry.uid);
            out.group = names.group(entry.gid);
        }
        match entry.kind {
            EntryKind::Dir => {
                out.r#type = EntryType::Dir as i32;
                out.xattrs = read_xattrs(&entry, &mut report);
                journal.record(&entry.path, &entry.stamp, &[], None, listing(&entry))?;
                report.dirs += 1;
            }
            EntryKind::Symlink => {
                out.r#type = EntryType::Symlink as i32;
                out.symlink_target = entry.target.clone();
                out.xattrs = read_xattrs(&entry, &mut report);
                journal.record(&entry.path, &entry.stamp, &[], None, listing(&entry))?;
                report.symlinks += 1;
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                out.r#type = match entry.kind {
                    EntryKind::Fifo => EntryType::Fifo,
                    EntryKind::CharDevice => EntryType::CharDevice,
                    _ => EntryType::BlockDevice,
                } as i32;
                out.rdev = entry.rdev;
                out.xattrs = read_xattrs(&entry, &mut report);
                journal.record(&entry.path, &entry.stamp, &[], None, listing(&entry))?;
                report.specials += 1;
            }
            EntryKind::Socket => {
                report.sockets_not_kept += 1;
                return Ok(());
            }
            EntryKind::File | EntryKind::Object => {
                let is_object = entry.kind == EntryKind::Object;
                out.r#type = match is_object {
                    true => EntryType::Object,
                    false => EntryType::File,
                } as i32;
                // Same inode, same stamp: one look at the inode stands for
                // both names (a stale stamp on one reads the file again).
                let first = entry
                    .link_key
                    .and_then(|k| first_link.get(&k))
                    .filter(|first| first.stamp == entry.stamp);
                if let Some(first) = first {
                    out.hardlink_to = first.path.clone();
                    // Indexed with the inode's content: should the first
                    // path go, this one is found unchanged and whole.
                    let extra = Extra {
                        holes: &first.holes,
                        xattrs: &first.xattrs,
                        ..listing(&entry)
                    };
                    journal.record(&entry.path, &entry.stamp, &first.ids, None, extra)?;
                } else {
                    let known = item.known?;
                    let prefetched = item.prefetched.and_then(|answer| answer.recv().ok());
                    // An unchanged file's attributes are the index's: a
                    // change to them would have changed its ctime.
                    let mut known_xattrs = None;
                    let (ids, object, holes) = match (known, prefetched) {
                        (Some(known), _) => {
                            known_xattrs = Some(known.xattrs);
                            (known.ids, known.object, known.holes)
                        }
                        // Read ahead, and unchanged while it was read: one chunk.
                        (None, Some(Ok(p)))
                            if p.stamp_after == Some(entry.stamp)
                                && p.data.len() as u64 == entry.stamp.size =>
                        {
                            report.files_read += 1;
                            report.bytes_read += entry.stamp.size;
                            progress.add_read(entry.stamp.size);
                            let ids = match p.data.is_empty() {
                                true => Vec::new(),
                                false => vec![send(BlobKind::Data, p.data)?],
                            };
                            known_xattrs = p.xattrs;
                            (ids, p.object, Vec::new())
                        }
                        // Not read ahead, or it changed or failed meanwhile:
                        // read here, with retries, as for any file.
                        (None, _) => match read_file(
                            &*source,
                            &mut content,
                            &mut entry,
                            &send,
                            &mut report,
                            progress,
                        )? {
                            Ok(read) => read,
                            Err(reason) => {
                                skipped_files.push(Skipped {
                                    path: entry.path,
                                    reason,
                                });
                                return Ok(());
                            }
                        },
                    };
                    // An object keeps the identity of the version read.
                    let object = object.or(entry.object.take());
                    let xattrs = match (known_xattrs, entry.kind) {
                        (Some(known), _) => known,
                        (None, EntryKind::Object) => Vec::new(),
                        (None, _) => read_xattrs(&entry, &mut report),
                    };
                    let extra = Extra {
                        holes: &holes,
                        xattrs: &xattrs,
                        ..listing(&entry)
                    };
                    journal.record(&entry.path, &entry.stamp, &ids, object.as_deref(), extra)?;
                    out.xattrs = xattrs;
                    out.chunks = ids.iter().map(|id| id.0.to_vec()).collect();
                    out.holes = holes;
                    out.object = object.map(|o| *o);
                    if let Some(key) = entry.link_key {
                        first_link.insert(
                            key,
                            FirstLink {
                                path: entry.path.clone(),
                                stamp: entry.stamp,
                                ids,
                                holes: out.holes.clone(),
                                xattrs: out.xattrs.clone(),
                            },
                        );
                    }
                }
                out.size = entry.stamp.size;
                report.files += 1;
                report.bytes += entry.stamp.size;
                progress.add_files(1);
            }
        }
        out.mode = entry.stamp.mode & 0o7777;
        out.mtime_sec = entry.stamp.mtime_ns.div_euclid(1_000_000_000);
        out.mtime_nsec = entry.stamp.mtime_ns.rem_euclid(1_000_000_000) as u32;
        encode_entry(&out, &mut encoded);
        if encoded.len() >= 1 << 20 {
            manifest.push(&encoded, |c| {
                send(BlobKind::Manifest, c).map(|id| manifest_ids.push(id))
            })?;
            encoded.clear();
        }
        Ok(())
    };
    // Entries arrive in walk order; stop at the first pipeline error.
    let mut failure = None;
    let (items, walker) = walk_ahead(source.clone(), walker_journal);
    for item in items.iter() {
        if let Err(e) = on_entry(item) {
            failure = Some(e);
            break;
        }
    }
    // Dropping the queue stops a walker that is still going.
    drop(items);
    let walked = walker
        .join()
        .map_err(|_| BackupError::Task("the source walker panicked".into()))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let skipped = walked.map_err(|e| match e {
        WalkError::Source(e) => BackupError::Source(e),
        WalkError::Journal(e) => BackupError::Journal(e),
    })?;
    manifest.push(&encoded, |c| {
        send(BlobKind::Manifest, c).map(|id| manifest_ids.push(id))
    })?;
    manifest.finish(|c| send(BlobKind::Manifest, c).map(|id| manifest_ids.push(id)))?;
    bundler.flush()?;
    for s in skipped.into_iter().chain(skipped_files) {
        tracing::warn!(path = %String::from_utf8_lossy(&s.path), reason = %s.reason, "not backed up");
        report.skipped.push(s.into());
    }
    Ok(Scanned {
        manifest: manifest_ids,
        report,
    })
}

/// What the index keeps of a listed entry beyond its stamp: all of a tree
/// is indexed, so a change-driven snapshot lists the unchanged part from it.
pub(crate) fn listing(entry: &SourceEntry) -> Extra<'_> {
    Extra {
        uid: entry.uid,
        gid: entry.gid,
        link_dev: entry.link_key.map(|(dev, _)| dev),
        rdev: entry.rdev,
        target: &entry.target,
        ..Default::default()
    }
}

/// The first path met of an inode with further links, and its content.
struct FirstLink {
    path: Vec<u8>,
    stamp: FileStamp,
    ids: Vec<BlobId>,
    holes: Vec<u64>,
    xattrs: Vec<ferry_proto::v1::Xattr>,
}

/// What tells, once a file is read, whether it changed meanwhile.
pub(super) enum ReadVersion {
    /// The open file's own stamp.
    File(std::fs::File),
    /// The source's stamp for the path, looked up again.
    LookAgain,
    /// Objects are read as one version, this one.
    Object(FileStamp, Box<ObjectMeta>),
}

/// A file's or object's chunk ids, an object's metadata, and a sparse
/// file's holes (flattened (offset, length) pairs).
pub(super) type ReadResult = (Vec<BlobId>, Option<Box<ObjectMeta>>, Vec<u64>);

/// Reads and chunks one file, retrying while it changes under us. The outer
/// error stops the backup; the inner one skips (and reports) this file.
pub(super) fn read_file(
    source: &dyn Source,
    chunker: &mut ChunkBuffer<'_>,
    entry: &mut SourceEntry,
    send: &dyn Fn(BlobKind, Vec<u8>) -> Result<BlobId, BackupError>,
    report: &mut BackupReport,
    progress: &Progress,
) -> Result<Result<ReadResult, String>, BackupError> {
    for _ in 0..READ_ATTEMPTS {
        let mut ids = Vec::new();
        let size = entry.stamp.size;
        let mut chunk = |reader: &mut dyn Read| {
            chunker.chunk_reader(reader, size, |chunk| {
                progress.add_read(chunk.len() as u64);
                send(BlobKind::Data, chunk).map(|id| ids.push(id))
            })
        };
        // How to tell, after reading, which version was read.
        let mut holes = Vec::new();
        let (read, after) = match source.open(entry)? {
            // Only the data of a sparse file is read: its holes are noted.
            Content::File(file) if entry.sparse => match sparse::map(&file, size) {
                Ok(map) if !map.holes.is_empty() => {
                    holes = map.holes.iter().flat_map(|(o, l)| [*o, *l]).collect();
                    let mut data = sparse::DataReader::new(&file, map.data());
                    (chunk(&mut data), ReadVersion::File(file))
                }
                Ok(_) => {
                    let mut file = file;
                    (chunk(&mut file), ReadVersion::File(file))
                }
                Err(e) => return Ok(Err(format!("finding holes: {e}"))),
            },
            Content::File(mut file) => (chunk(&mut file), ReadVersion::File(file)),
            Content::Reader(mut r) => (chunk(&mut r), ReadVersion::LookAgain),
            Content::Object {
                mut reader,
                stamp,
                meta,
            } => (chunk(&mut reader), ReadVersion::Object(stamp, meta)),
            Content::Vanished => return Ok(Err("vanished during the backup".into())),
        };
        let len = match read {
            Ok(len) => len,
            // An object that cannot be read means the store is failing, not
            // that one file is bad: stop rather than commit a snapshot
            // without it (the run loop retries with backoff).
            Err(ChunkReadError::Read(e)) if entry.kind == EntryKind::Object => {
                return Err(BackupError::Source(SourceError::Io {
                    root: source.describe(),
                    op: "read object",
                    path: String::from_utf8_lossy(&entry.path).into_owned(),
                    source: e,
                }));
            }
            Err(ChunkReadError::Read(e)) => return Ok(Err(format!("read error: {e}"))),
            Err(ChunkReadError::Emit(e)) => return Err(e),
        };
        report.files_read += 1;
        report.bytes_read += len;
        let (now, object) = match after {
            ReadVersion::File(file) => match file.metadata() {
                Ok(meta) => (Some(stamp_of(&meta)), None),
                Err(e) => return Ok(Err(format!("stat after reading: {e}"))),
            },
            ReadVersion::LookAgain => (source.stamp_now(entry)?, None),
            // One version was read whole: what was read is that version,
            // even if it is newer than the listing said.
            ReadVersion::Object(stamp, meta) => {
                entry.stamp = stamp;
                (Some(stamp), Some(meta))
            }
        };
        let hole_bytes: u64 = holes.chunks_exact(2).map(|h| h[1]).sum();
        match now {
            None => return Ok(Err("vanished while being read".into())),
            Some(now) if now == entry.stamp && len + hole_bytes == now.size => {
                return Ok(Ok((ids, object, holes)));
            }
            // Changed while we read it: what we read may be torn. Try again
            // with the new stamp rather than store a mix of two versions.
            Some(now) => entry.stamp = now,
        }
    }
    Ok(Err(format!(
        "kept changing while being read ({READ_ATTEMPTS} attempts); not stored"
    )))
}
