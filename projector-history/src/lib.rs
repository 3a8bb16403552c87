//! The history projector: tails the event log from a checkpoint and keeps, per tenant, the current
//! state of every resource and the time-ordered list of every version, which answers instance,
//! type and system `_history`.
//!
//! The projection stores log positions, not bodies: a history page is a list of positions that the
//! caller reads from the log. Applying an event is idempotent (re-applying changes nothing, an older
//! version never overwrites a newer one) and the checkpoint commits in the same transaction as the
//! rows it covers, so a crash at any point resumes correctly. Deleting the projection's file and
//! restarting rebuilds it by replay.
//!
//! Layout:
//! - [`store`]: the SQLite read model (schema, apply, queries).
//! - [`dynamodb`]: the same history on DynamoDB for AWS mode, fed from the event stream.
//!
//! The store implements [`event_log::tail::Projection`]; [`run`] feeds it from the log.

pub mod dynamodb;
pub mod store;

use std::sync::Arc;

use event_log::EventLog;
use tokio::sync::watch;

/// Runs the history projector until `shutdown` turns true.
pub async fn run(store: Arc<HistoryStore>, log: Arc<dyn EventLog>, shutdown: watch::Receiver<bool>) {
    event_log::tail::run(store, log, shutdown).await
}
pub use store::{CurrentState, HistoryStore, StoreError};
