//! Reads: a small pool of read-only connections, used on tokio's blocking threads.
//!
//! WAL lets every reader see the last committed state while the writer commits the next group. A
//! semaphore bounds how many reads run at once (and so how many connections exist); a connection
//! keeps its prepared statements between reads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::row::{event_from_row, to_i64};
use super::schema::{open_reader, EVENT_COLUMNS};
use crate::model::{Event, StreamKey};
use crate::{LogError, Result};

pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// Opens one connection up front, so a file that cannot be read fails at open.
    pub fn open(path: PathBuf, connections: usize) -> Result<Arc<Self>> {
        let first = open_reader(&path)?;
        Ok(Arc::new(Self {
            path,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(connections.max(1))),
        }))
    }

    /// Refuses new reads (they get [`LogError::Closed`]) and drops the idle connections.
    pub fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Runs `read` on a pooled connection on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| LogError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let connection = pool.take()?;
            let outcome = read(&connection);
            pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(connection);
            outcome
        })
        .await
        .map_err(|error| LogError::Storage(format!("read task failed: {error}")))?
    }

    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(connection) => Ok(connection),
            None => open_reader(&self.path),
        }
    }
}

fn collect(statement: &mut rusqlite::CachedStatement<'_>, params: impl rusqlite::Params) -> Result<Vec<Event>> {
    let mut rows = statement.query(params)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(event_from_row(row)?);
    }
    Ok(events)
}

pub(crate) fn read_stream(connection: &Connection, key: &StreamKey) -> Result<Vec<Event>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 ORDER BY version"
    ))?;
    collect(&mut statement, (&key.tenant, &key.resource_type, &key.id))
}

pub(crate) fn read_version(connection: &Connection, key: &StreamKey, version: u64) -> Result<Option<Event>> {
    // No stored version is beyond i64::MAX, so such a request simply finds nothing.
    let Ok(version) = i64::try_from(version) else { return Ok(None) };
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 AND version = ?4"
    ))?;
    Ok(collect(&mut statement, (&key.tenant, &key.resource_type, &key.id, version))?.pop())
}

pub(crate) fn read_latest(connection: &Connection, key: &StreamKey) -> Result<Option<Event>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 \
         ORDER BY version DESC LIMIT 1"
    ))?;
    Ok(collect(&mut statement, (&key.tenant, &key.resource_type, &key.id))?.pop())
}

pub(crate) fn read_from(connection: &Connection, after: u64, limit: usize) -> Result<Vec<Event>> {
    let Ok(after) = i64::try_from(after) else { return Ok(Vec::new()) };
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
    ))?;
    let mut events = collect(&mut statement, (after, i64::try_from(limit).unwrap_or(i64::MAX)))?;
    if events.len() < limit {
        return Ok(events);
    }
    // Finish the last append: its events are consecutive, so read on while they share its
    // transaction id.
    loop {
        let Some(last) = events.last() else { return Ok(events) };
        let (last_position, transaction) = (to_i64(last.position, "position")?, last.transaction_id.clone());
        let more = collect(&mut statement, (last_position, TRANSACTION_TAIL_CHUNK))?;
        let full = more.len() as i64 == TRANSACTION_TAIL_CHUNK;
        let before = events.len();
        events.extend(more.into_iter().take_while(|event| event.transaction_id == transaction));
        if !full || events.len() - before < TRANSACTION_TAIL_CHUNK as usize {
            return Ok(events);
        }
    }
}

/// How many events `read_from` reads at a time to finish a transaction past its limit.
const TRANSACTION_TAIL_CHUNK: i64 = 256;

pub(crate) fn read_positions(connection: &Connection, positions: &[u64]) -> Result<Vec<Event>> {
    // One read transaction for all of them: one snapshot and one lock, not one per position.
    let transaction = connection.unchecked_transaction()?;
    let mut statement =
        transaction.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE position = ?1"))?;
    let mut events = Vec::with_capacity(positions.len());
    for &position in positions {
        let Ok(position) = to_i64(position, "position") else { continue };
        events.extend(collect(&mut statement, [position])?);
    }
    drop(statement);
    transaction.finish()?;
    Ok(events)
}
