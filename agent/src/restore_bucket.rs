//! Restore into an S3 bucket: each object (or file) of the snapshot becomes
//! an object under the target's prefix with the same key, bytes and
//! metadata. Small objects go up in one PUT, several at once; large ones in
//! parts, so memory stays bounded by a few parts whatever the object size.
//! An object appears only once all its bytes are verified and uploaded (a
//! PUT or a completed multipart upload is atomic), never half written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use ferry_proto::v1::{EntryType, ManifestEntry, ObjectMeta};
use ferry_s3::{MultipartUpload, S3Location, describe, put_object};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::progress::Progress;
use crate::restore::{Plain, Present, RestoreError, RestoreReport, next_plain, size_mismatch};

/// Objects up to this size are uploaded with one PUT; larger ones in parts of it.
const PART_SIZE: usize = 16 << 20;
/// PUTs in flight at once (small objects are bound by round trips, not bytes).
const PUTS_IN_FLIGHT: usize = 8;

/// A bucket (and prefix) to restore into.
#[derive(Clone)]
pub struct BucketTarget {
    client: Client,
    location: S3Location,
    /// What the bucket holds as the snapshot has it already (a replica's
    /// copy): written again only when this says no.
    pub present: Option<Present>,
    /// Told each object written: its key below the prefix and its ETag.
    pub written: Option<Written>,
}

/// See [`BucketTarget::written`].
pub type Written = Arc<dyn Fn(&str, &str) + Send + Sync>;

fn target_err(location: &S3Location, reason: String) -> RestoreError {
    RestoreError::Target {
        path: format!("s3://{}/{}", location.bucket, location.prefix).into(),
        reason,
    }
}

