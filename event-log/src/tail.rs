//! The projectors' tail loop: read the log after the projection's checkpoint, apply a batch,
//! repeat; sleep on the log's head watch when caught up. Failures are retried with backoff, never
//! skipped, so a projection never misses an event.
//!
//! Far behind the head (a rebuild, a large import) the loop reads larger batches and reads the
//! next one while the current one is applied. Each time it reaches the head it tells the
//! projection ([`Projection::caught_up`]), which may then finish work it deferred while replaying;
//! before each batch it tells how far behind the head it is ([`Projection::behind`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Event, EventLog, LogError};

/// A read model fed from the log. `apply` must be idempotent (events at or below the checkpoint
/// may come again after a crash) and must commit the checkpoint with the rows it covers.
pub trait Projection: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// The position of the last event applied.
    fn checkpoint(&self) -> u64;
    /// Applies events in position order (blocking; it runs on a blocking thread).
    fn apply(&self, events: &[Event]) -> Result<(), String>;
    /// Called (on a blocking thread) when the projection has applied everything the log held
    /// when last read. Retried like `apply` when it fails.
    fn caught_up(&self) -> Result<(), String> {
        Ok(())
    }
    /// Called (on the blocking thread, before each `apply`) with how many events the log holds
    /// beyond the checkpoint, so that a projection far behind may switch to a faster way of
    /// catching up and finish it in `caught_up`.
    fn behind(&self, _events: u64) -> Result<(), String> {
        Ok(())
    }
}

/// Events read and applied per transaction while keeping up with the log.
const BATCH: usize = 2000;
/// Events per transaction when further behind than this.
const CATCH_UP_BATCH: usize = 20_000;

/// A read started before the previous batch was applied: events after `after`, up to `limit`.
struct Prefetch {
    after: u64,
    limit: usize,
    task: JoinHandle<crate::Result<Vec<Event>>>,
}

fn batch_size(behind: u64) -> usize {
    if behind > CATCH_UP_BATCH as u64 {
        CATCH_UP_BATCH
    } else {
        BATCH
    }
}

/// Runs the projector until `shutdown` turns true.
pub async fn run<P: Projection>(projection: Arc<P>, log: Arc<dyn EventLog>, mut shutdown: watch::Receiver<bool>) {
    let mut head = log.watch_head();
    let mut backoff = Duration::from_millis(50);
    let mut prefetched: Option<Prefetch> = None;
    // Whether `caught_up` has succeeded since the last batch was applied.
    let mut announced = false;
    loop {
        if *shutdown.borrow() {
            if let Some(prefetch) = prefetched.take() {
                prefetch.task.abort();
            }
            return;
        }
        let checkpoint = projection.checkpoint();
        let (read, limit) = match prefetched.take() {
            Some(prefetch) if prefetch.after == checkpoint => {
                let read = prefetch.task.await.unwrap_or_else(|error| Err(LogError::Storage(error.to_string())));
                (read, prefetch.limit)
            }
            stale => {
                if let Some(prefetch) = stale {
                    prefetch.task.abort();
                }
                let limit = batch_size(head.borrow().saturating_sub(checkpoint));
                (log.read_from(checkpoint, limit).await, limit)
            }
        };
        let events = match read {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, checkpoint, projection = projection.name(), "projector cannot read the log; retrying");
                sleep_or_shutdown(&mut shutdown, &mut backoff).await;
                continue;
            }
        };
        if events.is_empty() {
            if !announced {
                announced = announce(&projection, &mut shutdown, &mut backoff).await;
                continue;
            }
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
        let reached_head = count < limit;
        if !reached_head {
            if let Some(last) = events.last() {
                let (after, log) = (last.position, log.clone());
                let limit = batch_size(head.borrow().saturating_sub(after));
                prefetched = Some(Prefetch { after, limit, task: tokio::spawn(async move { log.read_from(after, limit).await }) });
            }
        }
        let projection_for_batch = projection.clone();
        let behind = head.borrow().saturating_sub(checkpoint);
        let applied = tokio::task::spawn_blocking(move || {
            projection_for_batch.behind(behind)?;
            projection_for_batch.apply(&events)
        })
        .await;
        match applied {
            Ok(Ok(())) => {
                backoff = Duration::from_millis(50);
                announced = false;
                tracing::debug!(count, projection = projection.name(), checkpoint = projection.checkpoint(), "projector applied batch");
                if reached_head {
                    announced = announce(&projection, &mut shutdown, &mut backoff).await;
                }
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

/// Tells the projection it has caught up; false (after a backoff) if that failed.
async fn announce<P: Projection>(projection: &Arc<P>, shutdown: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let for_task = projection.clone();
    match tokio::task::spawn_blocking(move || for_task.caught_up()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, projection = projection.name(), "projector cannot finish catching up; retrying");
            sleep_or_shutdown(shutdown, backoff).await;
            false
        }
        Err(error) => {
            tracing::error!(%error, projection = projection.name(), "projector catch-up task failed; retrying");
            sleep_or_shutdown(shutdown, backoff).await;
            false
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
