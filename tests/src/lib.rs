//! Harness for end-to-end tests: starts the real `ferry-hub` and
//! `ferry-agent` binaries on loopback ports, in temporary directories.
//! The binaries must be built first (`cargo build --bins`; `.ci/run` does it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod daemon;
pub mod dataset;
pub mod fresh;
pub mod garage;
pub mod http;
pub mod postgres;
pub mod proxy;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary, next to the test executable's `deps/` dir.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// A running `ferry-hub serve` on 127.0.0.1 with a free port.
pub struct Hub {
    pub data_dir: PathBuf,
    pub addr: String,
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl Hub {
    pub fn start(data_dir: &Path) -> Hub {
        Self::try_start(data_dir, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a hub with a config file (pools); `--data-dir` still overrides it.
    pub fn start_with_config(data_dir: &Path, config: &Path) -> Hub {
        Self::try_start(data_dir, Some(config)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a hub under `dir` (config `dir/hub.toml`, data dir `dir/hub`)
    /// with `tables` in its config (pools, `[tls]`, ...), its catalog on `pg`
    /// when given and else on the embedded SQLite default.
    pub fn start_in(dir: &Path, tables: &str, pg: Option<&postgres::Postgres>) -> Hub {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("hub.toml");
        let catalog = pg.map_or_else(String::new, |pg| postgres_catalog_toml(dir, pg));
        std::fs::write(&config, format!("{catalog}{tables}")).unwrap();
        Self::start_with_config(&dir.join("hub"), &config)
    }

    /// Starts a hub whose only pool is `bucket` on `garage`, its catalog on
    /// `pg` when given, with its config and data dir under `dir`.
    pub fn start_on_s3(
        dir: &Path,
        garage: &garage::Garage,
        bucket: &str,
        pg: Option<&postgres::Postgres>,
    ) -> Hub {
        let pool = format!(
            "[[pool]]\nname = \"garage\"\ns3 = {}\n",
            garage.s3_toml(bucket, "")
        );
        Self::start_in(dir, &pool, pg)
    }

    /// Starts a hub whose catalog is the `ferry` database on `pg` (the
    /// password from a file), with its config and data dir under `dir`.
    pub fn start_on_postgres(dir: &Path, pg: &postgres::Postgres) -> Hub {
        Self::start_in(dir, "", Some(pg))
    }

    /// Starts this hub again, on the same data dir and config, once it has
    /// stopped (see `terminate` and `kill9`).
    pub fn restart(&self) -> Hub {
        assert!(self.child.is_none(), "the hub is still running");
        Self::try_start(&self.data_dir, self.config.as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a hub, or returns its log if it exits before becoming ready.
    pub fn try_start(data_dir: &Path, config: Option<&Path>) -> Result<Hub, String> {
        let ready = data_dir.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .unwrap();
        let mut command = Command::new(bin("ferry-hub"));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferry-hub");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
                return Err(format!(
                    "ferry-hub exited ({status}) before it was ready:\n{log}"
                ));
            }
            assert!(Instant::now() < deadline, "ferry-hub did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Hub {
            data_dir: data_dir.to_path_buf(),
            addr,
            config: config.map(Path::to_path_buf),
            child: Some(child),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address for an agent that dials this hub over TLS.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Runs a `ferry-hub` admin command on this hub's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(bin("ferry-hub"));
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .expect("run ferry-hub")
    }

    /// Adds a site to an existing tenant, its token written to `token_file`.
    pub fn add_site(&self, tenant: &str, site: &str, token_file: &Path) {
        self.site_token_command("add", tenant, site, token_file);
    }

    /// Gives a site a new token, written to `token_file` (which must not exist).
    pub fn rotate_token(&self, tenant: &str, site: &str, token_file: &Path) {
        self.site_token_command("rotate-token", tenant, site, token_file);
    }

    /// `ferry-hub site <verb> --tenant <tenant> <site> --token-file <file>`.
    fn site_token_command(&self, verb: &str, tenant: &str, site: &str, token_file: &Path) {
        let token_file = token_file.to_str().expect("UTF-8 path");
        check(
            &self.cli(&[
                "site",
                verb,
                "--tenant",
                tenant,
                site,
                "--token-file",
                token_file,
            ]),
            &format!("site {verb}"),
        );
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits (up to a minute) for the hub to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the hub is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait for ferry-hub") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ferry-hub did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process freezes with its sockets open (the kernel still
    /// accepts connections and buffers bytes; nothing answers).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Hub::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} failed");
    }

    /// The running hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the hub is running").id()
    }

    /// The most memory the hub process has held resident so far (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib << 10
    }

    /// The hub's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Bytes of pack data in the local pool.
    pub fn pool_bytes(&self) -> u64 {
        tree::du(&self.data_dir.join("pool"))
    }

    /// Every pack file in the local pool.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        tree::files_with_extension(&self.data_dir.join("pool"), "pack")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes a secret file (a token) as the agent accepts one: mode 0600.
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A hub config's `[catalog]` table for the `ferry` database on `pg`, the
/// password in a file under `dir`.
pub fn postgres_catalog_toml(dir: &Path, pg: &postgres::Postgres) -> String {
    format!(
        "[catalog]\nengine = \"postgres\"\nurl = \"{}\"\npassword-file = \"{}\"\n",
        pg.url(),
        pg.password_file(dir).display()
    )
}

/// A site with its agent: tenant `acme`, bucket `acme/<bucket>`.
pub struct Site {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub key_file: PathBuf,
    pub bucket: String,
}

pub fn check(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl Site {
    /// Adds tenant, site and bucket at the hub, makes a key, writes the agent config.
    pub fn create(hub: &Hub, dir: &Path, source: &Path, site: &str, bucket: &str) -> Site {
        Self::create_in(hub, dir, source, "acme", site, bucket)
    }

    /// [`Site::create`] in tenant `tenant`.
    pub fn create_in(
        hub: &Hub,
        dir: &Path,
        source: &Path,
        tenant: &str,
        site: &str,
        bucket: &str,
    ) -> Site {
        std::fs::create_dir_all(dir).unwrap();
        let tenant_exists = hub
            .cli(&["site", "list", "--tenant", tenant])
            .status
            .success();
        if !tenant_exists {
            check(&hub.cli(&["tenant", "add", tenant]), "tenant add");
        }
        let token_file = dir.join("site.token");
        hub.add_site(tenant, site, &token_file);
        let full_bucket = format!("{tenant}/{bucket}");
        check(
            &hub.cli(&["bucket", "add", &full_bucket, "--source", site]),
            "bucket add",
        );
        let key_file = dir.join("tenant.key");
        let config = dir.join("agent.toml");
        let site = Site {
            dir: dir.to_path_buf(),
            config,
            key_file: key_file.clone(),
            bucket: full_bucket,
        };
        check(
            &site.agent(&["key", "generate", "--out", key_file.to_str().unwrap()]),
            "key generate",
        );
        site.write_config(&hub.url(), source);
        site
    }

    /// Another site of `of`'s tenant holding the same tenant key (copied),
    /// with no source of its own: `bucket` is `of`'s, for `restore --bucket`.
    pub fn other_site_of(hub: &Hub, dir: &Path, of: &Site, site: &str) -> Site {
        std::fs::create_dir_all(dir).unwrap();
        let tenant = of.bucket.split('/').next().unwrap_or_default();
        hub.add_site(tenant, site, &dir.join("site.token"));
        let key_file = dir.join("tenant.key");
        std::fs::copy(&of.key_file, &key_file).unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "hub = \"{}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n",
                hub.url(),
                key_file.display()
            ),
        )
        .unwrap();
        Site {
            dir: dir.to_path_buf(),
            config,
            key_file,
            bucket: of.bucket.clone(),
        }
    }

    pub fn write_config(&self, hub_url: &str, source: &Path) {
        self.write_config_with(hub_url, source, "");
    }

    /// [`Site::write_config`] with more tables (`[tls]`, ...) after the source.
    pub fn write_config_with(&self, hub_url: &str, source: &Path, tables: &str) {
        let text = format!(
            "hub = \"{hub_url}\"\ntoken-file = \"site.token\"\nkey-file = \"{}\"\nstate-dir = \"state\"\n\n[[source]]\nname = \"main\"\npath = \"{}\"\nbucket = \"{}\"\n{tables}",
            self.key_file.display(),
            source.display(),
            self.bucket
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn agent(&self, args: &[&str]) -> Output {
        Command::new(bin("ferry-agent"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("FERRY_SITE_TOKEN")
            .output()
            .expect("run ferry-agent")
    }

    /// Runs a backup with `--json` and returns its report.
    pub fn backup(&self) -> serde_json::Value {
        let out = check(&self.agent(&["--json", "backup"]), "backup");
        serde_json::from_str(&out).unwrap()
    }

    /// Runs a backup and calls `fault` once the hub has acknowledged a batch;
    /// returns whether the backup succeeded and its log.
    pub fn backup_with_fault_after_first_ack(&self, fault: impl FnOnce()) -> (bool, String) {
        self.run_with_fault_after(&["--json", "backup"], "batch acknowledged", fault)
    }

    /// Runs the agent with `args` at debug level and calls `fault` as soon as
    /// its log shows `mark`; returns whether it succeeded and its log.
    pub fn run_with_fault_after(
        &self,
        args: &[&str],
        mark: &'static str,
        fault: impl FnOnce(),
    ) -> (bool, String) {
        let mut agent = Command::new(bin("ferry-agent"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("FERRY_SITE_TOKEN")
            .env("FERRY_LOG", "ferry_agent=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry-agent");
        let lines = std::io::BufReader::new(agent.stderr.take().expect("piped stderr"));
        let (marked_tx, marked_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut log = String::new();
            for line in lines.lines().map_while(Result::ok) {
                if line.contains(mark) {
                    let _ = marked_tx.send(());
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        marked_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the agent never logged {mark:?}"));
        fault();
        let status = agent.wait().expect("wait for ferry-agent");
        (status.success(), reader.join().expect("log reader"))
    }

    pub fn restore(&self, to: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json", "restore", "--to", to.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = check(&self.agent(&args), "restore");
        serde_json::from_str(&out).unwrap()
    }
}

/// This package's directory in the checkout under test. Cargo and nextest
/// set `CARGO_MANIFEST_DIR` when they run a test; the value compiled in is
/// only the fallback, because a build cache shared between checkouts may
/// hold a test binary built in another one (since deleted).
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The quick dataset ([`dataset::Params::quick`]: `mixed`, `edit`,
/// `small` and their manifests), made once per target dir and reused;
/// deterministic, so reuse is safe. The directory is named by the
/// generator's version, so a dataset an older generator made is not reused.
pub fn quick_dataset() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let params = dataset::Params::quick();
    let name = format!("quick-v{}-seed{}", dataset::GENERATOR_VERSION, params.seed);
    let out = target.join("ferry-testdata").join(&name);
    // The manifest of `small` is written last: its presence means complete.
    if out.join("small.manifest").exists() {
        return out;
    }
    let tmp = target
        .join("ferry-testdata")
        .join(format!("{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = dataset::generate(&tmp, &params) {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!("making the quick dataset in {}: {e}", tmp.display());
    }
    // Another test process may have won the race; either copy is identical.
    if std::fs::rename(&tmp, &out).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    out
}

/// `cp -a`: copies a tree keeping modes, times and links.
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
}

/// Incompressible bytes from a seed (xorshift), for files zstd must not shrink.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
