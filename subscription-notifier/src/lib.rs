//! R4 rest-hook Subscriptions, delivered at least once and in order.
//!
//! The notifier is a projection of the log ([`store::NotifierStore`], run by
//! `event_log::tail`): a Subscription version takes effect for the next event; every other
//! created or updated resource is matched, with the in-memory interpreter of the shared query
//! model, against the tenant's live subscriptions of its type, and each match is queued in the
//! same transaction as the checkpoint, so nothing is queued twice or lost across a restart.
//! [`deliver::Dispatcher`] sends the queues.
//!
//! - [`subscription`]: the Subscription resource parsed and checked (the API refuses what fails);
//! - [`safety`]: where notifications may go;
//! - [`store`]: subscriptions, the delivery queue, the checkpoint, and the figures `$status`
//!   shows;
//! - [`deliver`]: sending, retries with backoff, and the `error` state.

pub mod deliver;
pub mod safety;
pub mod store;
pub mod subscription;

use std::sync::Arc;

use event_log::EventLog;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use deliver::{Dispatcher, Settings};
pub use safety::EndpointPolicy;
pub use store::NotifierStore;

/// Starts the projector and the dispatcher; both stop when `stop` turns true.
pub fn start(store: Arc<NotifierStore>, log: Arc<dyn EventLog>, policy: EndpointPolicy, settings: Settings, stop: watch::Receiver<bool>) -> [JoinHandle<()>; 2] {
    let projector = tokio::spawn(event_log::tail::run(store.clone(), log.clone(), stop.clone()));
    let dispatcher = tokio::spawn(Dispatcher::new(store, log, policy, settings).run(stop));
    [projector, dispatcher]
}
