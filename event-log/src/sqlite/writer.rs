//! The one writer thread, which owns the write connection and commits appends in groups.
//!
//! The thread takes the first waiting request, drains every other request already queued (up to
//! the group limits) and runs them all in one transaction, so one fsync covers the whole group.
//! Requests are applied in arrival order: each is checked against the database as the earlier
//! requests of the group left it, so a conflict between two requests of one group is found as if
//! they had committed one after the other. A request that fails its check writes nothing and gets
//! its error; the others go on. After COMMIT the writer publishes the new head and only then
//! answers, so [`crate::EventLog::head`] never lags behind an acknowledged append.
//!
//! Positions and hashes are computed here: the writer is the only one that knows the true last
//! position and each stream's last hash. It keeps no cache of its own; it asks the database,
//! whose pages for recent streams are in SQLite's page cache anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::row::{to_hash, to_u64};
use super::schema::max_position;
use crate::hash::{event_hash, Envelope, ZERO_HASH};
use crate::model::{AppendBatch, Appended, ExpectedVersion, StreamKey, ENVELOPE_VERSION};
use crate::{LogError, Result};

/// One append waiting for the writer.
pub(crate) struct AppendRequest {
    /// Validated: not empty, no stream twice.
    pub batch: AppendBatch,
    /// `batch.recorded_at` in its stored form.
    pub recorded_at_nanos: i64,
    pub reply: oneshot::Sender<Result<Vec<Appended>>>,
}

/// How much one group may hold. A single request larger than the limits still forms a group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupLimits {
    pub max_requests: usize,
    pub max_events: usize,
}

/// What the writer has done, for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub groups_committed: AtomicU64,
    pub appends_committed: AtomicU64,
    pub events_committed: AtomicU64,
    pub conflicts: AtomicU64,
    pub groups_failed: AtomicU64,
}

pub(crate) struct Writer {
    pub connection: Connection,
    pub requests: mpsc::Receiver<AppendRequest>,
    pub head: watch::Sender<u64>,
    pub counters: Arc<Counters>,
    pub limits: GroupLimits,
}

