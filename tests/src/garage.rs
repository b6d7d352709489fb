//! A throwaway single-node Garage (a real S3 server) on loopback ports, one
//! per test or per "site". `scripts/setup.sh test` installs the binary
//! (`cargo install garage`); `GARAGE` may point at another one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fresh::{free_port, hex32};

/// The S3 region Garage instances answer to.
pub const REGION: &str = "garage";

/// A running Garage with one access key that may create buckets.
pub struct Garage {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub s3_port: u16,
    pub key_id: String,
    secret: String,
}

fn garage_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GARAGE") {
        return PathBuf::from(path);
    }
    let in_cargo = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/garage"))
        .filter(|p| p.exists());
    in_cargo.unwrap_or_else(|| PathBuf::from("garage"))
}

impl Garage {
    /// Starts Garage and waits until it serves S3.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin}"
"#,
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
            secret = hex32(),
            admin = hex32(),
        );
        std::fs::write(dir.path().join("garage.toml"), config).expect("write garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("garage.log");
        let child = Command::new(garage_binary())
            .arg("-c")
            .arg(dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start garage ({e}): run `scripts/setup.sh test`, which builds it, or set GARAGE"
                )
            });
        let mut garage = Garage {
            dir,
            child: Some(child),
            s3_port,
            key_id: String::new(),
            secret: String::new(),
        };
        garage.wait_until_up();
        let node = garage.cli(&["node", "id", "-q"]);
        let node = String::from_utf8_lossy(&node.stdout);
        let node = node
            .lines()
            .next()
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        let key = garage.cli(&["key", "create", "ferry-test"]);
        let text = String::from_utf8_lossy(&key.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {name} in `garage key create` output: {text}"))
        };
        garage.key_id = field("Key ID:");
        garage.secret = field("Secret key:");
        garage.cli(&["key", "allow", "--create-bucket", "ferry-test"]);
        std::fs::write(
            garage.credentials_file(),
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                garage.key_id, garage.secret
            ),
        )
        .expect("write credentials");
        garage
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.try_cli(&["status"]);
            if status.status.success() {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!("garage exited with {exit}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    fn try_cli(&self, args: &[&str]) -> Output {
        Command::new(garage_binary())
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .expect("run garage cli")
    }

    /// Runs a `garage` admin command; panics with its output on failure.
    pub fn cli(&self, args: &[&str]) -> Output {
        let out = self.try_cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Creates `bucket` and lets the test key read and write it.
    pub fn create_bucket(&self, bucket: &str) {
        self.cli(&["bucket", "create", bucket]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "ferry-test",
        ]);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// An AWS shared-credentials file holding the test key as `[default]`.
    pub fn credentials_file(&self) -> PathBuf {
        self.dir.path().join("credentials")
    }

    /// `bucket` (under `prefix`) on this server, with the test key.
    pub fn location(&self, bucket: &str, prefix: &str) -> ferry_s3::S3Location {
        ferry_s3::S3Location {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.into()),
            bucket: bucket.into(),
            prefix: prefix.into(),
            path_style: None,
            profile: None,
            credentials_file: Some(self.credentials_file()),
            sign_payload: None,
        }
    }

    /// A TOML `s3` table for `bucket` on this server.
    pub fn s3_toml(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "{{ endpoint = \"{}\", region = \"{REGION}\", bucket = \"{bucket}\", prefix = \"{prefix}\", credentials-file = \"{}\" }}",
            self.endpoint(),
            self.credentials_file().display()
        )
    }

    /// Stops the server (SIGKILL) but keeps its data; `resume` starts it again
    /// on the same ports.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again with the same data and ports.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "garage is running");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("garage.log"))
            .expect("garage.log");
        self.child = Some(
            Command::new(garage_binary())
                .arg("-c")
                .arg(self.dir.path().join("garage.toml"))
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("restart garage"),
        );
        self.wait_until_up();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PUTs `data` under `key`, with a content type and user metadata if given.
pub async fn put_object(
    client: &ferry_s3::aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    content_type: Option<&str>,
    user: &[(&str, &str)],
) {
    let mut request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ferry_s3::aws_sdk_s3::primitives::ByteStream::from(data))
        .set_content_type(content_type.map(str::to_owned));
    for (k, v) in user {
        request = request.metadata(*k, *v);
    }
    request.send().await.expect("put object");
}

/// An object as the test compares it.
#[derive(Debug, PartialEq)]
pub struct Object {
    pub bytes_hash: String,
    pub size: usize,
    pub content_type: Option<String>,
    pub user: std::collections::BTreeMap<String, String>,
}

/// Every object under `prefix`, by key relative to it.
pub async fn objects_of(
    client: &ferry_s3::aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, Object> {
    let mut out = std::collections::BTreeMap::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            let key = o.key().unwrap();
            let got = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let content_type = got.content_type().map(str::to_owned);
            let user = got
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let data = got.body.collect().await.unwrap().to_vec();
            out.insert(
                key.strip_prefix(prefix).unwrap().to_owned(),
                Object {
                    bytes_hash: blake3::hash(&data).to_hex().to_string(),
                    size: data.len(),
                    content_type,
                    user,
                },
            );
        }
    }
    out
}
