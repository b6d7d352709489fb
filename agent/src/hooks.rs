//! Commands run before and after a source's backup: a pre-backup hook
//! takes an LVM or btrfs snapshot or flushes a database, a post-backup hook
//! drops it. Each runs under `/bin/sh -c` with its output logged line by
//! line (target `ferry_agent::hooks`), is killed past its timeout, and a
//! failing pre-backup hook stops the backup before anything is read.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::backup::{BackupError, BackupReport};
use crate::config::{SourceConfig, SourceKind};

/// Lines of a failing hook's stderr kept for its error.
const STDERR_TAIL: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{which} hook `{command}` could not start: {source}")]
    Start {
        which: &'static str,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{which} hook `{command}` failed ({status}){}", tail(.stderr))]
    Failed {
        which: &'static str,
        command: String,
        status: std::process::ExitStatus,
        /// Its last lines of stderr.
        stderr: Vec<String>,
    },
    #[error("{which} hook `{command}` ran past its timeout of {timeout:?} and was killed")]
    TimedOut {
        which: &'static str,
        command: String,
        timeout: Duration,
    },
}

fn tail(lines: &[String]) -> String {
    match lines {
        [] => String::new(),
        lines => format!(": {}", lines.join(" / ")),
    }
}

/// One configured hook.
#[derive(Clone, Debug)]
pub struct Hook {
    /// "pre-backup" or "post-backup", for logs and errors.
    pub which: &'static str,
    pub command: String,
    pub timeout: Duration,
}

impl Hook {
    /// Runs the command with `env` added to the agent's environment and
    /// waits for it, logging what it prints.
    ///
    /// # Errors
    /// It cannot start, exits other than 0, or outlives its timeout (it is
    /// then killed).
    pub async fn run(&self, source: &str, env: &[(&str, String)]) -> Result<(), HookError> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills what it started too.
            .process_group(0)
            // A hook abandoned by a stopping agent does not run on.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HookError::Start {
                which: self.which,
                command: self.command.clone(),
                source,
            })?;
        tracing::info!(hook = self.which, source, command = %self.command, "running hook");
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let which = self.which;
        let waited = tokio::time::timeout(self.timeout, async {
            let (_, stderr, status) = tokio::join!(
                log_lines(stdout, which, source, "stdout"),
                log_lines(stderr, which, source, "stderr"),
                child.wait()
            );
            (stderr, status)
        })
        .await;
        let Ok((stderr, status)) = waited else {
            if let Some(pid) = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            return Err(HookError::TimedOut {
                which,
                command: self.command.clone(),
                timeout: self.timeout,
            });
        };
        let status = status.map_err(|source| HookError::Start {
            which,
            command: self.command.clone(),
            source,
        })?;
        if !status.success() {
            return Err(HookError::Failed {
                which,
                command: self.command.clone(),
                status,
                stderr,
            });
        }
        Ok(())
    }
}

/// What a backup run between its hooks gave.
pub struct Hooked {
    pub backup: Result<BackupReport, BackupError>,
    /// The post-backup hook's outcome (`Ok` when there is none).
    pub post: Result<(), HookError>,
}

/// Runs `backup` between `source`'s hooks. The hooks see `FERRY_SOURCE`,
/// `FERRY_BUCKET` and (for a directory) `FERRY_SOURCE_PATH`; the
/// post-backup hook also `FERRY_BACKUP_RESULT` (`ok`, `partial` or
/// `failed`) and, once a snapshot is committed, `FERRY_SNAPSHOT_SEQ`.
///
/// # Errors
/// The pre-backup hook failed: the backup was not run.
pub async fn around(
    source: &SourceConfig,
    backup: impl Future<Output = Result<BackupReport, BackupError>>,
) -> Result<Hooked, HookError> {
    let (pre, post) = source.hooks();
    let mut env = vec![
        ("FERRY_SOURCE", source.name.clone()),
        ("FERRY_BUCKET", source.bucket.clone()),
    ];
    if let SourceKind::Dir(path) = source.kind() {
        env.push(("FERRY_SOURCE_PATH", path.display().to_string()));
    }
    if let Some(pre) = &pre {
        pre.run(&source.name, &env).await?;
    }
    let backup = backup.await;
    let post = match &post {
        None => Ok(()),
        Some(post) => {
            let result = match &backup {
                Ok(report) if report.skipped.is_empty() => "ok",
                Ok(_) => "partial",
                Err(_) => "failed",
            };
            env.push(("FERRY_BACKUP_RESULT", result.into()));
            if let Ok(report) = &backup {
                env.push(("FERRY_SNAPSHOT_SEQ", report.seq.to_string()));
            }
            post.run(&source.name, &env).await
        }
    };
    Ok(Hooked { backup, post })
}

/// Logs each line of `stream`; gives back its last few.
async fn log_lines(
    stream: Option<impl AsyncRead + Unpin>,
    hook: &'static str,
    source: &str,
    name: &'static str,
) -> Vec<String> {
    let mut last = std::collections::VecDeque::new();
    let Some(stream) = stream else {
        return Vec::new();
    };
    let mut lines = BufReader::new(stream).lines();
    // A line that is not UTF-8 or a broken pipe ends the logging, not the hook.
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(hook, source, stream = name, "{line}");
        if last.len() == STDERR_TAIL {
            last.pop_front();
        }
        last.push_back(line);
    }
    last.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(command: &str, timeout: Duration) -> Hook {
        Hook {
            which: "pre-backup",
            command: command.into(),
            timeout,
        }
    }

    #[tokio::test]
    async fn a_hook_sees_its_environment_and_a_failure_carries_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ok = hook(
            &format!("echo \"$FERRY_SOURCE\" > {}", out.display()),
            Duration::from_secs(10),
        );
        ok.run("docs", &[("FERRY_SOURCE", "docs".into())])
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "docs\n");

        let failing = hook(
            "echo one >&2; echo two >&2; exit 7",
            Duration::from_secs(10),
        );
        let err = failing.run("docs", &[]).await.unwrap_err();
        assert!(matches!(err, HookError::Failed { ref stderr, .. } if stderr == &["one", "two"]));
        assert!(err.to_string().contains("one / two"), "{err}");
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let late = dir.path().join("late");
        let slow = hook(
            &format!("(sleep 2; touch {}) & wait", late.display()),
            Duration::from_millis(300),
        );
        let err = slow.run("docs", &[]).await.unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!late.exists(), "the killed hook ran on");
    }
}
