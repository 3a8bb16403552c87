//! The projectors' tail loop: read the log after the projection's checkpoint, apply a batch,
//! repeat; sleep on the log's head watch when caught up. Failures are retried with backoff, never
//! skipped, so a projection never misses an event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{Event, EventLog};

/// A read model fed from the log. `apply` must be idempotent (events at or below the checkpoint
/// may come again after a crash) and must commit the checkpoint with the rows it covers.
pub trait Projection: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// The position of the last event applied.
    fn checkpoint(&self) -> u64;
    /// Applies events in position order (blocking; it runs on a blocking thread).
    fn apply(&self, events: &[Event]) -> Result<(), String>;
}

/// Events read and applied per transaction.
const BATCH: usize = 2000;

/// Runs the projector until `shutdown` turns true.
pub async fn run<P: Projection>(projection: Arc<P>, log: Arc<dyn EventLog>, mut shutdown: watch::Receiver<bool>) {
    let mut head = log.watch_head();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let checkpoint = projection.checkpoint();
        let events = match log.read_from(checkpoint, BATCH).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, checkpoint, projection = projection.name(), "projector cannot read the log; retrying");
                sleep_or_shutdown(&mut shutdown, &mut backoff).await;
                continue;
            }
        };
        if events.is_empty() {
            head.mark_unchanged();
            if *head.borrow() > checkpoint {
                continue;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let count = events.len();
        let projection_for_batch = projection.clone();
        let applied = tokio::task::spawn_blocking(move || projection_for_batch.apply(&events)).await;
        match applied {
            Ok(Ok(())) => {
                backoff = Duration::from_millis(50);
                tracing::debug!(count, projection = projection.name(), checkpoint = projection.checkpoint(), "projector applied batch");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, checkpoint, projection = projection.name(), "projector cannot apply a batch; retrying");
                sleep_or_shutdown(&mut shutdown, &mut backoff).await;
            }
            Err(error) => {
                tracing::error!(%error, checkpoint, projection = projection.name(), "projector batch task failed; retrying");
                sleep_or_shutdown(&mut shutdown, &mut backoff).await;
            }
        }
    }
}

async fn sleep_or_shutdown(shutdown: &mut watch::Receiver<bool>, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.changed() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}
