//! The export worker of each mode, and the API's side of it: jobs in `exports.db` (embedded) or
//! the DynamoDB table `aws.exports_table`, snapshots from the history store of the mode, files
//! into its blob store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use command_api::state::Exports;
use event_log::EventLog;
use export_worker::{JobStore, Settings, SnapshotSource, Worker};
use tokio::sync::{watch, Notify};

use crate::config::Config;

const EXPORTS_FILE: &str = "exports.db";

pub fn embedded_store(data_dir: &Path) -> anyhow::Result<Arc<dyn JobStore>> {
    let store = export_worker::sqlite::SqliteJobStore::open(&data_dir.join(EXPORTS_FILE)).context("cannot open the export jobs")?;
    Ok(Arc::new(store))
}

pub fn aws_store(config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Arc<dyn JobStore> {
    Arc::new(export_worker::dynamodb::DynamoJobStore::new(dynamodb, &config.aws.exports_table))
}

fn settings(config: &Config) -> Settings {
    Settings {
        page_size: config.export.page_size.max(1),
        max_file_bytes: config.export.max_file_bytes.max(1),
        retention: Duration::from_secs(config.export.retention_secs),
        ..Settings::default()
    }
}

/// The API's handle on the jobs, and, when this process runs them, the worker (started on
/// `stopped`); `worker_id` names its leases.
pub fn start(
    config: &Config,
    worker_id: String,
    jobs: Arc<dyn JobStore>,
    source: Arc<dyn SnapshotSource>,
    log: Arc<dyn EventLog>,
    blobs: &command_api::state::Blobs,
    stopped: watch::Receiver<bool>,
) -> (Exports, Option<tokio::task::JoinHandle<()>>) {
    let wake = Arc::new(Notify::new());
    let exports = Exports { jobs: jobs.clone(), wake: wake.clone() };
    if !config.export.run_worker {
        return (exports, None);
    }
    let worker = Arc::new(Worker { id: worker_id, store: jobs, source, log, blobs: blobs.store.clone(), settings: settings(config), wake });
    (exports, Some(tokio::spawn(worker.run(stopped))))
}
