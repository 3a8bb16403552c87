//! AWS mode in one process: the API over the DynamoDB event log (bodies over an item's size in
//! S3), the relay from the log to the Kinesis stream, and stream workers that build `_history` in
//! DynamoDB and the search indexes in OpenSearch. Several such processes share the work through
//! leases; `run_projectors = false` makes one serve the API only.
//!
//! - `ports`: the read models behind the API's history and search ports.

pub mod ports;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::{BehaviorVersion, Region};
use event_log::dynamodb::{DynamoEventLog, DynamoOptions};
use event_log::EventLog;
use event_stream::{Consumer, ConsumerOptions, Leases, Relay, StreamProjection};
use projector_history::dynamodb::DynamoHistory;
use projector_opensearch::OpenSearchIndex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AwsConfig, Config};
use ports::{Progress, StreamHistory, StreamSearch};

/// How long a worker's leases last without renewal.
const LEASE_TIME: Duration = Duration::from_secs(10);
/// How long a shard worker waits after reading nothing: the delay a write has, at most, on its
/// way to the read models beyond the relay's.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The AWS clients, from the usual credential sources and the configured region and endpoint.
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub s3: aws_sdk_s3::Client,
    /// The shared configuration (credentials, region) the clients were made with.
    pub shared: aws_config::SdkConfig,
}

pub async fn clients(aws: &AwsConfig) -> Clients {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    // A custom endpoint (a local stand-in) serves buckets by path, not by host name.
    let s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(aws.endpoint_url.is_some()).build();
    Clients { dynamodb: aws_sdk_dynamodb::Client::new(&shared), kinesis: aws_sdk_kinesis::Client::new(&shared), s3: aws_sdk_s3::Client::from_conf(s3), shared }
}

/// The OpenSearch index of the configuration, its requests signed as `aws.opensearch_signing` says.
pub fn search_index(aws: &AwsConfig, clients: &Clients) -> anyhow::Result<OpenSearchIndex> {
    Ok(match aws.opensearch_signing.as_str() {
        "none" => OpenSearchIndex::new(&aws.opensearch_url, &aws.index_prefix)?,
        service @ ("es" | "aoss") => OpenSearchIndex::signed(&aws.opensearch_url, &aws.index_prefix, &clients.shared, service)?,
        other => anyhow::bail!("aws.opensearch_signing '{other}' is not none, es or aoss"),
    })
}

/// Creates the tables, the bucket and the stream AWS mode needs (what exists is left alone).
/// OpenSearch indexes are created by their first write.
pub async fn setup(config: &Config) -> anyhow::Result<()> {
    let aws = &config.aws;
    let clients = clients(aws).await;
    event_log::dynamodb::create_table(&clients.dynamodb, &aws.events_table).await.context("cannot create the events table")?;
    event_log::dynamodb::create_bucket(&clients.s3, &aws.bodies_bucket).await.context("cannot create the bodies bucket")?;
    event_log::dynamodb::create_bucket(&clients.s3, &aws.blobs_bucket).await.context("cannot create the blobs bucket")?;
    event_stream::leases::create_table(&clients.dynamodb, &aws.leases_table).await.context("cannot create the leases table")?;
    projector_history::dynamodb::create_table(&clients.dynamodb, &aws.history_table).await.context("cannot create the history table")?;
    audit_log::dynamodb::DynamoAuditStore::create_table(&clients.dynamodb, &aws.audit_table).await.context("cannot create the audit table")?;
    export_worker::dynamodb::create_table(&clients.dynamodb, &aws.exports_table).await.context("cannot create the exports table")?;
    event_stream::create_stream(&clients.kinesis, &aws.stream, aws.stream_shards).await.context("cannot create the stream")?;
    Ok(())
}

