//! The SQLite read model of the history projection.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use event_log::{Event, Operation, StreamKey};
use fhir_core::history::{HistoryPage, HistoryQuery, HistoryScope};
use fhir_core::instant::unix_millis;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("history store lock poisoned")]
    Poisoned,
}

type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    tenant TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    operation TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    superseded_at INTEGER,
    PRIMARY KEY (tenant, resource_type, id, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS versions_by_tenant ON versions (tenant, position);
CREATE INDEX IF NOT EXISTS versions_by_type ON versions (tenant, resource_type, position);
CREATE TABLE IF NOT EXISTS current (
    tenant TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (tenant, resource_type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
";

/// The current state of one resource, as the projection last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentState {
    pub version: u64,
    pub position: u64,
    pub deleted: bool,
}

/// The history read model. One writer (the projector), any number of readers.
pub struct HistoryStore {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    checkpoint: AtomicU64,
    checkpoint_tx: watch::Sender<u64>,
}

impl HistoryStore {
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // The projection can always be rebuilt from the log, so it need not fsync every batch.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.execute_batch(SCHEMA)?;
        let checkpoint = writer
            .query_row("SELECT position FROM checkpoint WHERE name = 'history'", [], |row| row.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0) as u64;
        let (checkpoint_tx, _) = watch::channel(checkpoint);
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            checkpoint: AtomicU64::new(checkpoint),
            checkpoint_tx,
        })
    }

    /// The position of the last event applied.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    pub fn watch_checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint_tx.subscribe()
    }

    /// Applies events (in position order) and advances the checkpoint, in one transaction.
    /// Events at or below the checkpoint are applied again harmlessly.
    pub fn apply(&self, events: &[Event]) -> Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut connection = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let transaction = connection.transaction()?;
        {
            let mut insert_version = transaction.prepare_cached(
                "INSERT OR IGNORE INTO versions (tenant, resource_type, id, version, position, operation, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut supersede = transaction.prepare_cached(
                "UPDATE versions SET superseded_at = ?5
                 WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 AND version = ?4 AND superseded_at IS NULL",
            )?;
            let mut upsert_current = transaction.prepare_cached(
                "INSERT INTO current (tenant, resource_type, id, version, position, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, resource_type, id) DO UPDATE
                 SET version = excluded.version, position = excluded.position, deleted = excluded.deleted
                 WHERE excluded.version > current.version",
            )?;
            for event in events {
                let key = &event.key;
                let recorded_at = unix_millis(event.recorded_at);
                insert_version.execute(params![
                    key.tenant,
                    key.resource_type,
                    key.id,
                    event.version as i64,
                    event.position as i64,
                    event.operation.as_str(),
                    recorded_at
                ])?;
                if event.version > 1 {
                    supersede.execute(params![key.tenant, key.resource_type, key.id, (event.version - 1) as i64, recorded_at])?;
                }
                upsert_current.execute(params![
                    key.tenant,
                    key.resource_type,
                    key.id,
                    event.version as i64,
                    event.position as i64,
                    event.operation == Operation::Delete
                ])?;
            }
            transaction.execute(
                "INSERT INTO checkpoint (name, position) VALUES ('history', ?1)
                 ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
                [last.position as i64],
            )?;
        }
        transaction.commit()?;
        let advanced = self.checkpoint.fetch_max(last.position, Ordering::AcqRel).max(last.position);
        self.checkpoint_tx.send_replace(advanced);
        Ok(())
    }

    /// The current state of one resource, if the projection has seen it.
    pub fn current(&self, key: &StreamKey) -> Result<Option<CurrentState>> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT version, position, deleted FROM current WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3",
            )?;
            Ok(statement
                .query_row(params![key.tenant, key.resource_type, key.id], |row| {
                    Ok(CurrentState {
                        version: row.get::<_, i64>(0)? as u64,
                        position: row.get::<_, i64>(1)? as u64,
                        deleted: row.get(2)?,
                    })
                })
                .optional()?)
        })
    }

    /// One page of history for a tenant, newest first.
    pub fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        let mut sql = String::from("SELECT position FROM versions WHERE tenant = ?");
        let mut args: Vec<rusqlite::types::Value> = vec![tenant.to_string().into()];
        match &query.scope {
            HistoryScope::System => {}
            HistoryScope::Type(resource_type) => {
                sql.push_str(" AND resource_type = ?");
                args.push(resource_type.clone().into());
            }
            HistoryScope::Instance(resource_type, id) => {
                sql.push_str(" AND resource_type = ? AND id = ?");
                args.push(resource_type.clone().into());
                args.push(id.clone().into());
            }
        }
        if let Some(since) = query.since {
            sql.push_str(" AND recorded_at >= ?");
            args.push(unix_millis(since).into());
        }
        if let Some((start, end)) = query.at {
            sql.push_str(" AND recorded_at < ? AND (superseded_at IS NULL OR superseded_at > ?)");
            args.push(unix_millis(end).into());
            args.push(unix_millis(start).into());
        }
        if let Some(before) = query.before {
            sql.push_str(" AND position < ?");
            args.push((before as i64).into());
        }
        sql.push_str(" ORDER BY position DESC LIMIT ?");
        // One row more than the page tells whether a next page exists.
        args.push((query.count as i64 + 1).into());
        let positions: Vec<u64> = self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(args.iter()), |row| row.get::<_, i64>(0))?;
            Ok(rows.map(|row| row.map(|p| p as u64)).collect::<rusqlite::Result<Vec<u64>>>()?)
        })?;
        Ok(HistoryPage::from_newest(positions, query.count))
    }

    /// A snapshot of one type as of log position `as_of`, a page at a time: the positions
    /// (ascending, after `after`, at most `limit`) of the versions current at `as_of` that are
    /// not deletes and were recorded at or after `since_ms`. A version is current at `as_of`
    /// when the next version of its resource comes after `as_of`, or not at all.
    pub fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT v.position FROM versions v INDEXED BY versions_by_type
                 WHERE v.tenant = ?1 AND v.resource_type = ?2 AND v.position > ?3 AND v.position <= ?4
                   AND v.operation != 'delete' AND (?5 IS NULL OR v.recorded_at >= ?5)
                   AND NOT EXISTS (SELECT 1 FROM versions n WHERE n.tenant = v.tenant AND n.resource_type = v.resource_type
                                   AND n.id = v.id AND n.version = v.version + 1 AND n.position <= ?4)
                 ORDER BY v.position LIMIT ?6",
            )?;
            let rows = statement.query_map(params![tenant, resource_type, after as i64, as_of as i64, since_ms, limit as i64], |row| row.get::<_, i64>(0))?;
            Ok(rows.map(|row| row.map(|p| p as u64)).collect::<rusqlite::Result<Vec<u64>>>()?)
        })
    }

    fn with_reader<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| StoreError::Poisoned)?.pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => {
                let connection = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                connection
            }
        };
        let result = work(&connection);
        if let Ok(mut readers) = self.readers.lock() {
            if readers.len() < 16 {
                readers.push(connection);
            }
        }
        result
    }
}

impl event_log::tail::Projection for HistoryStore {
    fn name(&self) -> &'static str {
        "history"
    }

    fn checkpoint(&self) -> u64 {
        HistoryStore::checkpoint(self)
    }

    fn apply(&self, events: &[Event]) -> std::result::Result<(), String> {
        HistoryStore::apply(self, events).map_err(|error| error.to_string())
    }
}
