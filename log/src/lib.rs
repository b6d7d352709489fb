//! Log setup shared by Ferry's binaries: structured logs on stderr, filtered
//! by `FERRY_LOG` (tracing's env-filter syntax), as text or as JSON lines.

/// How log lines are written on stderr (`--log-format`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: `FERRY_LOG` when it is set and valid,
/// else `default_level`. Colours only when stderr is a terminal.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
