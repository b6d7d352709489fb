//! A pool in an S3 bucket (AWS, Garage, MinIO, Ceph RGW...).
//!
//! Object `packs/ab/x.pack` is the key `<prefix>packs/ab/x.pack`. A PUT is
//! atomic on S3 and the server acknowledges it only once stored, which is
//! the durability this pool promises; objects above the multipart threshold
//! go up in parts, completed in one request, so a reader never sees part of
//! one either. Reads of a pack's blobs are ranged GETs. Nothing here relies
//! on conditional writes, versioning or object lock: Garage has none of them,
//! and names are content hashes, so a second PUT of a name writes the same bytes.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use ferry_s3::{MultipartUpload, S3Location, check_bucket, describe, http_status, put_object};

use super::{BlobStore, BlobStoreError, BoxFuture, validate_name};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
/// Size of each part but the last (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 16 << 20;
const MIN_PART_SIZE: usize = 5 << 20;

/// A [`BlobStore`] in an S3 bucket under a key prefix.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    location: S3Location,
    multipart_threshold: usize,
    part_size: usize,
}

impl S3Store {
    /// A store at `location`. Checks that the bucket exists and that the
    /// credentials may read it, so a misconfigured pool fails at start, not
    /// at the first backup.
    ///
    /// # Errors
    /// Invalid settings, an unreachable endpoint, a missing bucket or
    /// refused credentials, each named with the bucket.
    pub async fn open(location: S3Location) -> Result<Self, BlobStoreError> {
        let client = location
            .client()
            .await
            .map_err(|e| backend("connect to", &location.bucket, e))?;
        check_bucket(&client, &location)
            .await
            .map_err(|reason| backend("open bucket", &location.bucket, reason))?;
        Ok(Self {
            client,
            location,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        })
    }

    /// Changes when uploads go multipart and the part size (tests use small
    /// ones to exercise the multipart path). `part_size` is at least 5 MiB.
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    fn key(&self, name: &str) -> Result<String, BlobStoreError> {
        validate_name(name)?;
        Ok(self.location.key(name))
    }

    async fn put_multipart(
        &self,
        key: &str,
        name: &str,
        data: Vec<u8>,
    ) -> Result<(), BlobStoreError> {
        let mut upload = MultipartUpload::start(&self.client, &self.location, key, |b| b)
            .await
            .map_err(|e| backend("start multipart upload of", name, e))?;
        let mut sent = Ok(());
        for piece in data.chunks(self.part_size) {
            sent = upload.part(piece.to_vec()).await;
            if sent.is_err() {
                break;
            }
        }
        // Completed only when every part went up: `and` would complete a
        // short object before it saw the failed part.
        let completed = match sent {
            Ok(()) => upload.complete().await.map(drop),
            Err(e) => Err(e),
        };
        match completed {
            Ok(()) => Ok(()),
            Err(e) => {
                upload.abort().await;
                Err(backend("multipart upload of", name, e))
            }
        }
    }

    async fn read(&self, name: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, BlobStoreError> {
        let key = self.key(name)?;
        let mut request = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&key);
        if let Some((offset, len)) = range {
            request = request.range(format!("bytes={offset}-{}", offset + len - 1));
        }
        let answer = request.send().await.map_err(|e| match http_status(&e) {
            Some(404) => BlobStoreError::NotFound {
                name: name.to_owned(),
            },
            Some(416) => out_of_range(name, range, None),
            _ => backend("get", name, describe(&e)),
        })?;
        let total = answer
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok());
        // Straight into one buffer of the expected size as the pieces
        // arrive: gathering them first and then joining them held the
        // object twice (the hub's peak memory on a restore).
        let expected = range.map_or(0, |(_, len)| len);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        let mut stream = answer.body;
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| backend("read body of", name, describe(&e)))?;
            if range.is_some() && (body.len() + piece.len()) as u64 > expected {
                return Err(out_of_range(name, range, total));
            }
            body.extend_from_slice(&piece);
        }
        if let Some((_, len)) = range
            && body.len() as u64 != len
        {
            return Err(out_of_range(name, range, total));
        }
        Ok(body)
    }
}

fn out_of_range(name: &str, range: Option<(u64, u64)>, size: Option<u64>) -> BlobStoreError {
    let (offset, len) = range.unwrap_or_default();
    BlobStoreError::OutOfRange {
        name: name.to_owned(),
        offset,
        len,
        // Unknown when the server only said "416"; the range is what matters.
        size: size.unwrap_or(0),
    }
}

fn backend(
    op: &'static str,
    name: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> BlobStoreError {
    BlobStoreError::Backend {
        op,
        name: name.to_owned(),
        source: source.into(),
    }
}

impl BlobStore for S3Store {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            let key = self.key(name)?;
            if data.len() > self.multipart_threshold {
                return self.put_multipart(&key, name, data).await;
            }
            let request = self
                .client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .body(ByteStream::from(data));
            put_object(request, &self.location)
                .await
                .map(drop)
                .map_err(|e| backend("put", name, describe(&e)))
        })
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        Box::pin(self.read(name, None))
    }

    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        Box::pin(async move {
            if offset.checked_add(len).is_none() {
                self.key(name)?;
                return Err(out_of_range(name, Some((offset, len)), None));
            }
            if len == 0 {
                // S3 has no empty range; the object must still exist and reach `offset`.
                let size = self.size(name).await?;
                return match offset <= size {
                    true => Ok(Vec::new()),
                    false => Err(out_of_range(name, Some((offset, len)), Some(size))),
                };
            }
            self.read(name, Some((offset, len))).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>> {
        Box::pin(async move {
            let full_prefix = self.location.key(prefix);
            let mut names = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.location.bucket)
                .prefix(&full_prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| backend("list", prefix, describe(&e)))?;
                for object in page.contents() {
                    let Some(name) = object
                        .key()
                        .and_then(|k| k.strip_prefix(self.location.prefix.as_str()))
                    else {
                        continue;
                    };
                    names.push(name.to_owned());
                }
            }
            // S3 lists in key byte order already; sorting keeps the contract
            // even against a server that does not.
            names.sort_unstable();
            Ok(names)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            let key = self.key(name)?;
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .send()
                .await
                .map(drop)
                .map_err(|e| backend("delete", name, describe(&e)))
        })
    }

    fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>> {
        Box::pin(async move {
            let key = self.key(name)?;
            let head = self
                .client
                .head_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| match http_status(&e) {
                    Some(404) => BlobStoreError::NotFound {
                        name: name.to_owned(),
                    },
                    _ => backend("head", name, describe(&e)),
                })?;
            head.content_length()
                .and_then(|l| u64::try_from(l).ok())
                .ok_or_else(|| backend("head", name, "no content length in the answer"))
        })
    }
}
