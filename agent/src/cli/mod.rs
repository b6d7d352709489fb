//! The `ferry-agent` command line.
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage; 3 backup committed but
//! some entries could not be read (they are listed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ferry_crypto::TenantKeys;
use serde::Serialize;

use crate::backup::{BackupJob, BackupReport, run_backup_rechecked};
use crate::chain::{KnownHeads, list_verified};
use crate::client::HubClient;
use crate::config::AgentConfig;
use crate::config::SourceKind;
use crate::daemon;
use crate::progress::Progress;
use crate::restore::RestoreTarget;
use crate::restore::{RestoreJob, Which, run_restore};
use crate::restore_bucket::BucketTarget;
use crate::source::Source;
use crate::source::bucket::BucketSource;
use crate::source::dir::DirSource;

mod status;

const EXIT_PARTIAL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry agent: back up and restore through a Ferry hub"
)]
struct Cli {
    /// Agent config file (TOML).
    #[arg(
        long,
        short,
        global = true,
        env = "FERRY_AGENT_CONFIG",
        default_value = "ferry-agent.toml"
    )]
    config: PathBuf,
    /// Print results as JSON on stdout (for scripts); no progress bar.
    #[arg(long, global = true)]
    json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: ferry_log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the tenant key file.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up a configured source into its bucket.
    Backup {
        /// Source name from the config (needed when several are configured).
        #[arg(long)]
        source: Option<String>,
    },
    /// List the snapshots of a bucket.
    Snapshots(BucketArg),
    /// Forget the newest commit this site has seen of a bucket. Backups and
    /// restores refuse a hub whose journal of the bucket is shorter than
    /// that (rolled back); after knowingly moving to a hub with less
    /// history, this lets them accept its journal, once its chain verifies.
    ForgetHead(BucketArg),
    /// Accept a bucket's commits that carry no MAC, as they stand: a
    /// journal written before commits were signed. Run once, knowing the
    /// hub's history of the bucket is the bucket's own; commits after it
    /// must be signed, and a MAC stripped from one later is refused.
    TrustHistory(BucketArg),
    /// Run as a service until SIGINT or SIGTERM: back up every source on
    /// the schedules the hub's policy gives it, or keep it current
    /// continuously (watcher, S3 event webhook) when it has none; keep
    /// every replica following its bucket.
    Run {
        /// Write the webhook's bound address into this file once listening.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// What each source's last backup did, how it is kept (continuously or
    /// on a schedule) and its next scheduled run, as `run` last wrote it.
    Status,
    /// Restore a snapshot into a new or empty directory, or into a bucket.
    Restore {
        #[command(flatten)]
        bucket: BucketArg,
        /// Directory to restore into (created if missing; must be empty
        /// unless --resume).
        #[arg(
            long,
            required_unless_present = "to_target",
            conflicts_with = "to_target"
        )]
        to: Option<PathBuf>,
        /// A `[[target]]` bucket of the config to restore into (must be empty
        /// under its prefix); keys, bytes and metadata come back as they were.
        #[arg(long)]
        to_target: Option<String>,
        /// With --to-target: write into a non-empty bucket, replacing objects
        /// with the snapshot's keys (e.g. to finish a restore that failed).
        #[arg(long, requires = "to_target")]
        overwrite: bool,
        /// With --to: finish an earlier restore of the same snapshot into
        /// that directory, writing only what is missing or different (a
        /// file of the entry's size and modification time is kept).
        #[arg(long, requires = "to")]
        resume: bool,
        /// With --to: give entries the user and group ids recorded at
        /// backup, not the ids their names have on this system.
        #[arg(long, requires = "to")]
        numeric_owner: bool,
        /// Snapshot sequence number (from `snapshots`); default: the latest.
        #[arg(long, conflicts_with = "at")]
        snapshot: Option<u64>,
        /// Restore the newest snapshot at or before this time (RFC 3339, e.g. 2026-11-23T10:00:00Z).
        #[arg(long)]
        at: Option<String>,
    },
    /// Read back a snapshot without writing it: every chunk is fetched,
    /// opened and checked against its id (a bad one is reported to the hub,
    /// which has it uploaded again; good ones are reported verified, so
    /// other sites dedup against them). Exits non-zero on a bad chunk.
    Verify {
        #[command(flatten)]
        bucket: BucketArg,
        /// Snapshot sequence number; default: the latest.
        #[arg(long, conflicts_with = "at")]
        snapshot: Option<u64>,
        /// The newest snapshot at or before this time (RFC 3339).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Args)]
struct BucketArg {
    /// Source name from the config; its bucket is used.
    #[arg(long, conflicts_with = "bucket")]
    source: Option<String>,
    /// Bucket as "tenant/bucket" (instead of --source).
    #[arg(long)]
    bucket: Option<String>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new tenant key file (identity, dedup key, chunker seed), mode 0600.
    Generate {
        /// Where to write the key file; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// Also write the write-only variant (no identity) here.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
    /// Write the write-only variant of an existing key file: it can back up, not restore.
    Public {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the tenant's verifier public key (derived from the identity),
    /// for `ferry-hub tenant verifier`: then chunks a key holder's restores
    /// verify count for every site's dedup.
    Verifier {
        /// The private key file (write-only keys cannot verify).
        #[arg(long)]
        key: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Hook output is what an operator reads their hooks by, so it shows too.
    ferry_log::init(cli.log_format, "warn,ferry_agent::hooks=info");
    if matches!(
        cli.command,
        Command::Restore { .. } | Command::Verify { .. }
    ) {
        // Before the runtime's threads start (see ferry_malloc).
        ferry_malloc::keep_freed_buffers();
    }
    // Few blocking threads: the pipeline needs about one per core plus the
    // scanner, and every extra thread is another malloc arena holding memory.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Key(cmd) => key_command(cmd, cli.json),
        Command::Backup { source } => backup(&cli.config, source.as_deref(), cli.json).await,
        Command::Snapshots(bucket) => snapshots(&cli.config, &bucket, cli.json).await,
        Command::TrustHistory(bucket) => trust_history(&cli.config, &bucket, cli.json).await,
        Command::ForgetHead(bucket) => {
            let config = AgentConfig::load(&cli.config)?;
            let bucket = bucket_of(&config, &bucket)?;
            let heads = KnownHeads::open(&config.heads_path())?;
            let forgotten = heads.forget(&bucket)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "bucket": bucket, "forgotten_seq": forgotten.map(|h| h.seq) }),
                )?;
            } else {
                match forgotten {
                    Some(head) => {
                        println!("{bucket}: forgot commit {} as the newest seen", head.seq)
                    }
                    None => println!("{bucket}: no commit seen yet"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { ready_file } => run_service(&cli.config, ready_file).await,
        Command::Status => status::status(&cli.config, cli.json),
        Command::Restore {
            bucket,
            to,
            to_target,
            overwrite,
            resume,
            numeric_owner,
            snapshot,
            at,
        } => {
            let which = which_snapshot(snapshot, at)?;
            let to = match (to, to_target) {
                (Some(dir), _) => To::Dir {
                    dir,
                    resume,
                    numeric_owner,
                },
                (None, Some(name)) => To::Target { name, overwrite },
                (None, None) => bail!("say where to restore: --to DIR or --to-target NAME"),
            };
            restore(&cli.config, &bucket, which, to, cli.json).await
        }
        Command::Verify {
            bucket,
            snapshot,
            at,
        } => {
            let which = which_snapshot(snapshot, at)?;
            restore(&cli.config, &bucket, which, To::Check, cli.json).await
        }
    }
}

fn which_snapshot(snapshot: Option<u64>, at: Option<String>) -> Result<Which> {
    Ok(match (snapshot, at) {
        (Some(seq), _) => Which::Seq(seq),
        (None, Some(at)) => Which::At(parse_time(&at)?),
        (None, None) => Which::Latest,
    })
}

fn parse_time(text: &str) -> Result<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("--at {text:?}: expected RFC 3339, e.g. 2026-11-23T10:00:00Z"))?;
    Ok(t.timestamp_millis())
}

fn key_command(cmd: KeyCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { out, public_out } => {
            let keys = TenantKeys::generate();
            keys.write_private(&out)?;
            if let Some(public) = &public_out {
                keys.write_public(public)?;
            }
            if json {
                print_json(&serde_json::json!({
                    "key_file": out, "public_key_file": public_out, "recipient": keys.recipient()
                }))?;
            } else {
                println!(
                    "wrote {} (keep it secret and keep a copy: without it nothing can be restored)",
                    out.display()
                );
                if let Some(public) = public_out {
                    println!(
                        "wrote {} (write-only: backs up, cannot restore)",
                        public.display()
                    );
                }
                println!("recipient {}", keys.recipient());
            }
        }
        KeyCommand::Public { key, out } => {
            let keys = TenantKeys::load(&key)?;
            keys.to_public().write_public(&out)?;
            if !json {
                println!(
                    "wrote {} (write-only: backs up, cannot restore)",
                    out.display()
                );
            }
        }
        KeyCommand::Verifier { key } => {
            let public = TenantKeys::load(&key)?.verifier_public().with_context(|| {
                format!(
                    "key file {}: write-only (no identity), so it has no verifier key",
                    key.display()
                )
            })?;
            let text = hex::encode(public);
            match json {
                true => print_json(&serde_json::json!({ "verifier": text }))?,
                false => println!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Connected {
    config: AgentConfig,
    keys: Arc<TenantKeys>,
    client: HubClient,
}

async fn connect(config_path: &Path) -> Result<Connected> {
    let config = AgentConfig::load(config_path)?;
    let keys = Arc::new(TenantKeys::load(&config.key_file)?);
    let token = config.token()?;
    let link = crate::hub_link::HubLink::of(&config)?;
    let client = HubClient::connect(&link, &token).await?;
    Ok(Connected {
        config,
        keys,
        client,
    })
}

fn bucket_of(config: &AgentConfig, arg: &BucketArg) -> Result<String> {
    match (&arg.bucket, &arg.source) {
        (Some(b), _) => Ok(b.clone()),
        (None, source) => Ok(config.source(source.as_deref())?.bucket.clone()),
    }
}

async fn backup(config_path: &Path, source: Option<&str>, json: bool) -> Result<ExitCode> {
    let ctx = connect(config_path).await?;
    let source = ctx.config.source(source)?;
    std::fs::create_dir_all(&ctx.config.state_dir)
        .with_context(|| format!("creating state dir {}", ctx.config.state_dir.display()))?;
    let source_impl: Arc<dyn Source> = match source.kind() {
        SourceKind::Dir(path) => Arc::new(
            DirSource::new(path).with_filter(
                ctx.config
                    .filter_of(source)
                    .with_context(|| format!("source {}", source.name))?,
            ),
        ),
        SourceKind::Bucket(location) => Arc::new(
            BucketSource::open(location.clone())
                .await
                .with_context(|| format!("source {}", source.name))?,
        ),
    };
    let job = |trust_journal| BackupJob {
        client: ctx.client.clone(),
        keys: ctx.keys.clone(),
        source: source_impl.clone(),
        journal_path: ctx.config.journal_path(source),
        heads_path: ctx.config.heads_path(),
        bucket: source.bucket.clone(),
        progress: Progress::new(json, "backup"),
        trust_journal,
    };
    let hooked = crate::hooks::around(source, run_backup_rechecked(job)).await?;
    let report = match (hooked.backup, hooked.post) {
        (Ok(report), post) => {
            print_backup(&report, json)?;
            post?;
            report
        }
        (Err(e), Ok(())) => return Err(e.into()),
        (Err(e), Err(post)) => return Err(anyhow::Error::new(e).context(post.to_string())),
    };
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

fn print_backup(report: &BackupReport, json: bool) -> Result<()> {
    if json {
        print_json(&report)?;
    } else {
        println!(
            "snapshot {} of {}: {} files, {} dirs, {} symlinks, {} bytes; read {} files ({} bytes); sent {} chunks ({} bytes), {} already stored",
            report.seq,
            report.bucket,
            report.files,
            report.dirs,
            report.symlinks,
            report.bytes,
            report.files_read,
            report.bytes_read,
            report.chunks_sent,
            report.bytes_sent,
            report.chunks_deduplicated
        );
        for s in &report.skipped {
            eprintln!("not backed up: {}: {}", s.path, s.reason);
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct SnapshotRow {
    seq: u64,
    time: String,
    time_unix_ms: i64,
    site: String,
    files: u64,
    bytes: u64,
}

async fn trust_history(config_path: &Path, arg: &BucketArg, json: bool) -> Result<ExitCode> {
    let ctx = connect(config_path).await?;
    let bucket = bucket_of(&ctx.config, arg)?;
    let (mut unsigned, mut signed) = (0u64, 0u64);
    // Every signed commit still has to verify; the unsigned ones are what
    // is being accepted.
    crate::chain::walk(
        &ctx.client,
        &ctx.keys,
        &bucket,
        None,
        u64::MAX,
        |c| match c.mac.is_empty() {
            true => unsigned = c.seq,
            false => signed += 1,
        },
    )
    .await?;
    if unsigned > 0 {
        KnownHeads::open(&ctx.config.heads_path())?.trust_unsigned(&bucket, unsigned)?;
    }
    if json {
        print_json(
            &serde_json::json!({ "bucket": bucket, "unsigned_upto": unsigned, "signed": signed }),
        )?;
    } else if unsigned == 0 {
        println!("{bucket}: every commit is signed; nothing to accept");
    } else {
        println!(
            "{bucket}: accepted the commits up to {unsigned} that carry no MAC; {signed} signed commits verify"
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn snapshots(config_path: &Path, arg: &BucketArg, json: bool) -> Result<ExitCode> {
    let ctx = connect(config_path).await?;
    let bucket = bucket_of(&ctx.config, arg)?;
    let rows: Vec<SnapshotRow> =
        list_verified(&ctx.client, &ctx.keys, &bucket, &ctx.config.heads_path())
            .await?
            .into_iter()
            .filter(|c| c.kind == "snapshot")
            .map(|c| SnapshotRow {
                seq: c.seq,
                time: chrono::DateTime::from_timestamp_millis(c.time_unix_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default(),
                time_unix_ms: c.time_unix_ms,
                site: c.site,
                files: c.files,
                bytes: c.bytes,
            })
            .collect();
    if json {
        print_json(&rows)?;
    } else {
        println!(
            "{:>6}  {:<24}  {:<12}  {:>9}  {:>14}",
            "SEQ", "TIME", "SITE", "FILES", "BYTES"
        );
        for r in &rows {
            println!(
                "{:>6}  {:<24}  {:<12}  {:>9}  {:>14}",
                r.seq, r.time, r.site, r.files, r.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `restore` writes, as given on the command line.
enum To {
    Dir {
        dir: PathBuf,
        resume: bool,
        numeric_owner: bool,
    },
    Target {
        name: String,
        overwrite: bool,
    },
    /// Write nothing: `verify`.
    Check,
}

async fn restore(
    config_path: &Path,
    arg: &BucketArg,
    which: Which,
    to: To,
    json: bool,
) -> Result<ExitCode> {
    let ctx = connect(config_path).await?;
    if !ctx.keys.can_decrypt() {
        bail!(
            "{}: this key file is write-only (no identity): it can back up but not restore",
            ctx.config.key_file.display()
        );
    }
    let bucket = bucket_of(&ctx.config, arg)?;
    let (target, shown) = match to {
        To::Dir {
            dir,
            resume,
            numeric_owner,
        } => {
            let shown = dir.display().to_string();
            let target = RestoreTarget::Dir {
                path: dir,
                resume,
                numeric_owner,
                // As restic and borg: written through the page cache, the
                // kernel flushes it in its time.
                durable: false,
            };
            (target, shown)
        }
        To::Target { name, overwrite } => {
            let location = ctx.config.target(&name)?.s3.clone();
            let target = BucketTarget::open(location, overwrite)
                .await
                .with_context(|| format!("target {name}"))?;
            let shown = target.describe();
            (RestoreTarget::Bucket(Arc::new(target)), shown)
        }
        To::Check => (RestoreTarget::Check, String::new()),
    };
    let checking = matches!(target, RestoreTarget::Check);
    let report = run_restore(RestoreJob {
        client: ctx.client.clone(),
        keys: ctx.keys.clone(),
        heads_path: ctx.config.heads_path(),
        bucket,
        which,
        target,
        progress: Progress::new(json, if checking { "verify" } else { "restore" }),
    })
    .await?;
    if json {
        print_json(&report)?;
    } else if checking {
        println!(
            "verified snapshot {} of {}: {} files, {} chunks, {} bytes; {} chunk copies newly verified for other sites",
            report.seq,
            report.bucket,
            report.files,
            report.chunks,
            report.bytes,
            report.copies_verified
        );
    } else {
        println!(
            "restored snapshot {} of {} into {}: {} files ({} hard links), {} dirs, {} symlinks, {} bytes",
            report.seq,
            report.bucket,
            shown,
            report.files,
            report.hardlinks,
            report.dirs,
            report.symlinks,
            report.bytes
        );
        if report.already_present > 0 {
            println!(
                "{} files were there already and kept",
                report.already_present
            );
        }
        for failed in &report.not_restored_entries {
            eprintln!("not restored: {}: {}", failed.path, failed.reason);
        }
        let unlisted = report.not_restored - report.not_restored_entries.len() as u64;
        if unlisted > 0 {
            eprintln!("not restored: {unlisted} more entries (see the log)");
        }
    }
    // As a backup that skipped files: done, but not all of it.
    Ok(match report.not_restored {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_PARTIAL),
    })
}

async fn run_service(config_path: &Path, ready_file: Option<PathBuf>) -> Result<ExitCode> {
    let config = AgentConfig::load(config_path)?;
    let on_ready = move |webhook: Option<std::net::SocketAddr>| -> std::io::Result<()> {
        let Some(path) = &ready_file else {
            return Ok(());
        };
        // Written whole then renamed, so a watcher never reads half an
        // address; empty when there is no webhook.
        let tmp = path.with_extension("tmp");
        let address = webhook.map(|a| a.to_string()).unwrap_or_default();
        std::fs::write(&tmp, address).and_then(|()| std::fs::rename(&tmp, path))
    };
    daemon::run(config, on_ready, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
