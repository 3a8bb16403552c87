//! The SQLite search index: opening it, applying events (idempotently), and the checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use event_log::{Event, Operation};
use fhir_core::instant::unix_millis;
use fhir_core::search::{IndexEntry, IndexValue};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::watch;

use crate::schema::SCHEMA;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("search index lock poisoned")]
    Poisoned,
    #[error("stored body at position {0} is not JSON")]
    BadBody(u64),
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// The search index: one writer (the projector), a pool of readers (searches).
pub struct SearchIndex {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    checkpoint: AtomicU64,
    checkpoint_tx: watch::Sender<u64>,
}

impl SearchIndex {
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // The index can be rebuilt from the log, so it need not fsync every batch.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.execute_batch(SCHEMA)?;
        let checkpoint = writer
            .query_row("SELECT position FROM checkpoint WHERE name = 'search'", [], |row| row.get::<_, i64>(0))
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    pub fn watch_checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint_tx.subscribe()
    }

    /// Applies events in position order and advances the checkpoint, in one transaction.
    /// An event already applied changes nothing; a delete leaves no current row.
    pub fn apply(&self, events: &[Event]) -> Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        // Extraction is the expensive part; do it before taking the write lock.
        let mut prepared = Vec::with_capacity(events.len());
        for event in events {
            let entries = if event.operation == Operation::Delete {
                Vec::new()
            } else {
                let resource: serde_json::Value =
                    serde_json::from_slice(&event.body).map_err(|_| IndexError::BadBody(event.position))?;
                fhir_core::search::extract::extract(&resource)
            };
            prepared.push((event, entries));
        }
        let mut connection = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        let transaction = connection.transaction()?;
        for (event, entries) in &prepared {
            apply_one(&transaction, event, entries)?;
        }
        transaction.execute(
            "INSERT INTO checkpoint (name, position) VALUES ('search', ?1)
             ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
            [last.position as i64],
        )?;
        transaction.commit()?;
        let advanced = self.checkpoint.fetch_max(last.position, Ordering::AcqRel).max(last.position);
        self.checkpoint_tx.send_replace(advanced);
        Ok(())
    }

    /// Runs `work` on a pooled read-only connection.
    pub(crate) fn with_reader<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| IndexError::Poisoned)?.pop();
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

fn apply_one(transaction: &Transaction<'_>, event: &Event, entries: &[IndexEntry]) -> Result<()> {
    let key = &event.key;
    let version = event.version as i64;
    let already: Option<i64> = transaction
        .prepare_cached("SELECT row FROM resources WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 AND version = ?4")?
        .query_row(params![key.tenant, key.resource_type, key.id, version], |row| row.get(0))
        .optional()?;
    if already.is_some() {
        return Ok(());
    }
    transaction
        .prepare_cached(
            "UPDATE resources SET superseded_at = ?4
             WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 AND superseded_at IS NULL AND version < ?5",
        )?
        .execute(params![key.tenant, key.resource_type, key.id, event.position as i64, version])?;
    if event.operation == Operation::Delete {
        return Ok(());
    }
    transaction
        .prepare_cached(
            "INSERT INTO resources (tenant, resource_type, id, version, position, last_updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![key.tenant, key.resource_type, key.id, version, event.position as i64, unix_millis(event.recorded_at)])?;
    let row = transaction.last_insert_rowid();
    for entry in entries {
        insert_entry(transaction, row, entry)?;
    }
    Ok(())
}

fn insert_entry(transaction: &Transaction<'_>, row: i64, entry: &IndexEntry) -> Result<()> {
    let (param, grp) = (entry.param.as_str(), entry.group as i64);
    match &entry.value {
        IndexValue::String { normalized, exact } => transaction
            .prepare_cached("INSERT INTO ix_string (row, param, grp, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![row, param, grp, normalized, exact])?,
        IndexValue::Token { system, code } => transaction
            .prepare_cached("INSERT INTO ix_token (row, param, grp, system, code) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![row, param, grp, system, code])?,
        IndexValue::Text { normalized } => transaction
            .prepare_cached("INSERT INTO ix_text (row, param, grp, norm) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![row, param, grp, normalized])?,
        IndexValue::OfType { system, code, value } => transaction
            .prepare_cached("INSERT INTO ix_of_type (row, param, grp, system, code, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![row, param, grp, system, code, value])?,
        IndexValue::Date { low, high } => transaction
            .prepare_cached("INSERT INTO ix_date (row, param, grp, low, high) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![row, param, grp, low, high])?,
        IndexValue::Number { value, low, high } => transaction
            .prepare_cached("INSERT INTO ix_number (row, param, grp, value, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![row, param, grp, value, low, high])?,
        IndexValue::Quantity { value, low, high, system, code, .. } => transaction
            .prepare_cached(
                "INSERT INTO ix_quantity (row, param, grp, value, low, high, system, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![row, param, grp, value, low, high, system, code])?,
        IndexValue::Reference { resource_type, id, version, url } => transaction
            .prepare_cached(
                "INSERT INTO ix_reference (row, param, grp, target_type, target_id, version, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![row, param, grp, resource_type, id, version, url])?,
        IndexValue::Uri(uri) => transaction
            .prepare_cached("INSERT INTO ix_uri (row, param, grp, uri) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![row, param, grp, uri])?,
    };
    Ok(())
}

impl event_log::tail::Projection for SearchIndex {
    fn name(&self) -> &'static str {
        "search"
    }

    fn checkpoint(&self) -> u64 {
        SearchIndex::checkpoint(self)
    }

    fn apply(&self, events: &[Event]) -> std::result::Result<(), String> {
        SearchIndex::apply(self, events).map_err(|error| error.to_string())
    }
}
