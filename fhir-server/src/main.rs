//! `fhir-server`: parse arguments, start logging, and run a command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fhir_server::config::{Config, LogFormat};

// The server allocates many small JSON trees per request; mimalloc handles that churn with far
// less time in the allocator than the system's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "fhir-server", version, about = "An event-sourced FHIR R4 server")]
struct Cli {
    /// A TOML configuration file (also FHIR_SERVER_CONFIG).
    #[arg(long, global = true, env = "FHIR_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API (the default command).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (overrides the configuration).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// AWS mode: create the DynamoDB tables, the S3 bucket and the Kinesis stream the
    /// configuration's `[aws]` section names (what exists is left alone).
    AwsSetup,
    /// AWS mode: run bulk export jobs only (no API) until stopped. Any number of these and of
    /// servers share the jobs; each job runs in one of them at a time.
    ExportWorker,
    /// Check every resource's hash chain in the event log; exits 1 if any event was tampered with.
    Verify,
    /// Rebuild the search index from the log. With --server, asks a running server to rebuild
    /// and swap it in without downtime; without, rebuilds offline (stop the server first). In
    /// AWS mode, builds new OpenSearch indexes and moves the aliases, and replays `_history`,
    /// while servers keep running.
    Reindex {
        /// Base URL of a running server, e.g. http://127.0.0.1:8080/fhir.
        #[arg(long)]
        server: Option<String>,
    },
    /// Implementation Guides (FHIR packages): install one, or list the installed ones.
    Ig {
        #[command(subcommand)]
        command: IgCommand,
    },
    /// Load Bundle files (transaction or batch) and NDJSON files (one resource per line, by the
    /// .ndjson extension) through the API; directories are read for such files. Re-running skips
    /// what was imported and never duplicates.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Base URL of a running server; without it the API runs in this process over the
        /// data directory (which must not be in use).
        #[arg(long)]
        server: Option<String>,
        /// Files (Bundles, or NDJSON batches) in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// With multi-tenancy (and no --server), the tenant to load into; with --server, put
        /// the tenant in its URL.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum IgCommand {
    /// Install a package (a .tgz, or a folder holding package/package.json). Packages are per
    /// server. With --server, into a running server (bearer token from FHIR_SERVER_TOKEN);
    /// without, into the data directory of a stopped one. A package that adds search
    /// parameters starts a rebuild of the search index by replay.
    Install {
        path: PathBuf,
        /// Base URL of a running server, e.g. http://127.0.0.1:8080/fhir.
        #[arg(long)]
        server: Option<String>,
        /// Install even if packages it depends on are not installed (what it takes from them is
        /// then not checked).
        #[arg(long)]
        allow_missing_dependencies: bool,
    },
    /// Remove an installed package from the data directory of a stopped server (not while
    /// another installed package depends on it).
    Remove { name: String },
    /// List the packages installed in the data directory.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(data) = cli.data {
        config.data_dir = data;
    }
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    if let Command::Serve { listen: Some(listen) } = &command {
        config.listen = *listen;
    }
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve { .. } => {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                fhir_server::serve::run(config, listener, fhir_server::serve::shutdown_signal()).await?;
                Ok(true)
            }
            Command::AwsSetup => {
                fhir_server::aws::setup(&config).await?;
                println!(
                    "AWS mode is set up: tables {}, {}, {}, {}, {}, buckets {}, {}, stream {}",
                    config.aws.events_table, config.aws.leases_table, config.aws.history_table, config.aws.audit_table, config.aws.exports_table, config.aws.bodies_bucket, config.aws.blobs_bucket, config.aws.stream
                );
                Ok(true)
            }
            Command::Verify => fhir_server::verify::run(&config).await,
            Command::ExportWorker => {
                fhir_server::aws::export_worker(&config, fhir_server::serve::shutdown_signal()).await?;
                Ok(true)
            }
            Command::Reindex { server: None } if config.backend == fhir_server::config::BackendKind::Aws => {
                fhir_server::aws::reindex(&config).await?;
                Ok(true)
            }
            Command::Reindex { server: None } => {
                let _lock = fhir_server::serve::lock_data_dir(&config)?;
                let log = fhir_server::serve::open_log(&config)?;
                fhir_server::search_slot::reindex_offline(&config.data_dir, log.clone()).await?;
                log.close().await;
                Ok(true)
            }
            Command::Reindex { server: Some(base) } => fhir_server::reindex_client::run(&base).await,
            Command::Ig { command: IgCommand::Install { path, server: Some(base), allow_missing_dependencies } } => fhir_server::ig_cli::install_remote(&base, &path, allow_missing_dependencies).await,
            Command::Ig { command: IgCommand::Install { path, server: None, allow_missing_dependencies } } => fhir_server::ig_cli::install_offline(&config, &path, allow_missing_dependencies).await,
            Command::Ig { command: IgCommand::Remove { name } } => fhir_server::ig_cli::remove_offline(&config, &name).await,
            Command::Ig { command: IgCommand::List } => fhir_server::ig_cli::list(&config),
            Command::Import { paths, server, concurrency, tenant } => {
                fhir_server::import::run(&config, fhir_server::import::Options { paths, server, concurrency, tenant }).await
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
