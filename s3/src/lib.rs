//! Where an S3 bucket is and how to reach it: the settings block shared by
//! the hub's S3 pools and the agent's bucket sources and restore targets,
//! and the one place that turns it into a client.
//!
//! Credentials never appear in these settings: they come from the standard
//! AWS chain (environment variables, the shared credentials file and its
//! profiles, instance metadata), so `profile` names which one to use.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_s3::config::Region;
use serde::Deserialize;

pub use aws_sdk_s3;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

/// Attempts per request (the first and its retries, with exponential backoff).
const MAX_ATTEMPTS: u32 = 6;
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request; a pack of 16 MiB goes well within it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// An S3 bucket and how to reach it (a TOML table in hub and agent configs).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Location {
    /// Endpoint URL of an S3-compatible server, e.g. "http://127.0.0.1:3900";
    /// AWS itself when absent.
    pub endpoint: Option<String>,
    /// Region; from `AWS_REGION` or the profile when absent.
    pub region: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket ("" for the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`); defaults to on when an
    /// endpoint is given, since self-hosted servers rarely have bucket DNS.
    pub path_style: Option<bool>,
    /// Profile of the shared AWS config and credentials files.
    pub profile: Option<String>,
    /// A credentials file in the AWS shared-credentials format to take the
    /// keys from (its `profile`, or `default`), instead of the standard chain.
    /// Lets one process reach several servers with different keys.
    pub credentials_file: Option<PathBuf>,
    /// Whether uploads put a SHA-256 of their body into the request's
    /// signature. Absent: only where nothing else keeps the body from being
    /// altered on the way, i.e. plain HTTP to a host that is not this one.
    /// Over HTTPS, TLS authenticates the body; on loopback it crosses no
    /// network. Either way the body still carries a CRC32 the server checks.
    pub sign_payload: Option<bool>,
}

/// True when the host of `authority[/path]` (after `http://`) is this
/// machine: `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    #[error("S3 bucket {bucket:?}: no region: set `region`, AWS_REGION or the profile's region")]
    NoRegion { bucket: String },
    #[error("S3 bucket {bucket:?}: {reason}")]
    Invalid { bucket: String, reason: String },
}

impl S3Location {
    /// Checks what can be checked without a connection.
    ///
    /// # Errors
    /// An empty bucket name, an endpoint that is not http(s), or a prefix
    /// that starts with '/'.
    pub fn validate(&self) -> Result<(), S3ConfigError> {
        let invalid = |reason: &str| S3ConfigError::Invalid {
            bucket: self.bucket.clone(),
            reason: reason.into(),
        };
        if self.bucket.is_empty() {
            return Err(invalid("empty bucket name"));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid("endpoint must start with http:// or https://"));
        }
        if self.prefix.starts_with('/') {
            return Err(invalid("prefix must not start with '/'"));
        }
        Ok(())
    }

    /// Makes a relative `credentials-file` relative to `base` (the config's directory).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(file) = &self.credentials_file {
            self.credentials_file = Some(base.join(file));
        }
    }

    /// Whether uploads sign their body (see `sign_payload`).
    pub fn signs_payload(&self) -> bool {
        if let Some(sign) = self.sign_payload {
            return sign;
        }
        match self.endpoint.as_deref() {
            // AWS, over HTTPS.
            None => false,
            Some(endpoint) => match endpoint.strip_prefix("http://") {
                None => false,
                Some(rest) => !is_loopback_authority(rest),
            },
        }
    }

    /// `key` under this location's prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A client for this location, with retries and timeouts set.
    ///
    /// # Errors
    /// Invalid settings, or no region from any source.
    pub async fn client(&self) -> Result<aws_sdk_s3::Client, S3ConfigError> {
        self.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(file) = &self.credentials_file {
            if !file.is_file() {
                return Err(S3ConfigError::Invalid {
                    bucket: self.bucket.clone(),
                    reason: format!("credentials-file {} does not exist", file.display()),
                });
            }
            let files = EnvConfigFiles::builder()
                .with_file(EnvConfigFileKind::Credentials, file)
                .build();
            let mut provider = ProfileFileCredentialsProvider::builder().profile_files(files);
            if let Some(profile) = &self.profile {
                provider = provider.profile_name(profile);
            }
            loader = loader.credentials_provider(provider.build());
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(S3ConfigError::NoRegion {
                bucket: self.bucket.clone(),
            });
        }
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        config = config.force_path_style(self.path_style.unwrap_or(self.endpoint.is_some()));
        tracing::debug!(
            bucket = %self.bucket,
            endpoint = self.endpoint.as_deref().unwrap_or("aws"),
            "S3 client ready"
        );
        Ok(aws_sdk_s3::Client::from_conf(config.build()))
    }
}

/// The HTTP status of a failed request, when the server answered at all.
pub fn http_status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Checks that `location`'s bucket exists and the credentials may use it,
/// so a misconfigured pool, source or target fails at start with a reason
/// an operator can act on.
///
/// # Errors
/// The reason, in words.
pub async fn check_bucket(client: &Client, location: &S3Location) -> Result<(), String> {
    client
        .head_bucket()
        .bucket(&location.bucket)
        .send()
        .await
        .map(drop)
        .map_err(|e| match http_status(&e) {
            Some(404) => "bucket does not exist".to_owned(),
            Some(403) => "access denied (check the credentials and their grants)".to_owned(),
            _ => describe(&e),
        })
}

