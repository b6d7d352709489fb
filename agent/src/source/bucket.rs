//! The objects of an S3 bucket (below a key prefix) as a source.
//!
//! A scan is a ListObjectsV2 walk, page by page (1000 keys at a time, so
//! memory stays flat for millions of keys), in key byte order. A listing that
//! fails part way fails the scan: the backup then commits nothing, so an
//! object is never taken as deleted because a listing broke.
//!
//! An object's stamp is what tells it changed without reading it: size,
//! last-modified (whole seconds: listings give milliseconds, GET and HEAD
//! only seconds) and, in the `inode` slot, a 64-bit tag of its etag and
//! version id. A GET reads one version atomically, so [`Content::Object`]
//! carries that version's stamp and metadata; no second look is needed.
//!
//! The [`Source`] trait is blocking (it runs on the scan threads); requests
//! run on the agent's Tokio runtime through its handle.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::DateTime;
use ferry_proto::manifest::check_object_key;
use ferry_proto::v1::{MetaPair, ObjectMeta};
use ferry_s3::{S3Location, check_bucket, describe, http_status};
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::{Content, Skipped, Source, SourceEntry, SourceError};
use crate::journal::FileStamp;

/// Mode recorded for objects (a regular file, rw-r--r--), for restores into a directory.
const OBJECT_MODE: u32 = 0o100_644;

pub struct BucketSource {
    client: Client,
    location: S3Location,
    runtime: Handle,
}

impl BucketSource {
    /// Connects and checks that the bucket exists and may be read.
    ///
    /// # Errors
    /// Bad settings, an unreachable endpoint, a missing bucket or refused
    /// credentials, named with the bucket.
    pub async fn open(location: S3Location) -> Result<Self, SourceError> {
        let client = location
            .client()
            .await
            .map_err(|e| failure(&location, "connect", "", e.to_string()))?;
        check_bucket(&client, &location)
            .await
            .map_err(|reason| failure(&location, "open bucket", "", reason))?;
        Ok(Self {
            client,
            location,
            runtime: Handle::current(),
        })
    }

    /// The current stamp and etag of `key` (relative to the prefix), or
    /// `None` if there is no such object.
    ///
    /// # Errors
    /// The request fails for another reason than "not found".
    pub async fn head(&self, key: &str) -> Result<Option<(FileStamp, String)>, SourceError> {
        let answer = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.location.key(key))
            .send()
            .await;
        match answer {
            Ok(head) => {
                let etag = head.e_tag().unwrap_or_default().to_owned();
                let stamp = object_stamp(
                    size_of(head.content_length()),
                    head.last_modified(),
                    &etag,
                    "",
                );
                Ok(Some((stamp, etag)))
            }
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.err("head", key.as_bytes(), describe(&e))),
        }
    }

    fn err(&self, op: &'static str, key: &[u8], reason: String) -> SourceError {
        failure(&self.location, op, &String::from_utf8_lossy(key), reason)
    }

    fn key_of(&self, entry: &SourceEntry) -> String {
        self.location.key(&String::from_utf8_lossy(&entry.path))
    }
}

fn failure(location: &S3Location, op: &'static str, key: &str, reason: String) -> SourceError {
    SourceError::Io {
        root: format!("s3://{}/{}", location.bucket, location.prefix),
        op,
        path: key.to_owned(),
        source: std::io::Error::other(reason),
    }
}

