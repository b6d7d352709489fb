//! `ferry-agent status`: what each source's last backup did, how the
//! source is kept (continuously, or on which schedules) and when its next
//! scheduled run is, as the daemon (`ferry-agent run`) last wrote it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::AgentConfig;
use crate::jobs::status::{self, Mode, Run};

fn when(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn outcome(run: &Run) -> String {
    let took = (run.finished_unix_ms - run.started_unix_ms).max(0) as f64 / 1000.0;
    match (&run.error, run.seq) {
        (Some(e), _) => format!(
            "failed at {} after {took:.1} s: {e}",
            when(run.finished_unix_ms)
        ),
        (None, seq) => format!(
            "ok at {} in {took:.1} s: snapshot {} ({} files, {} bytes)",
            when(run.finished_unix_ms),
            seq.map_or_else(|| "?".into(), |s| s.to_string()),
            run.files,
            run.bytes
        ),
    }
}

pub(super) fn status(config_path: &Path, json: bool) -> Result<ExitCode> {
    let config = AgentConfig::load(config_path)?;
    let board = status::read(&status::path_in(&config.state_dir))?;
    if json {
        super::print_json(&board)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Every configured source, also one the daemon has not run yet.
    for source in &config.sources {
        let s = board.sources.get(&source.name).cloned().unwrap_or_default();
        let kept = match s.mode {
            Mode::Continuous => "continuous".to_owned(),
            Mode::Scheduled => format!("scheduled {}", s.schedules.join(", ")),
        };
        println!(
            "{} -> {}: {kept} (policy version {})",
            source.name, source.bucket, s.policy_version
        );
        match &s.last {
            Some(run) => println!("  last backup: {}", outcome(run)),
            None => println!("  last backup: none yet"),
        }
        if let Some(next) = s.next_unix_ms {
            println!("  next backup: {}", when(next));
        }
    }
    Ok(ExitCode::SUCCESS)
}