/// Sends a PutObject, its body signed or not as `location` says
/// ([`S3Location::signs_payload`]).
///
/// # Errors
/// As the request's.
pub async fn put_object(
    request: PutObjectFluentBuilder,
    location: &S3Location,
) -> Result<PutObjectOutput, SdkError<PutObjectError, HttpResponse>> {
    match location.signs_payload() {
        true => request.send().await,
        false => request.customize().disable_payload_signing().send().await,
    }
}

/// A multipart upload under way: parts go up one by one (each but the last
/// at least 5 MiB), and the object appears only when `complete` succeeds.
/// Dropped without `complete`, call `abort` so the parts do not linger.
pub struct MultipartUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    sign_payload: bool,
    parts: Vec<CompletedPart>,
}

impl MultipartUpload {
    /// Starts an upload; `headers` may set content type and metadata.
    ///
    /// # Errors
    /// The request fails (described).
    pub async fn start(
        client: &Client,
        location: &S3Location,
        key: &str,
        headers: impl FnOnce(CreateMultipartUploadFluentBuilder) -> CreateMultipartUploadFluentBuilder,
    ) -> Result<Self, String> {
        let bucket = &location.bucket;
        let created = headers(client.create_multipart_upload().bucket(bucket).key(key))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let upload_id = created
            .upload_id()
            .ok_or("no upload id in the answer")?
            .to_owned();
        Ok(Self {
            client: client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            sign_payload: location.signs_payload(),
            parts: Vec::new(),
        })
    }

    /// Uploads the next part.
    ///
    /// # Errors
    /// The request fails (described), or there are more than 10,000 parts.
    pub async fn part(&mut self, body: Vec<u8>) -> Result<(), String> {
        let number = i32::try_from(self.parts.len() + 1).map_err(|_| "too many parts")?;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body));
        let answer = match self.sign_payload {
            true => request.send().await,
            false => request.customize().disable_payload_signing().send().await,
        }
        .map_err(|e| describe(&e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(answer.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Makes the object appear, whole; gives the ETag the server gave it.
    ///
    /// # Errors
    /// The request fails (described); then `abort`.
    pub async fn complete(&mut self) -> Result<String, String> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map(|done| done.e_tag().unwrap_or_default().to_owned())
            .map_err(|e| describe(&e))
    }

    /// Best effort: removes the uploaded parts (a bucket lifecycle rule
    /// catches what a failed abort leaves).
    pub async fn abort(self) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key = %self.key, error = %describe(&e), "could not abort a failed multipart upload");
        }
    }
}

/// The full cause chain of an SDK error on one line ("service error: NoSuchBucket: ..."),
/// which the SDK's own `Display` leaves out. Holds no credentials: the SDK
/// never puts them in errors.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_validate() {
        let loc: S3Location = toml::from_str(
            "endpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\nbucket = \"b\"\nprefix = \"p/\"\n",
        )
        .unwrap();
        assert!(loc.validate().is_ok());
        assert_eq!(loc.key("x"), "p/x");
        let err = toml::from_str::<S3Location>("bucket = \"b\"\nsecret-key = \"s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        for (bad, why) in [
            (
                S3Location {
                    bucket: String::new(),
                    ..loc.clone()
                },
                "empty",
            ),
            (
                S3Location {
                    endpoint: Some("127.0.0.1:3900".into()),
                    ..loc.clone()
                },
                "http",
            ),
            (
                S3Location {
                    prefix: "/x".into(),
                    ..loc.clone()
                },
                "prefix",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn bodies_are_signed_only_where_nothing_else_protects_them() {
        let at = |endpoint: Option<&str>, sign: Option<bool>| S3Location {
            endpoint: endpoint.map(str::to_owned),
            region: None,
            bucket: "b".into(),
            prefix: String::new(),
            path_style: None,
            profile: None,
            credentials_file: None,
            sign_payload: sign,
        };
        for (endpoint, signed) in [
            (None, false),
            (Some("https://s3.example.net"), false),
            (Some("https://10.0.0.5:9000/"), false),
            (Some("http://127.0.0.1:3900"), false),
            (Some("http://127.8.9.10"), false),
            (Some("http://localhost:3900/"), false),
            (Some("http://LOCALHOST"), false),
            (Some("http://[::1]:3900"), false),
            (Some("http://user@127.0.0.1:3900"), false),
            (Some("http://10.0.0.5:9000"), true),
            (Some("http://garage.internal:3900"), true),
            (Some("http://[fd00::1]:3900"), true),
            (Some("http://127.0.0.1.evil.example"), true),
            (Some("http://localhost.evil.example:3900"), true),
        ] {
            assert_eq!(at(endpoint, None).signs_payload(), signed, "{endpoint:?}");
        }
        // The setting wins either way.
        assert!(at(Some("https://s3.example.net"), Some(true)).signs_payload());
        assert!(!at(Some("http://10.0.0.5:9000"), Some(false)).signs_payload());
        let parsed: S3Location = toml::from_str("bucket = \"b\"\nsign-payload = true\n").unwrap();
        assert_eq!(parsed.sign_payload, Some(true));
    }
}
