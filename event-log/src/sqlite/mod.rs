//! The embedded event log: one SQLite file in WAL mode, one writer thread with group commit.
//!
//! - `schema`: the table, its indexes, and how connections are opened.
//! - `writer`: the writer thread, which batches concurrent appends into one transaction (one
//!   fsync) and computes positions and hashes.
//! - `read`: a small pool of read-only connections used from tokio's blocking threads.
//! - `row`: conversions between envelope fields and column values.
//!
//! One process owns the file: the writer assumes nobody else appends to it.

mod read;
mod row;
mod schema;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use self::read::ReadPool;
pub use self::schema::Synchronous;
use self::writer::{AppendRequest, Counters, GroupLimits, Writer};
use crate::model::{AppendBatch, Appended, Event, StreamKey};
use crate::{EventLog, LogError, Result};

/// How the embedded log is opened.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// At most this many appends share one transaction.
    pub max_group_appends: usize,
    /// A group stops taking more appends once it holds this many events.
    pub max_group_events: usize,
    /// Appends that may wait for the writer before `append` itself waits.
    pub queue_capacity: usize,
    /// Reads that run at once, each on its own connection.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_group_appends: 1_024,
            max_group_events: 16_384,
            queue_capacity: 4_096,
            read_connections: 4,
        }
    }
}

/// What the writer has done since open: the ratio of events to groups is the group-commit gain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// Transactions committed (one fsync each with [`Synchronous::Full`]).
    pub groups_committed: u64,
    /// Appends (batches) committed.
    pub appends_committed: u64,
    pub events_committed: u64,
    /// Appends answered with [`LogError::Conflict`].
    pub conflicts: u64,
    /// Groups whose transaction failed; each of their appends got [`LogError::Storage`].
    pub groups_failed: u64,
}

/// The embedded [`EventLog`].
pub struct SqliteEventLog {
    path: PathBuf,
    /// `None` once closed. Each append clones the sender, so the writer stops only when the last
    /// in-flight append has been queued.
    requests: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    /// Fires when the writer thread has answered everything and dropped its connection.
    writer_stopped: Mutex<Option<oneshot::Receiver<()>>>,
    reads: Arc<ReadPool>,
    head: watch::Receiver<u64>,
    counters: Arc<Counters>,
}

impl SqliteEventLog {
    /// Opens the log at `path`, creating the file (and its directory) if needed, and starts the
    /// writer thread. Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| LogError::Storage(format!("cannot create {}: {error}", parent.display())))?;
        }
        let connection = schema::open_writer(&path, options.synchronous)?;
        let head = row::to_u64(schema::max_position(&connection)?, "position")?;
        let reads = ReadPool::open(path.clone(), options.read_connections)?;

        let (request_sender, request_receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (head_sender, head_receiver) = watch::channel(head);
        let (stopped_sender, stopped_receiver) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            connection,
            requests: request_receiver,
            head: head_sender,
            counters: Arc::clone(&counters),
            limits: GroupLimits {
                max_requests: options.max_group_appends.max(1),
                max_events: options.max_group_events.max(1),
            },
        };
        std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn(move || {
                writer.run();
                let _ = stopped_sender.send(());
            })
            .map_err(|error| LogError::Storage(format!("cannot start the writer thread: {error}")))?;

        tracing::info!(path = %path.display(), head, "event log opened");
        Ok(Self {
            path,
            requests: RwLock::new(Some(request_sender)),
            writer_stopped: Mutex::new(Some(stopped_receiver)),
            reads,
            head: head_receiver,
            counters,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting appends and reads, lets the writer answer every append already accepted,
    /// and waits until it has released the file. Later calls get [`LogError::Closed`].
    ///
    /// Dropping the log does the same without waiting: the writer finishes in the background.
    pub async fn close(&self) {
        self.requests.write().unwrap_or_else(PoisonError::into_inner).take();
        self.reads.close();
        let stopped = self.writer_stopped.lock().await.take();
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }

    pub fn stats(&self) -> SqliteStats {
        let counters = &self.counters;
        SqliteStats {
            groups_committed: counters.groups_committed.load(Ordering::Relaxed),
            appends_committed: counters.appends_committed.load(Ordering::Relaxed),
            events_committed: counters.events_committed.load(Ordering::Relaxed),
            conflicts: counters.conflicts.load(Ordering::Relaxed),
            groups_failed: counters.groups_failed.load(Ordering::Relaxed),
        }
    }
}

/// Rejects what no implementation accepts before it reaches the writer.
fn validate(batch: &AppendBatch) -> Result<()> {
    if batch.events.is_empty() {
        return Err(LogError::EmptyAppend);
    }
    let mut seen = HashSet::with_capacity(batch.events.len());
    for event in &batch.events {
        if !seen.insert(&event.key) {
            return Err(LogError::DuplicateStream { key: event.key.clone() });
        }
    }
    Ok(())
}

#[async_trait]
impl EventLog for SqliteEventLog {
    async fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        validate(&batch)?;
        let recorded_at_nanos = row::to_unix_nanos(batch.recorded_at)?;
        let sender = self.requests.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or(LogError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(AppendRequest { batch, recorded_at_nanos, reply }).await.map_err(|_| LogError::Closed)?;
        drop(sender);
        answer.await.map_err(|_| LogError::Storage("the writer stopped without answering".to_owned()))?
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<Event>> {
        let key = key.clone();
        self.reads.run(move |connection| read::read_stream(connection, &key)).await
    }

    async fn read_version(&self, key: &StreamKey, version: u64) -> Result<Option<Event>> {
        let key = key.clone();
        self.reads.run(move |connection| read::read_version(connection, &key, version)).await
    }

    async fn read_latest(&self, key: &StreamKey) -> Result<Option<Event>> {
        let key = key.clone();
        self.reads.run(move |connection| read::read_latest(connection, &key)).await
    }

    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.reads.run(move |connection| read::read_from(connection, after, limit)).await
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<Event>> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let positions = positions.to_vec();
        self.reads.run(move |connection| read::read_positions(connection, &positions)).await
    }

    async fn head(&self) -> Result<u64> {
        Ok(*self.head.borrow())
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}