/// A 64-bit tag of an object version's identity.
pub fn version_tag(etag: &str, version_id: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(etag.as_bytes());
    hasher.update(&[0]);
    hasher.update(version_id.as_bytes());
    let bytes = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// An object's stamp (see the module docs).
pub fn object_stamp(
    size: u64,
    last_modified: Option<&DateTime>,
    etag: &str,
    version_id: &str,
) -> FileStamp {
    FileStamp {
        size,
        mtime_ns: last_modified.map_or(0, |t| t.secs().saturating_mul(1_000_000_000)),
        ctime_ns: 0,
        inode: version_tag(etag, version_id),
        mode: OBJECT_MODE,
    }
}

fn size_of(len: Option<i64>) -> u64 {
    len.and_then(|l| u64::try_from(l).ok()).unwrap_or(0)
}

impl Source for BucketSource {
    fn describe(&self) -> String {
        match &self.location.endpoint {
            Some(endpoint) => format!(
                "bucket s3://{}/{} at {endpoint}",
                self.location.bucket, self.location.prefix
            ),
            None => format!(
                "bucket s3://{}/{}",
                self.location.bucket, self.location.prefix
            ),
        }
    }

    fn holds_objects(&self) -> bool {
        true
    }

    fn scan(
        &self,
        visit: &mut dyn FnMut(SourceEntry) -> Result<(), SourceError>,
    ) -> Result<Vec<Skipped>, SourceError> {
        let mut skipped = Vec::new();
        let mut token: Option<String> = None;
        let mut last: Option<Vec<u8>> = None;
        loop {
            let page = self
                .runtime
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.location.bucket)
                        .prefix(&self.location.prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| self.err("list", b"", describe(&e)))?;
            for object in page.contents() {
                let full = object.key().unwrap_or_default();
                let Some(key) = full.strip_prefix(self.location.prefix.as_str()) else {
                    return Err(self.err(
                        "list",
                        full.as_bytes(),
                        "key outside the prefix asked for".into(),
                    ));
                };
                let path = key.as_bytes().to_vec();
                // The manifest's order is the listing's: refuse a server that breaks it.
                if last.as_ref().is_some_and(|l| path <= *l) {
                    return Err(self.err("list", &path, "listing is not in key order".into()));
                }
                last = Some(path.clone());
                if let Err(reason) = check_object_key(&path) {
                    skipped.push(Skipped {
                        path,
                        reason: reason.into(),
                    });
                    continue;
                }
                let etag = object.e_tag().unwrap_or_default();
                let stamp = object_stamp(size_of(object.size()), object.last_modified(), etag, "");
                let meta = ObjectMeta {
                    etag: etag.to_owned(),
                    ..Default::default()
                };
                visit(SourceEntry::object(path, stamp, Box::new(meta)))?;
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(skipped),
            }
        }
    }

    fn open(&self, entry: &SourceEntry) -> Result<Content, SourceError> {
        let answer = self.runtime.block_on(
            self.client
                .get_object()
                .bucket(&self.location.bucket)
                .key(self.key_of(entry))
                .send(),
        );
        let answer = match answer {
            Ok(a) => a,
            Err(e) if http_status(&e) == Some(404) => return Ok(Content::Vanished),
            Err(e) => return Err(self.err("get", &entry.path, describe(&e))),
        };
        let etag = answer.e_tag().unwrap_or_default().to_owned();
        let version_id = answer.version_id().unwrap_or_default().to_owned();
        let stamp = object_stamp(
            size_of(answer.content_length()),
            answer.last_modified(),
            &etag,
            // The listing has no version ids (ListObjectsV2); keep the stamps comparable.
            "",
        );
        let user: BTreeMap<String, String> = answer
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let text = |v: Option<&str>| v.unwrap_or_default().to_owned();
        let meta = ObjectMeta {
            etag,
            version_id,
            content_type: text(answer.content_type()),
            content_encoding: text(answer.content_encoding()),
            content_disposition: text(answer.content_disposition()),
            content_language: text(answer.content_language()),
            cache_control: text(answer.cache_control()),
            user: user
                .into_iter()
                .map(|(name, value)| MetaPair { name, value })
                .collect(),
        };
        let reader =
            SyncIoBridge::new_with_handle(answer.body.into_async_read(), self.runtime.clone());
        Ok(Content::Object {
            reader: Box::new(reader),
            stamp,
            meta: Box::new(meta),
        })
    }

    fn stamp_now(&self, entry: &SourceEntry) -> Result<Option<FileStamp>, SourceError> {
        let key = String::from_utf8_lossy(&entry.path);
        Ok(self
            .runtime
            .block_on(self.head(&key))?
            .map(|(stamp, _)| stamp))
    }
}