/// Rebuilds the read models from the log (the table, not the stream): the search indexes into a
/// new generation whose aliases then move, and `_history` by applying every event again (its
/// writes are idempotent). The server may keep running meanwhile.
pub async fn reindex(config: &Config) -> anyhow::Result<()> {
    let aws = &config.aws;
    let clients = clients(aws).await;
    let options = DynamoOptions::new(&aws.events_table, &aws.bodies_bucket);
    let log = DynamoEventLog::open(clients.dynamodb.clone(), clients.s3.clone(), options).await.context("cannot open the DynamoDB event log")?;
    let search = search_index(aws, &clients)?;
    let reindexed = search.reindex(log.as_ref()).await.context("cannot reindex the search indexes")?;
    println!("search: {} events into {} indexes of generation {}", reindexed.events, reindexed.indexes, reindexed.generation);
    let history = DynamoHistory::new(clients.dynamodb.clone(), &aws.history_table);
    let (mut after, mut replayed) = (0, 0);
    loop {
        let events = log.read_from(after, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        history.apply(&events).await?;
        replayed += events.len();
    }
    println!("history: {replayed} events applied again");
    Ok(())
}

/// `fhir-server export-worker`: runs export jobs until `shutdown` completes, without the API.
pub async fn export_worker(config: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if config.backend != crate::config::BackendKind::Aws {
        anyhow::bail!("export-worker runs in AWS mode (backend = \"aws\"); embedded, serve runs the jobs");
    }
    let stores = Stores::open(config).await?;
    let source = stores.history_port(config);
    let blobs = crate::blobs::aws(config, stores.clients.s3.clone());
    let jobs = crate::exports::aws_store(config, stores.clients.dynamodb.clone());
    let (id, log) = (worker_id(), stores.log.clone());
    let (stop, stopped) = watch::channel(false);
    let worker_config = Config { export: crate::config::ExportConfig { run_worker: true, ..config.export.clone() }, ..config.clone() };
    let (_, worker) = crate::exports::start(&worker_config, id, jobs, source, log, &blobs, stopped);
    tracing::info!("export worker running (AWS mode)");
    shutdown.await;
    let _ = stop.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    Ok(())
}

/// A name for this process's leases: the host and a random part.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// AWS mode's stores and read models, opened.
pub struct Stores {
    pub clients: Clients,
    pub log: Arc<dyn EventLog>,
    pub leases: Leases,
    pub history: Arc<DynamoHistory>,
    pub search: Arc<OpenSearchIndex>,
}

impl Stores {
    pub async fn open(config: &Config) -> anyhow::Result<Stores> {
        let aws = &config.aws;
        let clients = clients(aws).await;
        let options = DynamoOptions::new(&aws.events_table, &aws.bodies_bucket);
        let log: Arc<dyn EventLog> = DynamoEventLog::open(clients.dynamodb.clone(), clients.s3.clone(), options).await.context("cannot open the DynamoDB event log")?;
        let leases = Leases::new(clients.dynamodb.clone(), &aws.leases_table, worker_id(), LEASE_TIME);
        let history = Arc::new(DynamoHistory::new(clients.dynamodb.clone(), &aws.history_table));
        let search = Arc::new(search_index(aws, &clients)?);
        Ok(Stores { clients, log, leases, history, search })
    }

    fn progress(&self, config: &Config, projection: &'static str) -> Progress {
        Progress { kinesis: self.clients.kinesis.clone(), leases: self.leases.clone(), projection, stream: config.aws.stream.clone() }
    }

    /// The history read model behind the API's port (and export snapshots).
    pub fn history_port(&self, config: &Config) -> Arc<StreamHistory> {
        Arc::new(StreamHistory { store: self.history.clone(), progress: self.progress(config, "history") })
    }

    /// The API over these stores, with the given export and subscription services.
    pub fn api(&self, config: &Config, history: Arc<StreamHistory>, exports: command_api::state::Exports, subscriptions: command_api::state::Subscriptions) -> anyhow::Result<Arc<command_api::AppState>> {
        let search_port = Arc::new(StreamSearch { index: self.search.clone(), progress: self.progress(config, "opensearch") });
        let audit: Option<Arc<dyn audit_log::AuditStore>> = match config.audit {
            true => Some(Arc::new(audit_log::dynamodb::DynamoAuditStore::new(self.clients.dynamodb.clone(), &config.aws.audit_table))),
            false => None,
        };
        let blobs = crate::blobs::aws(config, self.clients.s3.clone());
        let guides = crate::guides::load_fixed(config)?;
        let services = command_api::state::Services { blobs, exports, subscriptions, guides };
        Ok(command_api::AppState::new(self.log.clone(), history, search_port, config.api_config(), crate::auth::authenticator(&config.auth)?, audit, services))
    }
}

/// The API alone over AWS mode's stores, for a function behind API Gateway: no relay, no stream
/// workers, no export worker, no notifier (those run elsewhere); exports are queued for the
/// export workers.
pub async fn api_only(config: &Config) -> anyhow::Result<Arc<command_api::AppState>> {
    let stores = Stores::open(config).await?;
    let jobs = crate::exports::aws_store(config, stores.clients.dynamodb.clone());
    let exports = command_api::state::Exports { jobs, wake: Arc::new(tokio::sync::Notify::new()) };
    let subscriptions = command_api::state::Subscriptions { policy: config.subscriptions.policy(), notifier: None };
    stores.api(config, stores.history_port(config), exports, subscriptions)
}

/// Serves in AWS mode until `shutdown` completes, then stops the relay and the workers.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let aws = config.aws.clone();
    let stores = Stores::open(&config).await?;
    let (log, leases, clients) = (stores.log.clone(), stores.leases.clone(), &stores.clients);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    if aws.run_projectors {
        tasks.push(tokio::spawn(Relay::new(log.clone(), clients.kinesis.clone(), &aws.stream, leases.clone()).run(stopped.clone())));
        let projections: [Arc<dyn StreamProjection>; 2] = [stores.history.clone(), stores.search.clone()];
        for projection in projections {
            let options = ConsumerOptions { idle_poll: IDLE_POLL, ..ConsumerOptions::new(&aws.stream) };
            let consumer = Consumer::new(clients.kinesis.clone(), leases.clone(), log.clone(), projection, options);
            tasks.push(tokio::spawn(consumer.run(stopped.clone())));
        }
    }
    let address = listener.local_addr().context("listener has no address")?;
    crate::auth::check_exposure(&config.auth, address)?;
    let history_port = stores.history_port(&config);
    let blobs = crate::blobs::aws(&config, clients.s3.clone());
    let jobs = crate::exports::aws_store(&config, clients.dynamodb.clone());
    let (exports, export_worker) = crate::exports::start(&config, worker_id(), jobs, history_port.clone(), log.clone(), &blobs, stopped.clone());
    tasks.extend(export_worker);
    let (subscriptions, notifier) = crate::notifier::start(&config, log.clone(), stopped.clone())?;
    tasks.extend(notifier);
    let api = stores.api(&config, history_port, exports, subscriptions)?;
    let app = command_api::router_for(api).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tracing::info!(%address, base_path = %config.base_path, stream = %aws.stream, "fhir server listening (AWS mode)");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("http server failed")?;

    tracing::info!("http server stopped; stopping the relay and the stream workers");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}
