//! WAL checkpoints on a thread of their own, so the writer never waits for one.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold: the writer
//! would copy a thousand pages into the database file and fsync it while every appender waits.
//! Instead the writer connection's WAL hook (which replaces the automatic checkpoint) only nudges
//! this thread once the WAL holds [`WAL_PAGES_BEFORE_CHECKPOINT`] pages; the thread runs a
//! PASSIVE checkpoint on its own connection, which never blocks the writer or the readers. When
//! the thread's connection closes last, SQLite checkpoints the rest and removes the WAL.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;

use super::schema::{open_checkpointer, Synchronous};
use crate::{LogError, Result};

/// Pages in the WAL that make the writer ask for a checkpoint (SQLite's default threshold).
pub(crate) const WAL_PAGES_BEFORE_CHECKPOINT: i32 = 1_000;

/// Starts the checkpoint thread and makes `writer` nudge it. The thread ends once `writer` is
/// dropped (the hook holds the only sender); join the handle to know the file is released.
pub(crate) fn start(path: &Path, synchronous: Synchronous, writer: &mut Connection) -> Result<JoinHandle<()>> {
    let connection = open_checkpointer(path, synchronous)?;
    let (nudge, nudged) = sync_channel::<()>(1);
    install_hook(writer, nudge)?;
    std::thread::Builder::new()
        .name("event-log-checkpoint".to_owned())
        .spawn(move || run(connection, nudged))
        .map_err(|error| LogError::Storage(format!("cannot start the checkpoint thread: {error}")))
}

fn install_hook(writer: &mut Connection, nudge: SyncSender<()>) -> Result<()> {
    let mut nudged_at = 0;
    writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
        if pages < nudged_at {
            nudged_at = 0;
        }
        if pages >= nudged_at + WAL_PAGES_BEFORE_CHECKPOINT {
            nudged_at = pages;
            // Full means a nudge is already pending; Disconnected means the thread is gone, and
            // SQLite will checkpoint when the last connection closes.
            if let Err(TrySendError::Full(()) | TrySendError::Disconnected(())) = nudge.try_send(()) {}
        }
        Ok(())
    }))?;
    Ok(())
}

fn run(connection: Connection, nudged: Receiver<()>) {
    while nudged.recv().is_ok() {
        match connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((wal_pages, checkpointed)) => tracing::trace!(wal_pages, checkpointed, "event log checkpoint"),
            // Readers or the writer may hold what a checkpoint needs; the next nudge retries.
            Err(error) => tracing::warn!(%error, "event log checkpoint failed"),
        }
    }
    drop(connection);
    tracing::debug!("event log checkpoint thread stopped");
}