impl BucketTarget {
    /// Connects and checks that the bucket exists and, unless `overwrite`,
    /// holds nothing under the prefix: a restore does not mix with objects
    /// already there unless asked to (to finish a restore that failed part
    /// way, for one: its objects are written again whole).
    ///
    /// # Errors
    /// Unreachable, missing or refused bucket, or objects under the prefix.
    pub async fn open(location: S3Location, overwrite: bool) -> Result<Self, RestoreError> {
        let client = location
            .client()
            .await
            .map_err(|e| target_err(&location, e.to_string()))?;
        let listed = client
            .list_objects_v2()
            .bucket(&location.bucket)
            .prefix(&location.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| target_err(&location, describe(&e)))?;
        if !overwrite && !listed.contents().is_empty() {
            return Err(target_err(
                &location,
                "holds objects under this prefix; restore into an empty bucket or prefix, \
                 or pass --overwrite to replace what has the snapshot's keys"
                    .into(),
            ));
        }
        Ok(Self {
            client,
            location,
            present: None,
            written: None,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.location.bucket, self.location.prefix)
    }

    /// Tells `written` of an object written under the full key `key`.
    fn tell_written(&self, key: &str, etag: &str) {
        if let Some(written) = &self.written {
            written(key.strip_prefix(&self.location.prefix).unwrap_or(key), etag);
        }
    }

    fn err(&self, key: &str, reason: String) -> RestoreError {
        RestoreError::Target {
            path: format!("s3://{}/{key}", self.location.bucket).into(),
            reason,
        }
    }
}

/// The writer for a bucket target; runs on a blocking thread like the
/// directory writer, taking entries and their plaintext chunks in order.
pub fn write_bucket(
    target: &Arc<BucketTarget>,
    mut entries: mpsc::Receiver<crate::restore::Planned>,
    mut plains: mpsc::Receiver<Plain>,
    runtime: &Handle,
    progress: &Progress,
) -> Result<RestoreReport, RestoreError> {
    let mut report = RestoreReport::default();
    let mut in_flight: VecDeque<JoinHandle<Result<(), RestoreError>>> = VecDeque::new();
    let join = |task: JoinHandle<Result<(), RestoreError>>| {
        runtime
            .block_on(task)
            .map_err(|e| RestoreError::Task(e.to_string()))?
    };
    while let Some(crate::restore::Planned { entry, present }) = entries.blocking_recv() {
        if !has_object_form(&entry) {
            report.skipped += 1;
            continue;
        }
        if present {
            report.files += 1;
            report.already_present += 1;
            progress.add_files(1);
            continue;
        }
        let key = target.location.key(&String::from_utf8_lossy(&entry.path));
        let meta = entry.object.clone().unwrap_or_default();
        let size = usize::try_from(entry.size).unwrap_or(usize::MAX);
        if size <= PART_SIZE {
            let mut body = Vec::with_capacity(size);
            let mut held = 0u64;
            let mut expand = Bytes::of(&entry);
            for _ in &entry.chunks {
                let plain = next_plain(&mut plains, runtime)?;
                held += plain.len() as u64;
                expand.push(&plain, &mut body, usize::MAX, &mut |_| Ok(()))?;
            }
            check_size(target, &key, &entry, held)?;
            expand.finish(&mut body, usize::MAX, &mut |_| Ok(()))?;
            progress.add_read(body.len() as u64);
            while in_flight.len() >= PUTS_IN_FLIGHT {
                if let Some(task) = in_flight.pop_front() {
                    join(task)?;
                }
            }
            let put = put_whole_object(target.clone(), key, meta, body);
            in_flight.push_back(runtime.spawn(put));
        } else {
            put_multipart(target, &key, &meta, &entry, &mut plains, runtime, progress)?;
        }
        report.wrote(&entry.path);
        report.files += 1;
        report.bytes += entry.size;
        report.chunks += entry.chunks.len() as u64;
        progress.add_files(1);
    }
    for task in in_flight {
        join(task)?;
    }
    Ok(report)
}

/// Whether an entry becomes an object: files and objects do; directories,
/// symlinks and hard links have no object form.
pub fn has_object_form(entry: &ManifestEntry) -> bool {
    matches!(
        EntryType::try_from(entry.r#type),
        Ok(EntryType::Object | EntryType::File)
    ) && entry.hardlink_to.is_empty()
}

fn check_size(
    target: &BucketTarget,
    key: &str,
    entry: &ManifestEntry,
    got: u64,
) -> Result<(), RestoreError> {
    match size_mismatch(entry, got) {
        None => Ok(()),
        Some(reason) => Err(target.err(key, reason)),
    }
}

fn user_metadata(meta: &ObjectMeta) -> Option<HashMap<String, String>> {
    (!meta.user.is_empty()).then(|| {
        meta.user
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect()
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

async fn put_whole_object(
    target: Arc<BucketTarget>,
    key: String,
    meta: ObjectMeta,
    body: Vec<u8>,
) -> Result<(), RestoreError> {
    let request = target
        .client
        .put_object()
        .bucket(&target.location.bucket)
        .key(&key)
        .set_content_type(non_empty(&meta.content_type))
        .set_content_encoding(non_empty(&meta.content_encoding))
        .set_content_disposition(non_empty(&meta.content_disposition))
        .set_content_language(non_empty(&meta.content_language))
        .set_cache_control(non_empty(&meta.cache_control))
        .set_metadata(user_metadata(&meta))
        .body(ByteStream::from(body));
    let put = put_object(request, &target.location)
        .await
        .map_err(|e| target.err(&key, describe(&e)))?;
    target.tell_written(&key, put.e_tag().unwrap_or_default());
    tracing::debug!(bucket = target.location.bucket, key, "object written");
    Ok(())
}

/// A large object in parts, each network call waited for on this
/// (blocking) thread, so a sparse file's holes become zeros a part at a
/// time however long they are.
fn put_multipart(
    target: &BucketTarget,
    key: &str,
    meta: &ObjectMeta,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &Handle,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let started = MultipartUpload::start(&target.client, &target.location, key, |b| {
        b.set_content_type(non_empty(&meta.content_type))
            .set_content_encoding(non_empty(&meta.content_encoding))
            .set_content_disposition(non_empty(&meta.content_disposition))
            .set_content_language(non_empty(&meta.content_language))
            .set_cache_control(non_empty(&meta.cache_control))
            .set_metadata(user_metadata(meta))
    });
    let mut upload = runtime.block_on(started).map_err(|e| target.err(key, e))?;
    let uploaded = upload_parts(target, key, &mut upload, entry, plains, runtime, progress);
    let completed = match uploaded {
        Ok(()) => runtime
            .block_on(upload.complete())
            .map_err(|e| target.err(key, e)),
        Err(e) => Err(e),
    };
    match completed {
        Ok(etag) => {
            target.tell_written(key, &etag);
            Ok(())
        }
        Err(e) => {
            runtime.block_on(upload.abort());
            Err(e)
        }
    }
}

/// Pours the entry's chunks (and a sparse file's holes, as zeros) into
/// parts; checks the size before the last part goes up, so a wrong object
/// never completes.
fn upload_parts(
    target: &BucketTarget,
    key: &str,
    upload: &mut MultipartUpload,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    runtime: &Handle,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let mut part: Vec<u8> = Vec::with_capacity(PART_SIZE);
    let mut held = 0u64;
    let mut expand = Bytes::of(entry);
    let mut send = |part: &mut Vec<u8>| -> Result<(), RestoreError> {
        let body = std::mem::replace(part, Vec::with_capacity(PART_SIZE));
        progress.add_read(body.len() as u64);
        runtime
            .block_on(upload.part(body))
            .map_err(|e| target.err(key, e))
    };
    for _ in &entry.chunks {
        let plain = next_plain(plains, runtime)?;
        held += plain.len() as u64;
        expand.push(&plain, &mut part, PART_SIZE, &mut send)?;
    }
    check_size(target, key, entry, held)?;
    expand.finish(&mut part, PART_SIZE, &mut send)?;
    if !part.is_empty() {
        send(&mut part)?;
    }
    Ok(())
}

/// An entry's bytes as an object holds them: its data, and a sparse file's
/// holes as zeros.
enum Bytes {
    Dense,
    Sparse(crate::sparse::Expander),
}

impl Bytes {
    fn of(entry: &ManifestEntry) -> Self {
        match ferry_proto::manifest::Layout::of(entry) {
            Ok(layout) if !layout.holes.is_empty() => {
                Self::Sparse(crate::sparse::Expander::new(&layout))
            }
            _ => Self::Dense,
        }
    }

    fn push(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        piece: usize,
        flush: &mut impl FnMut(&mut Vec<u8>) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        match self {
            Self::Sparse(expander) => expander.push(data, out, piece, flush),
            Self::Dense => {
                let mut data = data;
                while !data.is_empty() {
                    let take = data.len().min(piece.saturating_sub(out.len()).max(1));
                    out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if out.len() >= piece {
                        flush(out)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(
        &mut self,
        out: &mut Vec<u8>,
        piece: usize,
        flush: &mut impl FnMut(&mut Vec<u8>) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        match self {
            Self::Sparse(expander) => expander.finish(out, piece, flush),
            Self::Dense => Ok(()),
        }
    }
}
