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
        // Taken now: once the shell is reaped its pid is no longer known,
        // and what it started may still run in its group.
        let group = GroupKill(
            child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
        );
        let which = self.which;
        let source_name = source.to_owned();
        let stdout = child.stdout.take().map(|out| {
            let source = source_name.clone();
            tokio::spawn(async move { log_lines(out, which, &source, "stdout").await })
        });
        let stderr = child.stderr.take().map(|err| {
            let source = source_name.clone();
            tokio::spawn(async move { log_lines(err, which, &source, "stderr").await })
        });
        let Ok(status) = tokio::time::timeout(self.timeout, child.wait()).await else {
            drop(group); // kills the group
            let _ = child.kill().await;
            return Err(HookError::TimedOut {
                which,
                command: self.command.clone(),
                timeout: self.timeout,
            });
        };
        // The hook is done; what it left running (a mount helper, say) keeps
        // running, so its hold on the pipes ends the logging after a grace.
        group.disarm();
        let grace = tokio::time::Instant::now() + OUTPUT_GRACE;
        let stderr = finish_logging(stderr, grace).await;
        let _ = finish_logging(stdout, grace).await;
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
    let mut env = env_of(source);
    if let Some(pre) = &pre {
        pre.run(&source.name, &env).await?;
    }
    let backup = backup.await;
    let post = match &post {
        None => Ok(()),
        Some(post) => {
            add_result(&mut env, &backup);
            post.run(&source.name, &env).await
        }
    };
    Ok(Hooked { backup, post })
}

/// What every hook of `source` sees.
pub fn env_of(source: &SourceConfig) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("FERRY_SOURCE", source.name.clone()),
        ("FERRY_BUCKET", source.bucket.clone()),
    ];
    if let SourceKind::Dir(path) = source.kind() {
        env.push(("FERRY_SOURCE_PATH", path.display().to_string()));
    }
    env
}

/// What a post-backup hook sees beside: how the backup went.
pub fn add_result(
    env: &mut Vec<(&'static str, String)>,
    backup: &Result<BackupReport, BackupError>,
) {
    let result = match backup {
        Ok(report) if report.skipped.is_empty() => "ok",
        Ok(_) => "partial",
        Err(_) => "failed",
    };
    env.push(("FERRY_BACKUP_RESULT", result.into()));
    if let Ok(report) = backup {
        env.push(("FERRY_SNAPSHOT_SEQ", report.seq.to_string()));
    }
}

/// Kills a hook's process group when dropped, unless disarmed: a hook that
/// timed out, or that a stopping agent abandons, takes what it started along.
struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// How long a finished hook's output is still read: what it left running
/// may hold its pipes open.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

async fn finish_logging(
    task: Option<tokio::task::JoinHandle<Vec<String>>>,
    until: tokio::time::Instant,
) -> Vec<String> {
    let Some(mut task) = task else {
        return Vec::new();
    };
    match tokio::time::timeout_at(until, &mut task).await {
        Ok(Ok(lines)) => lines,
        _ => {
            task.abort();
            Vec::new()
        }
    }
}

/// Logs each line of `stream` (bytes that are not UTF-8 shown lossily);
/// gives back its last few. Reads to the end, so the hook never writes
/// into a closed pipe.
async fn log_lines(
    stream: impl AsyncRead + Unpin,
    hook: &'static str,
    source: &str,
    name: &'static str,
) -> Vec<String> {
    let mut last = std::collections::VecDeque::new();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        tracing::info!(hook, source, stream = name, "{text}");
        if last.len() == STDERR_TAIL {
            last.pop_front();
        }
        last.push_back(text);
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

    #[tokio::test]
    async fn what_a_hook_leaves_running_does_not_hold_it_and_odd_bytes_are_logged() {
        let started = std::time::Instant::now();
        // A helper left running with the hook's stdout, as a mount helper would.
        let detached = hook(
            "sleep 4 & printf '\\377\\376 not utf-8\\n'; echo done",
            Duration::from_secs(30),
        );
        detached.run("docs", &[]).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the hook's end is not held by what it left running"
        );
    }
}
