//! The SQLite search index: opening it, applying batches of events (idempotently), the
//! checkpoint, and building from zero.
//!
//! A new index file starts in *build* mode: the value indexes are not created yet, so replaying
//! the log only appends rows. When the projector has caught up with the log,
//! [`SearchIndex::finish_build`] creates them by sorting, gathers the query planner's statistics,
//! and only then publishes the checkpoint to [`SearchIndex::watch_checkpoint`], so whoever waits
//! for the index to be searchable (a swap after a rebuild, a read-your-writes search) waits for
//! the indexes too.
//!
//! A built index that falls far behind the log (a bulk load into a young server: more events to
//! apply than it has rows, and at least [`DEFER_INDEXES_FROM`]) goes back to build mode
//! ([`SearchIndex::behind`]): it drops the value indexes, appends, and creates them again when
//! caught up. Inserting into a B-tree row by row costs several times what sorting once does; the
//! rule that the backlog must outgrow the index bounds the re-sorting to a constant factor of
//! the index's final size. Meanwhile searches stay correct as of the last published checkpoint,
//! only slower (they scan), and the file stays durable (write-ahead log): a crash resumes the
//! deferred build rather than starting over.
//!
//! A bulk load that knows what is coming (`fhir-server import`) can also *hold* the build
//! ([`SearchIndex::hold_build`]): the value indexes are then created once at the end rather than
//! each time the projector catches up with the load. Whoever needs a current index (a
//! read-your-writes search, a conditional write) releases the hold ([`SearchIndex::release_build`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use event_log::Event;
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::watch;

use crate::extract::for_each_extracted;
use crate::schema::{SCHEMA_VERSION, TABLES, VALUE_INDEXES};
use crate::sql::Planning;
use crate::write::Writer;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("search index lock poisoned")]
    Poisoned,
    #[error("stored body at position {0} is not JSON")]
    BadBody(u64),
    #[error("an extraction thread of the search index stopped")]
    Worker,
    #[error("the search index is busy: {0}")]
    Busy(&'static str),
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("the search index file has layout version {found}, this server uses {expected}: rebuild it (`fhir-server reindex`)")]
    OldSchema { found: i64, expected: i64 },
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// Page cache of the writer: room for the upper levels of every index, and for sorting when the
/// value indexes are created.
const WRITER_CACHE_KIB: i64 = 256 * 1024;
/// Page cache of the writer while it creates the value indexes.
const SORT_CACHE_KIB: i64 = 16 * 1024;
/// Page cache of each reader; the file is also memory-mapped, up to [`MMAP_BYTES`].
const READER_CACHE_KIB: i64 = 16 * 1024;
const MMAP_BYTES: i64 = 1 << 31;
/// The smallest backlog, in events, for which a built index defers its value indexes.
pub const DEFER_INDEXES_FROM: u64 = 20_000;
/// How often, at most, a caught-up projector refreshes the planner's statistics.
const OPTIMIZE_EVERY: Duration = Duration::from_secs(600);

/// The search index: one writer (the projector), a pool of readers (searches).
pub struct SearchIndex {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Value indexes not created yet (see the module docs).
    building: AtomicBool,
    /// A bulk load holds the build: [`SearchIndex::finish_build`] leaves it for later.
    held: AtomicBool,
    checkpoint: AtomicU64,
    checkpoint_tx: watch::Sender<u64>,
    last_optimize: Mutex<Instant>,
    /// See [`SearchIndex::set_planning`].
    filters_only: AtomicBool,
}

