//! `ferry-agent run` as a child process: started with a ready file that
//! names its webhook's address, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin;

pub struct Daemon {
    child: Child,
    /// The webhook's bound address.
    pub addr: String,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `ferry-agent --config config run`, its ready file and log in `dir`.
    pub fn start(config: &Path, dir: &Path) -> Daemon {
        let ready = dir.join("agent.ready");
        let _ = std::fs::remove_file(&ready);
        let log_path = dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut child = Command::new(bin("ferry-agent"))
            .arg("--config")
            .arg(config)
            .args(["run", "--ready-file"])
            .arg(&ready)
            .env("FERRY_LOG", "ferry_agent=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "agent exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "agent did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon {
            child,
            addr,
            log: log_path,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
