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
use crate::restore::{Plain, RestoreError, RestoreReport, next_plain, size_mismatch};

/// Objects up to this size are uploaded with one PUT; larger ones in parts of it.
const PART_SIZE: usize = 16 << 20;
/// PUTs in flight at once (small objects are bound by round trips, not bytes).
const PUTS_IN_FLIGHT: usize = 8;

/// A bucket (and prefix) to restore into.
pub struct BucketTarget {
    client: Client,
    location: S3Location,
}

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
        Ok(Self { client, location })
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.location.bucket, self.location.prefix)
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
    while let Some(crate::restore::Planned { entry, .. }) = entries.blocking_recv() {
        match EntryType::try_from(entry.r#type) {
            Ok(EntryType::Object | EntryType::File) if entry.hardlink_to.is_empty() => {}
            // Directories, symlinks and hard links have no object form.
            _ => {
                report.skipped += 1;
                continue;
            }
        }
        let key = target.location.key(&String::from_utf8_lossy(&entry.path));
        let meta = entry.object.clone().unwrap_or_default();
        let size = usize::try_from(entry.size).unwrap_or(usize::MAX);
        if size <= PART_SIZE {
            let mut body = Vec::with_capacity(size);
            for _ in &entry.chunks {
                body.extend_from_slice(&next_plain(&mut plains, runtime)?);
            }
            check_size(target, &key, &entry, body.len() as u64)?;
            progress.add_read(body.len() as u64);
            while in_flight.len() >= PUTS_IN_FLIGHT {
                if let Some(task) = in_flight.pop_front() {
                    join(task)?;
                }
            }
            let put = put_whole_object(target.clone(), key, meta, body);
            in_flight.push_back(runtime.spawn(put));
        } else {
            runtime.block_on(put_multipart(
                target,
                &key,
                &meta,
                &entry,
                &mut plains,
                progress,
            ))?;
        }
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
    put_object(request, &target.location)
        .await
        .map_err(|e| target.err(&key, describe(&e)))?;
    tracing::debug!(bucket = target.location.bucket, key, "object written");
    Ok(())
}

async fn put_multipart(
    target: &BucketTarget,
    key: &str,
    meta: &ObjectMeta,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let mut upload = MultipartUpload::start(&target.client, &target.location, key, |b| {
        b.set_content_type(non_empty(&meta.content_type))
            .set_content_encoding(non_empty(&meta.content_encoding))
            .set_content_disposition(non_empty(&meta.content_disposition))
            .set_content_language(non_empty(&meta.content_language))
            .set_cache_control(non_empty(&meta.cache_control))
            .set_metadata(user_metadata(meta))
    })
    .await
    .map_err(|e| target.err(key, e))?;
    let uploaded = upload_parts(target, key, &mut upload, entry, plains, progress).await;
    let completed = match uploaded {
        Ok(()) => upload.complete().await.map_err(|e| target.err(key, e)),
        Err(e) => Err(e),
    };
    if completed.is_err() {
        upload.abort().await;
    }
    completed
}

/// Pours the entry's chunks into parts; checks the size before the last
/// part goes up, so a wrong object never completes.
async fn upload_parts(
    target: &BucketTarget,
    key: &str,
    upload: &mut MultipartUpload,
    entry: &ManifestEntry,
    plains: &mut mpsc::Receiver<Plain>,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let mut part: Vec<u8> = Vec::with_capacity(PART_SIZE);
    let mut total = 0u64;
    let chunks = entry.chunks.len();
    for index in 0..chunks {
        let task = plains.recv().await.ok_or(RestoreError::Aborted)?;
        let plain = task
            .await
            .map_err(|e| RestoreError::Task(e.to_string()))??;
        total += plain.len() as u64;
        part.extend_from_slice(&plain);
        let last = index + 1 == chunks;
        if last {
            check_size(target, key, entry, total)?;
        }
        while part.len() >= PART_SIZE || (last && !part.is_empty()) {
            let take = part.len().min(PART_SIZE);
            let body: Vec<u8> = part.drain(..take).collect();
            progress.add_read(body.len() as u64);
            upload.part(body).await.map_err(|e| target.err(key, e))?;
        }
    }
    Ok(())
}