fn table_exists(connection: &Connection, name: &str) -> Result<bool> {
    Ok(connection
        .query_row("SELECT 1 FROM sqlite_schema WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

impl SearchIndex {
    /// Opens the index file at `path`, creating it (in build mode) if it does not exist. A file
    /// of another layout version is refused with [`IndexError::OldSchema`]; one whose build from
    /// zero was interrupted is started over.
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path)?;
        writer.busy_timeout(Duration::from_secs(5))?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        writer.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        writer.pragma_update(None, "threads", threads as i64)?;
        let fresh = !table_exists(&writer, "resources")?;
        let found: i64 = writer.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if !fresh && found != SCHEMA_VERSION {
            return Err(IndexError::OldSchema { found, expected: SCHEMA_VERSION });
        }
        let indexed = !fresh && table_exists(&writer, VALUE_INDEXES[VALUE_INDEXES.len() - 1].0)?;
        let journal: String = writer.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if !fresh && !indexed && !journal.eq_ignore_ascii_case("wal") {
            // Built from zero without a durable journal: the file may be torn. Replaying from
            // zero redoes it. (A deferred build of a built index is in WAL mode and resumes.)
            tracing::warn!("the search index was being built from zero when the process stopped; starting over");
            drop(writer);
            remove_files(path)?;
            return Self::open(path);
        }
        let building = !indexed;
        if fresh {
            // Until built, a crash loses nothing that a replay from zero does not redo: no
            // journal on disk, no fsync (the file switches to WAL when built).
            writer.pragma_update(None, "journal_mode", "MEMORY")?;
            writer.pragma_update(None, "synchronous", "OFF")?;
        } else {
            writer.pragma_update(None, "journal_mode", "WAL")?;
            // The index can be rebuilt from the log, so it need not fsync every batch.
            writer.pragma_update(None, "synchronous", "NORMAL")?;
        }
        writer.execute_batch(TABLES)?;
        writer.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        if !building {
            writer.execute_batch("PRAGMA optimize = 0x10002")?;
        }
        let checkpoint = writer
            .query_row("SELECT position FROM checkpoint WHERE name = 'search'", [], |row| row.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0) as u64;
        let (checkpoint_tx, _) = watch::channel(if building { 0 } else { checkpoint });
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            building: AtomicBool::new(building),
            held: AtomicBool::new(false),
            checkpoint: AtomicU64::new(checkpoint),
            checkpoint_tx,
            last_optimize: Mutex::new(Instant::now()),
            filters_only: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position of the last event applied (searches run as of it).
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// The checkpoint once searchable: while building from zero it stays at 0 until
    /// [`Self::finish_build`].
    pub fn watch_checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint_tx.subscribe()
    }

    /// How searches are planned (see [`crate::sql::plan`]); the conformance corpus also runs
    /// with [`Planning::FiltersOnly`] to check every criterion's per-resource form.
    pub fn set_planning(&self, planning: Planning) {
        self.filters_only.store(planning == Planning::FiltersOnly, Ordering::Relaxed);
    }

    pub(crate) fn planning(&self) -> Planning {
        if self.filters_only.load(Ordering::Relaxed) {
            Planning::FiltersOnly
        } else {
            Planning::Auto
        }
    }

    /// True while the value indexes of a build from zero are not created yet.
    pub fn is_building(&self) -> bool {
        self.building.load(Ordering::Acquire)
    }

    /// Told how many events the log holds beyond the checkpoint: far enough behind (see the
    /// module docs), a built index drops its value indexes until [`Self::finish_build`].
    pub fn behind(&self, events: u64) -> Result<()> {
        if events < DEFER_INDEXES_FROM || self.is_building() {
            return Ok(());
        }
        if self.defer_for(events)? {
            tracing::info!(events, "the search index is far behind the log: value indexes deferred until it catches up");
        }
        Ok(())
    }

    /// A bulk load of about `events` events is coming: build mode (as for a backlog, see
    /// [`Self::behind`]; an index still building from zero stays so) until
    /// [`Self::release_build`], however often the projector catches up meanwhile. Returns whether
    /// the build is held; a load too small for the index changes nothing.
    pub fn hold_build(&self, events: u64) -> Result<bool> {
        if !self.is_building() && !self.defer_for(events)? {
            return Ok(false);
        }
        self.held.store(true, Ordering::Release);
        tracing::info!(events, "bulk load: value indexes deferred until it ends");
        Ok(true)
    }

    /// Ends a hold; true if there was one. The projector's next catch-up (or a call of
    /// [`Self::finish_build`]) then creates the value indexes.
    pub fn release_build(&self) -> bool {
        self.held.swap(false, Ordering::AcqRel)
    }

    /// True while a bulk load holds the build.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Drops the value indexes of a built index if `events` more are worth sorting once
    /// ([`defers`]); true if it did.
    fn defer_for(&self, events: u64) -> Result<bool> {
        let connection = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        if self.is_building() {
            return Ok(false);
        }
        let rows: i64 = connection.query_row("SELECT coalesce(max(row), 0) FROM resources", [], |row| row.get(0))?;
        if !defers(events, rows as u64) {
            return Ok(false);
        }
        let mut sql = String::from("BEGIN;");
        for (name, _) in VALUE_INDEXES {
            sql.push_str(&format!("DROP INDEX IF EXISTS {name};"));
        }
        sql.push_str("COMMIT;");
        connection.execute_batch(&sql)?;
        self.building.store(true, Ordering::Release);
        Ok(true)
    }

    /// Applies events in position order and advances the checkpoint, in one transaction.
    /// An event already applied changes nothing; a delete leaves no current row.
    pub fn apply(&self, events: &[Event]) -> Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut connection = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        let transaction = connection.transaction()?;
        {
            let mut writer = Writer::new(&transaction)?;
            for_each_extracted(events, |event, entries| writer.apply(&transaction, event, entries))?;
        }
        transaction.execute(
            "INSERT INTO checkpoint (name, position) VALUES ('search', ?1)
             ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
            [last.position as i64],
        )?;
        transaction.commit()?;
        let advanced = self.checkpoint.fetch_max(last.position, Ordering::AcqRel).max(last.position);
        if !self.is_building() {
            self.checkpoint_tx.send_replace(advanced);
        }
        Ok(())
    }

    /// Ends a build from zero: creates the value indexes and the planner's statistics, then
    /// publishes the checkpoint. Otherwise refreshes the statistics now and then. Call when
    /// caught up with the log. While a bulk load holds the build, does nothing.
    pub fn finish_build(&self) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        let connection = self.writer.lock().map_err(|_| IndexError::Poisoned)?;
        if self.is_building() {
            let started = Instant::now();
            // SQLite sorts the values of an index in runs of about the cache's size: smaller runs
            // sort faster, and the index being written needs no cache.
            connection.pragma_update(None, "cache_size", -SORT_CACHE_KIB)?;
            create_value_indexes(&connection)?;
            connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
            // A sample per index is enough for the planner to tell selective values apart.
            connection.execute_batch("PRAGMA analysis_limit = 400; ANALYZE;")?;
            // From now on a crash must not tear the file: write ahead, sync at checkpoints. The
            // switch waits for readers (a search running while building) to let go of the file.
            let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(IndexError::Busy("readers hold the built index; it stays in build mode until they let go"));
            }
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            self.building.store(false, Ordering::Release);
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "search index built");
        } else {
            let mut last = self.last_optimize.lock().map_err(|_| IndexError::Poisoned)?;
            if last.elapsed() >= OPTIMIZE_EVERY {
                // Every table: the writer's own statements are inserts, which SQLite does not
                // count as uses that call for statistics.
                connection.execute_batch("PRAGMA optimize = 0x10002")?;
                *last = Instant::now();
            }
        }
        self.checkpoint_tx.send_replace(self.checkpoint());
        Ok(())
    }

    /// Runs `work` on a pooled read-only connection, in one read transaction.
    pub(crate) fn with_reader<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| IndexError::Poisoned)?.pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => {
                let connection = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                connection.busy_timeout(Duration::from_secs(5))?;
                connection.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
                connection
            }
        };
        // One read transaction for all the statements of a search (a page and its includes):
        // one snapshot of the file, and one lock rather than one per statement.
        connection.execute_batch("BEGIN")?;
        let result = work(&connection);
        connection.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        if let Ok(mut readers) = self.readers.lock() {
            if readers.len() < 16 {
                readers.push(connection);
            }
        }
        result
    }
}

