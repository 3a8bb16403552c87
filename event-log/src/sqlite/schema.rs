//! The SQLite file layout and how connections to it are opened.
//!
//! One table, `events`. Its `position` is the INTEGER PRIMARY KEY (the rowid), so paging through
//! the log in position order is a walk of the table's own B-tree. `UNIQUE(tenant, resource_type,
//! id, version)` is the last line of defence against a version being written twice, and its index
//! is also the one that reads a stream (`ORDER BY version`) and finds a stream's head
//! (`ORDER BY version DESC LIMIT 1`). `recorded_at` is Unix time in nanoseconds, UTC.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::{LogError, Result};

/// `PRAGMA user_version` of the layout below.
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for a lock before reporting busy (only WAL recovery and
/// checkpoints take locks that readers or the writer can meet).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (negative is SQLite's spelling for KiB).
const WRITER_CACHE_KIB: i64 = -32 * 1024;

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS events (
    position         INTEGER PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    resource_type    TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    operation        TEXT    NOT NULL,
    recorded_at      INTEGER NOT NULL,
    transaction_id   TEXT    NOT NULL,
    actor            TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    hash             BLOB    NOT NULL,
    prev_hash        BLOB    NOT NULL,
    envelope_version INTEGER NOT NULL,
    UNIQUE (tenant, resource_type, id, version)
);
";

/// The columns every read selects, in the order [`super::row::event_from_row`] expects.
pub(crate) const EVENT_COLUMNS: &str = "position, tenant, resource_type, id, version, operation, recorded_at, \
     transaction_id, actor, body, hash, prev_hash, envelope_version";

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acknowledged append survives a power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: an acknowledged append survives a process crash, but the last
    /// commits may be lost on a power loss or OS crash.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Settings every connection gets.
fn configure(connection: &Connection) -> Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // The bundled SQLite is built with STAT4, which makes a cached statement re-plan itself
    // whenever a parameter compared with an indexed column gets a new value: every stream-head
    // lookup was being compiled again (a fifth of the writer's time). The plans here never
    // depend on the values, so pin them.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Opens (creating if needed) the write connection: WAL mode, the given durability, the schema.
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    configure(&connection)?;
    let journal_mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Storage(format!("the event log needs WAL mode, the file is in {journal_mode} mode")));
    }
    connection.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    // The writer walks the stream index for every event; keep more of it than the 2 MiB default.
    connection.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;

    let schema_version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match schema_version {
        0 => {
            connection.execute_batch(&format!(
                "BEGIN IMMEDIATE; {CREATE_TABLES} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(LogError::Storage(format!(
                "the event log file has schema version {other}, this build knows {SCHEMA_VERSION}"
            )))
        }
    }
    Ok(connection)
}

/// Opens a read-only connection; WAL lets it read while the writer commits.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    configure(&connection)?;
    Ok(connection)
}

/// The last committed position, 0 for an empty log.
pub(crate) fn max_position(connection: &Connection) -> Result<i64> {
    let mut statement = connection.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?;
    Ok(statement.query_row([], |row| row.get(0))?)
}
