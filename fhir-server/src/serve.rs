//! One process serving the FHIR API in embedded mode: the SQLite event log, the history and
//! search projectors as tasks, and the axum server. Shutdown stops accepting connections, lets in-flight
//! requests finish (their writes commit), stops the projector, then closes the log.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::EventLog;
use projector_history::HistoryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{BackendKind, Config, SyncMode};
use crate::history_index::ProjectedHistory;
use crate::search_backend::IndexedSearch;
use crate::guides::Installer;
use crate::search_slot::SearchSlot;

/// File names inside the data directory.
pub const LOG_FILE: &str = "events.db";
pub const HISTORY_FILE: &str = "history.db";
pub const AUDIT_FILE: &str = "audit.db";
/// Held locked by the process that writes the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Takes the data directory for this process: two writers on one log would each believe they
/// are the only one. The lock goes with the returned file (or the process).
pub fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another fhir-server process is using the data directory {}", config.data_dir.display())
        }
        Err(std::fs::TryLockError::Error(error)) => Err(error).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Opens the embedded event log in `config.data_dir`, creating the directory if needed.
pub fn open_log(config: &Config) -> anyhow::Result<Arc<SqliteEventLog>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let synchronous = match config.sync {
        SyncMode::Full => Synchronous::Full,
        SyncMode::Normal => Synchronous::Normal,
    };
    let options = SqliteOptions { synchronous, ..SqliteOptions::default() };
    let log = SqliteEventLog::open(config.data_dir.join(LOG_FILE), options).context("cannot open the event log")?;
    Ok(Arc::new(log))
}

/// Serves until `shutdown` completes, then drains and closes everything. In AWS mode, see
/// [`crate::aws::run`].
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    if config.backend == BackendKind::Aws {
        return crate::aws::run(config, listener, shutdown).await;
    }
    let address = listener.local_addr().context("listener has no address")?;
    crate::auth::check_exposure(&config.auth, address)?;
    let embedded = Embedded::open(&config, None)?;
    tracing::info!(%address, base_path = %config.base_path, data_dir = %config.data_dir.display(), "fhir server listening");
    let app = embedded.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("http server failed")?;
    tracing::info!("http server stopped; stopping projectors");
    embedded.close().await;
    Ok(())
}

/// The embedded mode's parts, opened over the data directory (which they lock): the log, the
/// history and search projections with their projectors running, and the API over them.
pub struct Embedded {
    _lock: std::fs::File,
    log: Arc<SqliteEventLog>,
    search: Arc<SearchSlot>,
    stop_projectors: watch::Sender<bool>,
    history_projector: tokio::task::JoinHandle<()>,
    export_worker: Option<tokio::task::JoinHandle<()>>,
    /// The notifier, the SearchParameter projection and the index keeper.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    api: Arc<command_api::AppState>,
    router: axum::Router,
}

impl Embedded {
    /// Opens everything; `bulk_load` is for an import of about that many events (see
    /// [`SearchSlot::open`]).
    pub fn open(config: &Config, bulk_load: Option<u64>) -> anyhow::Result<Self> {
        let lock = lock_data_dir(config)?;
        let log = open_log(config)?;
        let history = Arc::new(HistoryStore::open(&config.data_dir.join(HISTORY_FILE)).context("cannot open the history projection")?);
        let (stop_projectors, projectors_stopped) = watch::channel(false);
        let dyn_log: Arc<dyn EventLog> = log.clone();
        let history_projector = tokio::spawn(projector_history::run(history.clone(), dyn_log.clone(), projectors_stopped.clone()));
        let conformance = crate::guides::conformance(config, &crate::guides::load(config)?)?;
        let (custom, api_parameters, _) = crate::search_params::install_at_start(&config.data_dir, &conformance)?;
        let search = SearchSlot::open(&config.data_dir, dyn_log.clone(), bulk_load)?;
        let mut guide_tasks = vec![
            tokio::spawn(event_log::tail::run(api_parameters.clone(), dyn_log.clone(), projectors_stopped.clone())),
            tokio::spawn(crate::search_params::keep_index_current(search.clone(), config.data_dir.clone(), custom.subscribe(), projectors_stopped.clone())),
        ];
        let api_config = config.api_config();
        let authenticator = crate::auth::authenticator(&config.auth)?;
        let audit: Option<Arc<dyn audit_log::AuditStore>> = match config.audit {
            true => Some(Arc::new(audit_log::sqlite::SqliteAuditStore::open(&config.data_dir.join(AUDIT_FILE)).context("cannot open the audit trail")?)),
            false => None,
        };
        let blobs = crate::blobs::embedded(config)?;
        let history = Arc::new(ProjectedHistory(history));
        let jobs = crate::exports::embedded_store(&config.data_dir)?;
        // One process per data directory: its worker takes its own unfinished jobs back at once.
        let (exports, export_worker) = crate::exports::start(config, "embedded".into(), jobs, history.clone(), dyn_log.clone(), &blobs, projectors_stopped.clone());
        let (subscriptions, notifier) = crate::notifier::start(config, dyn_log.clone(), projectors_stopped)?;
        let guides = Arc::new(command_api::state::Guides::new(conformance, config.ig.required_profiles.clone()));
        guides.set_installer(Arc::new(Installer {
            config: config.clone(),
            guides: guides.clone(),
            search_parameters: custom,
            lock: tokio::sync::Mutex::new(()),
        }));
        let services = command_api::state::Services { blobs, exports, subscriptions, guides };
        let api = command_api::AppState::new(dyn_log, history, Arc::new(IndexedSearch(search.clone())), api_config.clone(), authenticator, audit, services);
        let router = command_api::router_for(api.clone()).merge(crate::admin::routes(&api_config.base_path, api.clone(), search.clone()));
        guide_tasks.extend(notifier);
        Ok(Embedded { _lock: lock, log, search, stop_projectors, history_projector, export_worker, tasks: guide_tasks, api, router })
    }

    /// The API (and the admin routes) to serve.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The API's state, for calls from inside the process.
    pub fn api(&self) -> &Arc<command_api::AppState> {
        &self.api
    }

    pub fn search(&self) -> &Arc<SearchSlot> {
        &self.search
    }

    /// The log's last position.
    pub async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.log.head().await?)
    }

    /// Stops the projectors and closes the log; call once no request is in flight.
    pub async fn close(self) {
        let _ = self.stop_projectors.send(true);
        self.search.stop();
        let _ = self.history_projector.await;
        for task in self.export_worker.into_iter().chain(self.tasks) {
            let _ = task.await;
        }
        self.log.close().await;
        tracing::info!("event log closed");
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}