impl Writer {
    /// Serves requests until every sender is gone and the queue is empty, so every request that
    /// was accepted gets an answer.
    pub fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let group = self.collect_group(first);
            self.commit_group(group);
        }
        tracing::debug!("event log writer stopped");
    }

    fn collect_group(&mut self, first: AppendRequest) -> Vec<AppendRequest> {
        let mut events = first.batch.events.len();
        let mut group = vec![first];
        while group.len() < self.limits.max_requests && events < self.limits.max_events {
            let Ok(request) = self.requests.try_recv() else { break };
            events += request.batch.events.len();
            group.push(request);
        }
        group
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let outcomes = match write_group(&mut self.connection, &group) {
            Ok(written) => {
                self.count(&written);
                if let Some(head) = written.head {
                    self.head.send_replace(head);
                }
                written.outcomes
            }
            Err(error) => {
                self.counters.groups_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(requests = group.len(), %error, "event log group commit failed");
                group.iter().map(|_| Err(LogError::Storage(format!("commit failed: {error}")))).collect()
            }
        };
        for (request, outcome) in group.into_iter().zip(outcomes) {
            // The caller may have given up waiting; its events are committed all the same.
            let _ = request.reply.send(outcome);
        }
    }

    fn count(&self, written: &WrittenGroup) {
        let counters = &self.counters;
        counters.groups_committed.fetch_add(1, Ordering::Relaxed);
        for outcome in &written.outcomes {
            match outcome {
                Ok(appended) => {
                    counters.appends_committed.fetch_add(1, Ordering::Relaxed);
                    counters.events_committed.fetch_add(appended.len() as u64, Ordering::Relaxed);
                }
                Err(LogError::Conflict { .. }) => {
                    counters.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
    }
}

struct WrittenGroup {
    /// One per request, in group order.
    outcomes: Vec<Result<Vec<Appended>>>,
    /// The new last position, if the group wrote anything.
    head: Option<u64>,
}

fn write_group(connection: &mut Connection, group: &[AppendRequest]) -> Result<WrittenGroup> {
    let mut transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let first_position = max_position(&transaction)? + 1;
    let mut next_position = first_position;
    let mut outcomes = Vec::with_capacity(group.len());
    for request in group {
        let outcome = append_one(&mut transaction, request, &mut next_position);
        // Some errors (disk full, I/O) make SQLite roll back the whole transaction; going on
        // would run the later requests outside any transaction.
        if transaction.is_autocommit() {
            let reason = match outcome {
                Err(error) => error.to_string(),
                Ok(_) => "unknown reason".to_owned(),
            };
            return Err(LogError::Storage(format!("the transaction was rolled back: {reason}")));
        }
        outcomes.push(outcome);
    }
    transaction.commit()?;
    let head = (next_position > first_position).then(|| to_u64(next_position - 1, "position")).transpose()?;
    Ok(WrittenGroup { outcomes, head })
}

/// Checks every expected version of one request, then inserts its events. Writes nothing if a
/// check or an insert fails.
fn append_one(
    transaction: &mut Transaction<'_>,
    request: &AppendRequest,
    next_position: &mut i64,
) -> Result<Vec<Appended>> {
    let links = request
        .batch
        .events
        .iter()
        .map(|event| check_expected(&event.key, event.expected, stream_head(transaction, &event.key)?))
        .collect::<Result<Vec<_>>>()?;

    if request.batch.events.len() == 1 {
        // A single INSERT is atomic on its own.
        return insert_events(transaction, request, &links, next_position);
    }
    let savepoint = transaction.savepoint()?;
    let mut position = *next_position;
    let appended = insert_events(&savepoint, request, &links, &mut position)?;
    savepoint.commit()?;
    *next_position = position;
    Ok(appended)
}

/// Where a new event attaches to its stream: its version and the previous version's hash.
struct Link {
    version: i64,
    prev_hash: [u8; 32],
}

fn stream_head(connection: &Connection, key: &StreamKey) -> Result<Option<(i64, [u8; 32])>> {
    let mut statement = connection.prepare_cached(
        "SELECT version, hash FROM events WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 \
         ORDER BY version DESC LIMIT 1",
    )?;
    let mut rows = statement.query((&key.tenant, &key.resource_type, &key.id))?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let hash = to_hash(row.get_ref(1)?.as_blob().map_err(|error| LogError::Storage(error.to_string()))?, "hash")?;
    Ok(Some((row.get(0)?, hash)))
}

fn check_expected(key: &StreamKey, expected: ExpectedVersion, head: Option<(i64, [u8; 32])>) -> Result<Link> {
    match (expected, head) {
        (ExpectedVersion::NoStream, None) => Ok(Link { version: 1, prev_hash: ZERO_HASH }),
        (ExpectedVersion::Exactly(wanted), Some((current, hash))) if i64::try_from(wanted) == Ok(current) => {
            let version = current
                .checked_add(1)
                .ok_or_else(|| LogError::Storage(format!("stream {key:?} has no version after {current}")))?;
            Ok(Link { version, prev_hash: hash })
        }
        (expected, head) => Err(LogError::Conflict {
            key: key.clone(),
            expected: match expected {
                ExpectedVersion::NoStream => "no stream".to_owned(),
                ExpectedVersion::Exactly(version) => format!("version {version}"),
            },
            actual: match head {
                None => "no stream".to_owned(),
                Some((version, _)) => format!("version {version}"),
            },
        }),
    }
}

fn insert_events(
    connection: &Connection,
    request: &AppendRequest,
    links: &[Link],
    next_position: &mut i64,
) -> Result<Vec<Appended>> {
    let batch = &request.batch;
    let mut statement = connection.prepare_cached(
        "INSERT INTO events (position, tenant, resource_type, id, version, operation, recorded_at, \
         transaction_id, actor, body, hash, prev_hash, envelope_version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut appended = Vec::with_capacity(batch.events.len());
    let mut position = *next_position;
    for (event, link) in batch.events.iter().zip(links) {
        let version = to_u64(link.version, "version")?;
        let hash = event_hash(&link.prev_hash, &Envelope::of_new(event, version, batch), &event.body);
        statement.execute(rusqlite::params![
            position,
            event.key.tenant,
            event.key.resource_type,
            event.key.id,
            link.version,
            event.operation.as_str(),
            request.recorded_at_nanos,
            batch.transaction_id,
            batch.actor,
            &event.body[..],
            &hash[..],
            &link.prev_hash[..],
            i64::from(ENVELOPE_VERSION),
        ])?;
        appended.push(Appended { position: to_u64(position, "position")?, key: event.key.clone(), version });
        position += 1;
    }
    *next_position = position;
    Ok(appended)
}