/// Whether a backlog of `events` is worth dropping the value indexes of `rows` indexed rows.
fn defers(events: u64, rows: u64) -> bool {
    events >= DEFER_INDEXES_FROM && events > rows
}

fn remove_files(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => return Err(IndexError::Remove { path: file, source }),
            _ => {}
        }
    }
    Ok(())
}

fn create_value_indexes(connection: &Connection) -> Result<()> {
    let mut sql = String::from("BEGIN;");
    for (name, definition) in VALUE_INDEXES {
        sql.push_str(&format!("CREATE INDEX IF NOT EXISTS {name} ON {definition};"));
    }
    sql.push_str("COMMIT;");
    connection.execute_batch(&sql)?;
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

    fn caught_up(&self) -> std::result::Result<(), String> {
        self.finish_build().map_err(|error| error.to_string())
    }

    fn behind(&self, events: u64) -> std::result::Result<(), String> {
        SearchIndex::behind(self, events).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_backlog_larger_than_the_index_defers_its_value_indexes() {
        assert!(!defers(DEFER_INDEXES_FROM - 1, 0), "a small backlog never does");
        assert!(defers(DEFER_INDEXES_FROM, 0));
        assert!(defers(300_000, 299_999));
        assert!(!defers(300_000, 300_000));
        assert!(!defers(50_000, 10_000_000), "a large index keeps its indexes");
    }
}
