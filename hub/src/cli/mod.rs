//! The `ferry-hub` command line. Namespace commands open the catalog
//! directly (SQLite in WAL mode lets them run beside a serving hub).
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ferry_proto::auth::{TOKEN_PREFIX, token_hash};
use rand::RngCore;
use serde_json::json;

mod policy;
mod replication;
mod retention;

use crate::admin::Admin;
use crate::config::HubConfig;
use crate::server::serve;

#[derive(Parser)]
#[command(
    name = "ferry-hub",
    version,
    about = "Ferry hub: namespace, catalog and pack storage for Ferry agents"
)]
struct Cli {
    /// Hub config file (TOML). Without one, embedded defaults apply.
    #[arg(long, short, global = true, env = "FERRY_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (catalog and local pool); overrides the config.
    #[arg(long, global = true, env = "FERRY_HUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print results as JSON on stdout.
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
    /// Serve the gRPC API until SIGINT or SIGTERM.
    Serve {
        /// Listen address; overrides the config (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Write the bound address into this file once listening.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Tenants: who owns sites, buckets and keys.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Sites: where agents run; each authenticates with its own token.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Buckets: "tenant/bucket", each with its source site.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Replication: how far each replica site has applied each bucket.
    #[command(subcommand)]
    Replication(replication::ReplicationCommand),
    /// Policies: schedules, retention and compliance, from TOML files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Retention: what the policy keeps of each bucket's commits.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// TLS for the gRPC listener.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Rebuild a lost catalog from the pools alone: namespace, blob index,
    /// journals. Safe to rerun; never writes to a pool. Exits 1 if any
    /// object was damaged (the rest is recovered; the report names it).
    Recover {
        /// Read every pack whole and check it against its name, not only
        /// its index (finds damage anywhere in a pack; reads every byte).
        #[arg(long)]
        verify_packs: bool,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a self-signed certificate and key for the hub's names, and
    /// print the pin agents trust it by (`pin` in their `[tls]`).
    Init {
        /// A DNS name or IP address agents dial the hub by; repeat for more.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where the certificate goes (PEM; must not exist).
        #[arg(long)]
        cert_file: PathBuf,
        /// Where the private key goes (PEM, mode 0600; must not exist).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Print the pin of a certificate file (its first certificate).
    Pin {
        #[arg(long)]
        cert_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    Add {
        name: String,
    },
    /// List tenants, each with its verifier key if one is registered.
    List,
    /// Register the tenant's verifier public key (`ferry-agent key
    /// verifier` prints it): copies a key holder reports verified, signed
    /// with it, then count for every site's dedup. Without one, dedup is
    /// per site.
    Verifier {
        tenant: String,
        /// The public key, 64 hex digits.
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        key: Option<String>,
        /// Remove the key: copies verified so far stay verified, no new
        /// report is taken.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Add a site and print its token (shown once; only its hash is kept).
    Add {
        #[arg(long)]
        tenant: String,
        name: String,
        /// Write the token into this file (mode 0600) instead of printing it.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a site: its token is refused from the next call on, by every
    /// hub serving the catalog. Its buckets and journals stay.
    Revoke {
        #[arg(long)]
        tenant: String,
        name: String,
    },
    /// Give a site a new token; the old one is refused from the next call on.
    RotateToken {
        #[arg(long)]
        tenant: String,
        name: String,
        /// Write the new token into this file (mode 0600, must not exist)
        /// instead of printing it.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Add a bucket "tenant/bucket" whose source is the given site, kept
    /// also at each --replica site.
    Add {
        name: String,
        #[arg(long)]
        source: String,
        /// A site that keeps a copy and may read the bucket (repeatable).
        #[arg(long = "replica")]
        replicas: Vec<String>,
    },
    /// Set the replica sites of a bucket: those given, in place of those it
    /// had (none given: the bucket is kept at its source only).
    Replicas {
        name: String,
        #[arg(long = "replica")]
        replicas: Vec<String>,
    },
    /// Make a replica the bucket's source (its old source site is lost or
    /// leaving): the old source is fenced at once, its commits refused.
    Failover {
        name: String,
        #[arg(long)]
        to: String,
    },
    /// Make a site (the old source, back again) a replica of the bucket:
    /// its agent catches up from the hub and applies only the difference
    /// to what it still holds. `failover --to` it then returns the source
    /// role.
    Failback {
        name: String,
        #[arg(long)]
        site: String,
    },
    /// List a tenant's buckets with their source and replica sites.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Stop replication of a bucket: the hub sends its replicas no commit
    /// and they remove no tombstone (of a `delete-delay`) until it is
    /// resumed; the source goes on backing up. For a mass delete at the
    /// source, to be undone before the replicas lose the deleted entries.
    PauseReplication { name: String },
    /// Resume a paused bucket's replication: its replicas catch up.
    ResumeReplication { name: String },
}

/// "tenant/bucket" split, or an error naming what was given.
fn tenant_and_bucket(name: &str) -> anyhow::Result<(&str, &str)> {
    match name.split_once('/') {
        Some(pair) => Ok(pair),
        None => bail!("bucket {name:?}: expected \"tenant/bucket\""),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    ferry_log::init(cli.log_format, default_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<HubConfig> {
    let mut config = match &cli.config {
        Some(path) => HubConfig::load(path)?,
        None => HubConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Serve { listen, ready_file } => {
            let runtime = runtime()?;
            let listen = listen.unwrap_or(config.listen);
            runtime.block_on(serve(&config, listen, ready_file, shutdown_signal()))?;
            Ok(())
        }
        Command::Recover { verify_packs } => recover(&config, cli.json, verify_packs),
        Command::Tls(TlsCommand::Init {
            names,
            cert_file,
            key_file,
        }) => {
            let made = ferry_tls::self_signed(&names)?;
            // The key first and private; the certificate only once it is down.
            write_new(&key_file, &made.key_pem, 0o600, "key file")?;
            write_new(&cert_file, &made.cert_pem, 0o644, "certificate file")?;
            output(
                cli.json,
                json!({"cert_file": cert_file, "key_file": key_file, "pin": made.pin.to_string()}),
                &format!(
                    "certificate {} and key {} written for {}\n\
                     agents trust it with, in their config:\n[tls]\npin = \"{}\"",
                    cert_file.display(),
                    key_file.display(),
                    names.join(", "),
                    made.pin
                ),
            );
            Ok(())
        }
        Command::Tls(TlsCommand::Pin { cert_file }) => {
            let chain = ferry_tls::pem::certificates("certificate file", &cert_file)?;
            let pin = chain
                .first()
                .map(|c| ferry_tls::Pin::of(c))
                .context("the certificate file holds no certificate")?;
            output(cli.json, json!({"pin": pin.to_string()}), &pin.to_string());
            Ok(())
        }
        Command::Tenant(TenantCommand::Add { name }) => {
            let id = Admin::open(&config)?.add_tenant(&name)?;
            output(
                cli.json,
                json!({"tenant": name, "id": id.0}),
                &format!("tenant {name} added"),
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            let tenants = Admin::open(&config)?.tenants()?;
            let listed: Vec<_> = tenants
                .iter()
                .map(|t| json!({"tenant": t.name, "verifier": t.verifier.map(hex::encode)}))
                .collect();
            let text: Vec<String> = tenants
                .iter()
                .map(|t| match t.verifier {
                    Some(key) => format!("{} (verifier {})", t.name, hex::encode(key)),
                    None => format!("{} (no verifier: dedup per site)", t.name),
                })
                .collect();
            output(
                cli.json,
                json!({ "tenants": listed }),
                &text.join(
                    "
",
                ),
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Verifier { tenant, key, clear }) => {
            let key = match (key, clear) {
                (Some(text), false) => Some(
                    ferry_proto::verified::parse_public_key(&text)
                        .with_context(|| format!("--key {text:?}"))?,
                ),
                _ => None,
            };
            Admin::open(&config)?.set_tenant_verifier(&tenant, key)?;
            let hex_key = key.map(hex::encode);
            output(
                cli.json,
                json!({"tenant": tenant, "verifier": hex_key}),
                &match &hex_key {
                    Some(k) => format!("tenant {tenant}: verifier key {k} registered"),
                    None => format!("tenant {tenant}: verifier key removed"),
                },
            );
            Ok(())
        }
        Command::Site(SiteCommand::Add {
            tenant,
            name,
            token_file,
        }) => {
            let admin = Admin::open(&config)?;
            let token = new_token();
            // The file first: a site whose token was never written down
            // could not be used by anyone.
            if let Some(path) = &token_file {
                write_secret(path, &token)?;
            }
            if let Err(e) = admin.add_site(&tenant, &name, &token_hash(&token)) {
                if let Some(path) = &token_file {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.into());
            }
            match token_file {
                Some(path) => {
                    output(
                        cli.json,
                        json!({"site": name, "tenant": tenant, "token_file": path}),
                        &format!(
                            "site {name} added to {tenant}; token written to {}",
                            path.display()
                        ),
                    );
                }
                None => output(
                    cli.json,
                    json!({"site": name, "tenant": tenant, "token": token}),
                    &format!(
                        "site {name} added to {tenant}\ntoken (shown once, store it now): {token}"
                    ),
                ),
            }
            Ok(())
        }
        Command::Site(SiteCommand::List { tenant }) => {
            let sites = Admin::open(&config)?.sites(&tenant)?;
            let names: Vec<_> = sites.iter().map(|s| s.name.clone()).collect();
            let revoked: Vec<_> = sites
                .iter()
                .filter(|s| s.revoked)
                .map(|s| &s.name)
                .collect();
            let text: Vec<String> = sites
                .iter()
                .map(|s| match s.revoked {
                    true => format!("{} (revoked)", s.name),
                    false => s.name.clone(),
                })
                .collect();
            output(
                cli.json,
                json!({"tenant": tenant, "sites": names, "revoked": revoked}),
                &text.join("\n"),
            );
            Ok(())
        }
        Command::Site(SiteCommand::Revoke { tenant, name }) => {
            Admin::open(&config)?.revoke_site(&tenant, &name)?;
            output(
                cli.json,
                json!({"site": name, "tenant": tenant, "revoked": true}),
                &format!("site {name} of {tenant} revoked; its token is refused from now on"),
            );
            Ok(())
        }
        Command::Site(SiteCommand::RotateToken {
            tenant,
            name,
            token_file,
        }) => {
            let admin = Admin::open(&config)?;
            // Refuse an unknown site before a token file is made for it.
            admin.site(&tenant, &name)?;
            let token = new_token();
            if let Some(path) = &token_file {
                write_secret(path, &token)?;
            }
            if let Err(e) = admin.set_site_token(&tenant, &name, &token_hash(&token)) {
                if let Some(path) = &token_file {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.into());
            }
            match token_file {
                Some(path) => output(
                    cli.json,
                    json!({"site": name, "tenant": tenant, "token_file": path}),
                    &format!(
                        "site {name} of {tenant} has a new token in {}; the old one is refused",
                        path.display()
                    ),
                ),
                None => output(
                    cli.json,
                    json!({"site": name, "tenant": tenant, "token": token}),
                    &format!(
                        "site {name} of {tenant}: new token (shown once, store it now): {token}"
                    ),
                ),
            }
            Ok(())
        }
        Command::Bucket(BucketCommand::Add {
            name,
            source,
            replicas,
        }) => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            Admin::open(&config)?.add_bucket(tenant, bucket, &source, &replicas)?;
            let also = match replicas.is_empty() {
                true => String::new(),
                false => format!(", replicas {}", replicas.join(", ")),
            };
            output(
                cli.json,
                json!({"bucket": name, "source": source, "replicas": replicas}),
                &format!("bucket {name} added, source site {source}{also}"),
            );
            Ok(())
        }
        Command::Bucket(BucketCommand::Replicas { name, replicas }) => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let admin = Admin::open(&config)?;
            let set = admin.set_bucket_replicas(tenant, bucket, &replicas)?;
            let names = admin.site_names(&set.replicas)?;
            let shown = match names.is_empty() {
                true => "none (kept at its source only)".to_string(),
                false => names.join(", "),
            };
            output(
                cli.json,
                json!({"bucket": name, "replicas": names}),
                &format!("bucket {name}: replicas {shown}"),
            );
            Ok(())
        }
        Command::Replication(command) => replication::run(command, &config, cli.json),
        Command::Policy(command) => policy::run(command, &config, cli.json),
        Command::Retention(command) => retention::run(command, &config, cli.json),
        Command::Bucket(BucketCommand::PauseReplication { name }) => {
            replication::pause(&name, true, &config, cli.json)
        }
        Command::Bucket(BucketCommand::ResumeReplication { name }) => {
            replication::pause(&name, false, &config, cli.json)
        }
        Command::Bucket(BucketCommand::Failover { name, to }) => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let admin = Admin::open(&config)?;
            let set = admin.fail_over(tenant, bucket, &to)?;
            let replicas = admin.site_names(&set.replicas)?;
            output(
                cli.json,
                json!({"bucket": name, "source": to, "replicas": replicas}),
                &format!("bucket {name}: source is now site {to}; its old source is fenced"),
            );
            Ok(())
        }
        Command::Bucket(BucketCommand::Failback { name, site }) => {
            let (tenant, bucket) = tenant_and_bucket(&name)?;
            let admin = Admin::open(&config)?;
            let set = admin.fail_back(tenant, bucket, &site)?;
            let names = admin.site_names(&set.replicas)?;
            output(
                cli.json,
                json!({"bucket": name, "replicas": names}),
                &format!(
                    "bucket {name}: site {site} is a replica again; its agent catches up with [[replica]]"
                ),
            );
            Ok(())
        }
        Command::Bucket(BucketCommand::List { tenant }) => {
            let admin = Admin::open(&config)?;
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            for b in admin.buckets(&tenant)? {
                let source = admin.site_names(&[b.source_site])?.concat();
                let replicas = admin.site_names(&b.replicas)?;
                lines.push(format!(
                    "{tenant}/{}  source {source}  replicas {}",
                    b.name,
                    match replicas.is_empty() {
                        true => "-".to_string(),
                        false => replicas.join(","),
                    }
                ));
                rows.push(json!({
                    "bucket": format!("{tenant}/{}", b.name),
                    "source": source,
                    "replicas": replicas,
                }));
            }
            output(
                cli.json,
                json!({"tenant": tenant, "buckets": rows}),
                &lines.join("\n"),
            );
            Ok(())
        }
    }
}

/// The runtime `serve` and `recover` run on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    // Bounded blocking threads: each is another malloc arena holding memory.
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn recover(config: &HubConfig, json: bool, verify_packs: bool) -> Result<()> {
    let runtime = runtime()?;
    let catalog = crate::server::open_catalog(config)?;
    let report = runtime.block_on(async {
        let pools = crate::server::open_pools(config, &catalog).await?;
        let options = crate::recover::Options { verify_packs };
        anyhow::Ok(crate::recover::recover(catalog.clone(), &pools, options).await?)
    })?;
    let mut text = format!(
        "recovered {} tenants, {} sites, {} buckets ({} namespace records); \
         {} packs ({} bytes, {} blobs indexed); {} commits ({} already present, {} superseded segments)",
        report.tenants_added,
        report.sites_added,
        report.buckets_added,
        report.namespace_records,
        report.packs,
        report.pack_bytes,
        report.blobs_added,
        report.commits_added,
        report.commits_present,
        report.superseded_segments,
    );
    for d in &report.damaged {
        text.push_str(&format!(
            "\ndamaged: pool {} object {}: {}",
            d.pool, d.object, d.error
        ));
    }
    for a in &report.affected {
        text.push_str(&format!(
            "\naffected: {} commit {}: {}",
            a.bucket, a.seq, a.problem
        ));
    }
    output(json, serde_json::to_value(&report)?, &text);
    if !report.is_clean() {
        bail!(
            "recovered with damage: {} objects unusable, {} commits affected (named above)",
            report.damaged.len(),
            report.affected.len()
        );
    }
    Ok(())
}

fn output(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else if !text.is_empty() {
        println!("{text}");
    }
}

/// 256 random bits, hex, with a recognisable prefix.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    write_new(path, &format!("{secret}\n"), 0o600, "token file")
}

/// Writes a file that must not exist yet, with `mode`, and syncs it.
fn write_new(path: &std::path::Path, text: &str, mode: u32, what: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {what} {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {what} {}", path.display()))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
