//! The notifier's SQLite file (`notifier.db`): the subscriptions as the log last said, the
//! delivery queue, and the checkpoint. As a projection of the log it applies each batch in one
//! transaction: a Subscription version updates the subscriptions (in effect from the next event
//! on); any other created or updated resource is matched against the tenant's live
//! subscriptions of its type and queued once per match. Deliveries survive a restart; one that
//! was being sent when the process stopped is sent again (at least once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use event_log::{Event, Operation};
use fhir_core::search::matcher::Candidate;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::Notify;

use crate::subscription::{parse, Subscription};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    -- Notifications queued since the subscription started (numbers its events).
    events INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    subscription TEXT NOT NULL,
    position INTEGER NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    event_ms INTEGER NOT NULL,
    event_number INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL DEFAULT 0,
    delivered_ms INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (tenant, subscription, state, seq);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state, next_ms) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS checkpoint (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
#[error("notifier store: {0}")]
pub struct StoreError(String);

fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One queued notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub tenant: String,
    pub subscription: String,
    pub position: u64,
    pub resource_type: String,
    pub resource_id: String,
    /// When the event was committed (Unix ms): latency is measured from here.
    pub event_ms: i64,
    /// The how-manieth notification of its subscription this is (from 1).
    pub event_number: u64,
    pub attempts: u32,
}

/// What an operator sees of one subscription's queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Commit-to-delivery latency of the last 1000 deliveries, in ms: p50 and p99.
    pub latency_p50_ms: Option<i64>,
    pub latency_p99_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The undelivered notifications kept after the retries ran out: `Type/id` and the error.
    pub failed_notifications: Vec<(String, String)>,
}

type Key = (String, String);

pub struct NotifierStore {
    connection: Mutex<Connection>,
    checkpoint: AtomicU64,
    /// The subscriptions by (tenant, id), parsed.
    subscriptions: Mutex<HashMap<Key, Subscription>>,
    /// Woken whenever deliveries are queued.
    pub wake: Arc<Notify>,
}

fn now_ms() -> i64 {
    fhir_core::instant::unix_millis(fhir_core::instant::now())
}

