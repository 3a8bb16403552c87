//! The tail loop: read the log after the checkpoint, apply a batch, repeat; sleep on the log's
//! head watch when caught up. Storage failures are retried with backoff, never skipped.

use std::sync::Arc;
use std::time::Duration;

use event_log::EventLog;
use tokio::sync::watch;

use crate::store::HistoryStore;

/// Events read and applied per transaction.
const BATCH: usize = 2000;

/// Runs the projector until `shutdown` turns true.
pub async fn run(store: Arc<HistoryStore>, log: Arc<dyn EventLog>, mut shutdown: watch::Receiver<bool>) {
    let mut head = log.watch_head();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let checkpoint = store.checkpoint();
        let events = match log.read_from(checkpoint, BATCH).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, checkpoint, "history projector cannot read the log; retrying");
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
        let store_for_batch = store.clone();
        let applied = tokio::task::spawn_blocking(move || store_for_batch.apply(&events)).await;
        match applied {
            Ok(Ok(())) => {
                backoff = Duration::from_millis(50);
                tracing::debug!(count, checkpoint = store.checkpoint(), "history projector applied batch");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, checkpoint, "history projector cannot apply a batch; retrying");
                sleep_or_shutdown(&mut shutdown, &mut backoff).await;
            }
            Err(error) => {
                tracing::error!(%error, checkpoint, "history projector batch task failed; retrying");
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
