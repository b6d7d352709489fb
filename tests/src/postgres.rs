//! A throwaway PostgreSQL cluster on a loopback port, in a temporary
//! directory: one per test that needs one. Debian's `postgresql` package
//! provides the server (`scripts/setup.sh test` installs it); `FERRY_PG_BIN`
//! may point at another `bin` directory. PostgreSQL refuses to run as root,
//! so under root the cluster runs as the package's `postgres` user.
//!
//! The login takes a password (SCRAM over TCP), so the hub's password-file
//! path is what the tests exercise. A watchdog stops the server if the test
//! process dies without dropping the handle: nothing is left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The role every cluster is made with.
pub const USER: &str = "ferry";

/// A running PostgreSQL server with one database, `ferry`.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    pub port: u16,
    password: String,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no /usr/lib/postgresql/*/bin/initdb: run `scripts/setup.sh test` (Debian's postgresql)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Makes a cluster, starts it and creates the `ferry` database.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .expect("temp dir");
        let password = crate::fresh::hex32().chars().take(32).collect::<String>();
        std::fs::write(dir.path().join("pwfile"), &password).unwrap();
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} to {user}", dir.path().display());
        }
        let mut pg = Postgres {
            dir,
            bin,
            run_as,
            port: 0,
            password,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--pwfile",
                pg.dir.path().join("pwfile").to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // A free port can be taken between the probe and the bind: try a few.
        for attempt in 0..5 {
            pg.port = crate::fresh::free_port();
            // Durability is not what these tests measure; speed is what two
            // cores need.
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=200",
                pg.port,
                pg.dir.path().display()
            );
            let log = pg.dir.path().join("server.log");
            let started = pg.try_run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &options,
                    "start",
                ],
            );
            if started {
                break;
            }
            assert!(
                attempt < 4,
                "PostgreSQL did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        pg.watchdog();
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                USER,
                "ferry",
            ],
        );
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path())
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null());
        cmd
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        if !out.status.success() {
            eprintln!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        assert!(self.try_run(tool, args), "{tool} {args:?} failed");
    }

    /// Stops the server once this process is gone, however it ends. (It
    /// looks in /proc, not with `kill -0`: as `postgres` it may not signal
    /// a root process.)
    #[allow(
        clippy::zombie_processes,
        reason = "the watchdog outlives this process by design; init reaps it"
    )]
    fn watchdog(&self) {
        let stop = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {pg_ctl} -D {data} -m immediate stop",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
        );
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh", "-c", &stop]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", &stop]);
                c
            }
        };
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog");
    }

    /// A connection URL for database `db` without the password.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of the `ferry` database, without the password.
    pub fn url(&self) -> String {
        self.url_for("ferry")
    }

    /// The login's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates another empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                name,
            ],
        );
        self.url_for(name)
    }

    /// Writes the password into a file under `dir` (mode 0600) and returns it.
    pub fn password_file(&self, dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("catalog.password");
        std::fs::write(&path, format!("{}\n", self.password)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
