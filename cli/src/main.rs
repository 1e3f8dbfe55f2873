//! `strata`: the operator's command line — make and import data, serve it through every door.
//! Each command is a file of `commands/`; this file parses and dispatches.

mod commands;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use strata_query::audit::AuditQuery;
use strata_query::config::ServerConfig;

/// mimalloc, as datafusion-cli ships: query execution allocates and frees many short-lived
/// buffers, and glibc's allocator spent a tenth of a protected aggregate's time in page faults
/// returning them to the kernel.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a Flight SQL engine for research-program data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic synthetic dataset (same seed and arguments, same bytes).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10_000, allow_negative_numbers = true)]
        persons: u64,
        #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
        shards: u32,
        #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
        seed: u64,
    },
    /// Import data into a dataset.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Serve a dataset over Arrow Flight SQL.
    Serve {
        #[arg(long)]
        dataset: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the audit log of a server: one line per request, filtered.
    Audit {
        /// The dataset whose server's log to read (its default location).
        #[arg(long, required_unless_present = "log")]
        dataset: Option<PathBuf>,
        /// The audit log file (when not at the default location).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Only requests of this passport subject.
        #[arg(long)]
        sub: Option<String>,
        /// Only requests with this outcome (ok, denied, unauthenticated, invalid, error, …).
        #[arg(long)]
        outcome: Option<String>,
        /// Only requests at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only statements containing this text.
        #[arg(long)]
        contains: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Make a dev passport issuer key pair (issuer.pem, jwks.json, issuer.json).
    Keys(commands::keys::KeysArgs),
    /// Print a signed dev passport.
    Token(commands::keys::TokenArgs),
    /// Execute plan fragments for a coordinator (`strata serve --workers`) over the same
    /// dataset. A worker has no client door: it takes plans from the coordinator only.
    Worker {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "127.0.0.1:50061")]
        listen: SocketAddr,
        /// The coordinator's cluster secret (default: the dataset's state folder's
        /// `cluster.key`, which the coordinator makes).
        #[arg(long)]
        cluster_secret_file: Option<PathBuf>,
        /// The coordinator's settings file: its state folder (date-shift secret) and
        /// `[registered]` settings must be the coordinator's; `[tls]` is the worker's
        /// certificate (TLS, mutual with `client_ca`), `[cluster] ca_file` the workers' CA.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Listen on a non-loopback address without TLS (no `[tls]` certificate), the cluster
        /// secret and plan fragments travelling unencrypted (a private cluster network only).
        #[arg(long)]
        allow_plaintext_network: bool,
    },
    /// Create a small synthetic dataset under ./.strata/ (if absent) and serve it on localhost.
    Demo {
        #[arg(long, default_value_t = 5_000)]
        persons: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// An OMOP CDM 5.3/5.4 export (Parquet or CSV files named after their tables).
    Omop {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
        shards: u32,
    },
    /// Add or replace the variant and genotype tables of a dataset from a bgzipped VCF.
    Vcf {
        #[arg(long)]
        from: PathBuf,
        /// The dataset to add the tables to.
        #[arg(long)]
        out: PathBuf,
        /// CSV `sample,person_id` mapping VCF samples to participants.
        #[arg(long)]
        samples: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// Address to listen on. Without --jwks only loopback addresses are allowed.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Also serve PostgreSQL clients (psql, ODBC, R DBI, BI tools) here; overrides `[pg] listen`.
    #[arg(long)]
    pub pg_listen: Option<SocketAddr>,
    /// JWKS of trusted passport and visa issuers; every call must then carry a passport.
    #[arg(long)]
    pub jwks: Option<PathBuf>,
    /// With --jwks: let callers without a token in, at the public tier (aggregates only).
    #[arg(long)]
    pub allow_anonymous: bool,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Folder of the local-disk cache tier for object-store data (off when not given).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    pub cache_memory_mb: u64,
    #[arg(long, default_value_t = 8192)]
    pub cache_disk_mb: u64,
    /// Server settings (TOML): state_dir, [registered], [egress], [audit], [disclosure], [pg],
    /// [tls], [limits], [telemetry], [cluster].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Coordinate these workers (`strata worker`), `host:port,…`; added to `[cluster] workers`.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// The secret the workers require (default: `<state_dir>/cluster.key`, made if missing).
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; still, the operator gets one line, not a backtrace dump — with
        // where it happened, for the bug report.
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{at}",
            strata_engine::error::first_line(&msg)
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like every other error; `strata <command> --help` has the details.
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{}", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!(
            "error: {}",
            strata_engine::error::first_line(&format!("{e:#}"))
        );
        ExitCode::FAILURE
    };
    // The server's settings come first: `[telemetry]` decides where the log and traces go.
    let (log_format, config) = match &cli.command {
        Command::Serve { server, .. } | Command::Demo { server, .. } => {
            match ServerConfig::load(server.config.as_deref()) {
                Ok(mut config) => {
                    config
                        .cluster
                        .workers
                        .extend(server.workers.iter().cloned());
                    if let Some(f) = &server.cluster_secret_file {
                        config.cluster.secret_file = Some(f.clone());
                    }
                    (server.log_format, config)
                }
                Err(e) => return failed(&format!("{e:#}")),
            }
        }
        Command::Worker {
            config: path,
            log_format,
            ..
        } => match ServerConfig::load(path.as_deref()) {
            Ok(config) => (*log_format, config),
            Err(e) => return failed(&format!("{e:#}")),
        },
        _ => (LogFormat::Text, ServerConfig::default()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return failed(&format!("cannot start the runtime: {e}")),
    };
    let format = match log_format {
        LogFormat::Text => strata_telemetry::LogFormat::Text,
        LogFormat::Json => strata_telemetry::LogFormat::Json,
    };
    let telemetry = {
        let _runtime = runtime.enter();
        match strata_telemetry::init(format, &config.telemetry) {
            Ok(t) => t,
            Err(e) => return failed(&e),
        }
    };
    let outcome = runtime.block_on(run(cli, config));
    telemetry.shutdown();
    // Connections a client left open past the shutdown hold their queries: dropping them writes
    // their end records, and the audit log, dropped last, puts them on disk.
    runtime.shutdown_timeout(std::time::Duration::from_secs(3));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&format!("{e:#}")),
    }
}

async fn run(cli: Cli, config: ServerConfig) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate {
            out,
            persons,
            shards,
            seed,
        } => commands::generate::run(out, persons, shards, seed).await,
        Command::Import {
            what: ImportCommand::Omop { from, out, shards },
        } => commands::import::omop(from, out, shards).await,
        Command::Import {
            what: ImportCommand::Vcf { from, out, samples },
        } => commands::import::vcf(from, out, samples).await,
        Command::Audit {
            dataset,
            log,
            sub,
            outcome,
            since,
            contains,
            json,
        } => {
            let query = AuditQuery {
                sub,
                outcome,
                since,
                contains,
                json,
            };
            commands::audit::run(dataset, log, query)
        }
        Command::Keys(a) => commands::keys::run_keys(&a),
        Command::Token(a) => commands::keys::run_token(&a),
        Command::Serve { dataset, server } => {
            commands::serve::serve(&dataset, &server, &config, None).await
        }
        Command::Demo { persons, server } => commands::demo::demo(persons, &server, &config).await,
        Command::Worker {
            dataset,
            listen,
            cluster_secret_file,
            allow_plaintext_network,
            ..
        } => {
            commands::worker::run(
                &dataset,
                listen,
                cluster_secret_file,
                allow_plaintext_network,
                &config,
            )
            .await
        }
    }
}