impl NotifierStore {
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(storage)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(storage)?;
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(storage)?;
        connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(storage)?;
        connection.execute_batch(SCHEMA).map_err(storage)?;
        let checkpoint: i64 = connection.query_row("SELECT position FROM checkpoint WHERE name = 'notifier'", [], |row| row.get(0)).optional().map_err(storage)?.unwrap_or(0);
        let mut subscriptions = HashMap::new();
        {
            let mut statement = connection.prepare("SELECT tenant, id, body FROM subscriptions").map_err(storage)?;
            let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))).map_err(storage)?;
            for row in rows {
                let (tenant, id, body) = row.map_err(storage)?;
                if let Some(subscription) = serde_json::from_str::<Value>(&body).ok().and_then(|value| parse(&value).ok()) {
                    subscriptions.insert((tenant, id), subscription);
                }
            }
        }
        Ok(NotifierStore { connection: Mutex::new(connection), checkpoint: AtomicU64::new(checkpoint as u64), subscriptions: Mutex::new(subscriptions), wake: Arc::new(Notify::new()) })
    }

    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut connection = self.connection.lock().map_err(|_| StoreError("lock poisoned".into()))?;
        work(&mut connection)
    }

    /// The subscription as the log last said.
    pub fn subscription(&self, tenant: &str, id: &str) -> Option<Subscription> {
        self.subscriptions.lock().ok()?.get(&(tenant.to_string(), id.to_string())).cloned()
    }

    /// The active subscriptions past their end, to turn off.
    pub fn ended(&self, now: time::OffsetDateTime) -> Vec<Key> {
        let Ok(subscriptions) = self.subscriptions.lock() else { return Vec::new() };
        subscriptions.iter().filter(|(_, subscription)| subscription.status == "active" && subscription.end.is_some_and(|end| end <= now)).map(|(key, _)| key.clone()).collect()
    }

    /// Applies events: subscriptions change, matching resources are queued.
    pub fn apply_events(&self, events: &[Event]) -> Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut queued = 0;
        let mut subscriptions = self.subscriptions.lock().map_err(|_| StoreError("lock poisoned".into()))?;
        self.with(|connection| {
            let transaction = connection.transaction().map_err(storage)?;
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO deliveries (tenant, subscription, position, resource_type, resource_id, event_ms, event_number, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
                    )
                    .map_err(storage)?;
                let mut count = transaction.prepare_cached("UPDATE subscriptions SET events = events + 1 WHERE tenant = ?1 AND id = ?2 RETURNING events").map_err(storage)?;
                let now = fhir_core::instant::now();
                for event in events {
                    let key = &event.key;
                    if key.resource_type == "Subscription" {
                        let parsed = (event.operation != Operation::Delete).then(|| serde_json::from_slice::<Value>(&event.body).ok().and_then(|value| parse(&value).ok())).flatten();
                        let id = (key.tenant.clone(), key.id.clone());
                        match parsed {
                            Some(subscription) => {
                                transaction
                                    .execute(
                                        "INSERT INTO subscriptions (tenant, id, version, body) VALUES (?1, ?2, ?3, ?4)
                                         ON CONFLICT (tenant, id) DO UPDATE SET version = excluded.version, body = excluded.body WHERE excluded.version > subscriptions.version",
                                        params![key.tenant, key.id, event.version as i64, String::from_utf8_lossy(&event.body)],
                                    )
                                    .map_err(storage)?;
                                subscriptions.insert(id, subscription);
                            }
                            None => {
                                transaction.execute("DELETE FROM subscriptions WHERE tenant = ?1 AND id = ?2", params![key.tenant, key.id]).map_err(storage)?;
                                subscriptions.remove(&id);
                            }
                        }
                        continue;
                    }
                    // The specification notifies creates and updates, not deletes.
                    if event.operation == Operation::Delete {
                        continue;
                    }
                    let interested: Vec<&Subscription> = subscriptions
                        .iter()
                        .filter(|((tenant, _), subscription)| *tenant == key.tenant && subscription.resource_type == key.resource_type && subscription.is_live(now))
                        .map(|(_, subscription)| subscription)
                        .collect();
                    if interested.is_empty() {
                        continue;
                    }
                    let Ok(resource) = serde_json::from_slice::<Value>(&event.body) else { continue };
                    let candidate = Candidate::new(&resource);
                    for subscription in interested {
                        if candidate.matches(&subscription.criteria) == Ok(true) {
                            let event_ms = fhir_core::instant::unix_millis(event.recorded_at);
                            let number: i64 = count.query_row(params![key.tenant, subscription.id], |row| row.get(0)).map_err(storage)?;
                            insert
                                .execute(params![key.tenant, subscription.id, event.position as i64, key.resource_type, key.id, event_ms, number])
                                .map_err(storage)?;
                            queued += 1;
                        }
                    }
                }
            }
            transaction
                .execute(
                    "INSERT INTO checkpoint (name, position) VALUES ('notifier', ?1) ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
                    [last.position as i64],
                )
                .map_err(storage)?;
            transaction.commit().map_err(storage)
        })?;
        drop(subscriptions);
        self.checkpoint.fetch_max(last.position, Ordering::AcqRel);
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The first pending delivery of every live subscription's queue that is due, except the
    /// queues in `busy` (one notification in flight per subscription keeps them in order).
    pub fn due(&self, now_ms: i64, busy: &[Key], limit: usize) -> Result<Vec<Delivery>> {
        let live: Vec<Key> = {
            let now = fhir_core::instant::now();
            let subscriptions = self.subscriptions.lock().map_err(|_| StoreError("lock poisoned".into()))?;
            subscriptions.iter().filter(|(key, subscription)| subscription.is_live(now) && !busy.contains(key)).map(|(key, _)| key.clone()).collect()
        };
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT seq, position, resource_type, resource_id, event_ms, attempts, next_ms, event_number FROM deliveries
                     WHERE tenant = ?1 AND subscription = ?2 AND state = 'pending' ORDER BY seq LIMIT 1",
                )
                .map_err(storage)?;
            let mut due = Vec::new();
            for (tenant, subscription) in live {
                let head = statement
                    .query_row(params![tenant, subscription], |row| {
                        let delivery = Delivery {
                            seq: row.get(0)?,
                            tenant: tenant.clone(),
                            subscription: subscription.clone(),
                            position: row.get::<_, i64>(1)? as u64,
                            resource_type: row.get(2)?,
                            resource_id: row.get(3)?,
                            event_ms: row.get(4)?,
                            event_number: row.get::<_, i64>(7)? as u64,
                            attempts: row.get::<_, i64>(5)? as u32,
                        };
                        Ok((delivery, row.get::<_, i64>(6)?))
                    })
                    .optional()
                    .map_err(storage)?;
                if let Some((delivery, _)) = head.filter(|(_, next_ms)| *next_ms <= now_ms) {
                    due.push(delivery);
                }
                if due.len() >= limit {
                    break;
                }
            }
            Ok(due)
        })
    }

    /// When the next pending delivery of a live subscription becomes due (Unix ms), if any.
    pub fn next_due_ms(&self) -> Result<Option<i64>> {
        self.with(|connection| {
            connection.query_row("SELECT min(next_ms) FROM deliveries WHERE state = 'pending'", [], |row| row.get::<_, Option<i64>>(0)).map_err(storage)
        })
    }

    pub fn delivered(&self, seq: i64) -> Result<()> {
        self.with(|connection| {
            connection.execute("UPDATE deliveries SET state = 'delivered', delivered_ms = ?2, error = NULL WHERE seq = ?1", params![seq, now_ms()]).map_err(storage)?;
            Ok(())
        })
    }

    /// A failed attempt, tried again at `next_ms`.
    pub fn retry_later(&self, seq: i64, attempts: u32, next_ms: i64, error: &str) -> Result<()> {
        self.with(|connection| {
            connection.execute("UPDATE deliveries SET attempts = ?2, next_ms = ?3, error = ?4 WHERE seq = ?1", params![seq, attempts, next_ms, error]).map_err(storage)?;
            Ok(())
        })
    }

    /// The retries ran out: every pending notification of the subscription is kept as failed.
    pub fn give_up(&self, tenant: &str, subscription: &str, error: &str) -> Result<()> {
        self.with(|connection| {
            connection
                .execute("UPDATE deliveries SET state = 'failed', error = ?3 WHERE tenant = ?1 AND subscription = ?2 AND state = 'pending'", params![tenant, subscription, error])
                .map_err(storage)?;
            Ok(())
        })
    }

    /// Queues the failed notifications of a subscription again; how many.
    pub fn resend(&self, tenant: &str, subscription: &str) -> Result<usize> {
        let resent = self.with(|connection| {
            connection
                .execute("UPDATE deliveries SET state = 'pending', attempts = 0, next_ms = 0 WHERE tenant = ?1 AND subscription = ?2 AND state = 'failed'", params![tenant, subscription])
                .map_err(storage)
        })?;
        self.wake.notify_one();
        Ok(resent)
    }

    /// Forgets delivered notifications older than `before_ms`, keeping the queue small.
    pub fn prune(&self, before_ms: i64) -> Result<()> {
        self.with(|connection| {
            connection.execute("DELETE FROM deliveries WHERE state = 'delivered' AND delivered_ms < ?1", [before_ms]).map_err(storage)?;
            Ok(())
        })
    }

    pub fn stats(&self, tenant: &str, subscription: &str) -> Result<QueueStats> {
        self.with(|connection| {
            let mut stats = QueueStats::default();
            let mut counts = connection.prepare_cached("SELECT state, count(*) FROM deliveries WHERE tenant = ?1 AND subscription = ?2 GROUP BY state").map_err(storage)?;
            let rows = counts.query_map(params![tenant, subscription], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))).map_err(storage)?;
            for row in rows {
                let (state, count) = row.map_err(storage)?;
                match state.as_str() {
                    "pending" => stats.pending = count as u64,
                    "delivered" => stats.delivered = count as u64,
                    _ => stats.failed = count as u64,
                }
            }
            let mut latencies = connection
                .prepare_cached("SELECT delivered_ms - event_ms FROM deliveries WHERE tenant = ?1 AND subscription = ?2 AND state = 'delivered' ORDER BY seq DESC LIMIT 1000")
                .map_err(storage)?;
            let mut values: Vec<i64> = latencies.query_map(params![tenant, subscription], |row| row.get(0)).map_err(storage)?.collect::<rusqlite::Result<_>>().map_err(storage)?;
            values.sort_unstable();
            let at = |quantile: f64| values.get(((values.len() as f64 - 1.0) * quantile).round() as usize).copied();
            stats.latency_p50_ms = at(0.5);
            stats.latency_p99_ms = at(0.99);
            stats.last_error = connection
                .query_row("SELECT error FROM deliveries WHERE tenant = ?1 AND subscription = ?2 AND error IS NOT NULL ORDER BY seq DESC LIMIT 1", params![tenant, subscription], |row| row.get(0))
                .optional()
                .map_err(storage)?;
            let mut failed = connection
                .prepare_cached("SELECT resource_type || '/' || resource_id, coalesce(error, '') FROM deliveries WHERE tenant = ?1 AND subscription = ?2 AND state = 'failed' ORDER BY seq LIMIT 100")
                .map_err(storage)?;
            stats.failed_notifications = failed.query_map(params![tenant, subscription], |row| Ok((row.get(0)?, row.get(1)?))).map_err(storage)?.collect::<rusqlite::Result<_>>().map_err(storage)?;
            Ok(stats)
        })
    }
}

impl event_log::tail::Projection for NotifierStore {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    fn apply(&self, events: &[Event]) -> std::result::Result<(), String> {
        self.apply_events(events).map_err(|error| error.to_string())
    }
}
