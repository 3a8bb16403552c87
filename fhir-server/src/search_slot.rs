//! The search index in use and its replacement by replay. `reindex` builds a fresh index file
//! from the whole log while the current one keeps serving, then swaps it in: a pointer file
//! names the index in use, replaced atomically, so a crash mid-rebuild leaves the old index in
//! place. Searches in flight finish on the old index.
//!
//! An index file of an older layout (see `projector_search::schema::SCHEMA_VERSION`) is not
//! migrated: on start the server replaces it with a fresh file that its projector fills by
//! replay, as `fhir-server reindex` would (searches are incomplete until it has caught up;
//! read-your-writes searches wait for it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use event_log::EventLog;
use projector_search::{IndexError, SearchIndex};
use serde::Serialize;
use tokio::sync::watch;

/// The file in the data directory that names the index file in use.
pub const POINTER_FILE: &str = "search.current";
/// The index file when there is no pointer yet.
pub const DEFAULT_INDEX_FILE: &str = "search.db";

/// How often a released bulk-load hold looks whether the projector has caught up.
const FINISH_POLL: Duration = Duration::from_millis(20);

/// How far a rebuild has got.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReindexStatus {
    pub state: &'static str,
    pub position: u64,
    pub head: u64,
}

pub struct SearchSlot {
    data_dir: PathBuf,
    log: Arc<dyn EventLog>,
    current: RwLock<Arc<SearchIndex>>,
    /// Stops the projector feeding the current index.
    stop_current: Mutex<watch::Sender<bool>>,
    status: Mutex<ReindexStatus>,
}

fn current_file(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join(POINTER_FILE))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .unwrap_or_else(|| DEFAULT_INDEX_FILE.to_string())
}

fn point_to(data_dir: &Path, file: &str) -> anyhow::Result<()> {
    let temporary = data_dir.join(format!("{POINTER_FILE}.tmp"));
    std::fs::write(&temporary, file).context("cannot write the index pointer")?;
    std::fs::rename(&temporary, data_dir.join(POINTER_FILE)).context("cannot replace the index pointer")?;
    Ok(())
}

fn remove_index_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn fresh_file_name() -> String {
    format!("search-{}.db", fhir_core::instant::unix_millis(fhir_core::instant::now()))
}

/// Opens the index in use; one of an older layout is replaced by a fresh, empty file.
fn open_current(data_dir: &Path) -> anyhow::Result<SearchIndex> {
    let path = data_dir.join(current_file(data_dir));
    match SearchIndex::open(&path) {
        Err(IndexError::OldSchema { found, expected }) => {
            tracing::warn!(found, expected, "the search index has an older layout; rebuilding it from the log");
            let file = fresh_file_name();
            let index = SearchIndex::open(&data_dir.join(&file)).context("cannot create the new index")?;
            point_to(data_dir, &file)?;
            remove_index_files(&path);
            Ok(index)
        }
        opened => opened.context("cannot open the search index"),
    }
}

/// Replays the whole log into a fresh index file next to the current one, reporting progress,
/// until it has caught up with the head as it was when the replay finished a pass (and, being
/// built from zero, has its value indexes: its checkpoint watch waits for them).
///
/// Also returns the fingerprint of the custom search parameters in use when the build started
/// (see [`crate::search_params`]), to record once the index is in use.
async fn build(data_dir: &Path, log: &Arc<dyn EventLog>, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> anyhow::Result<(String, Arc<SearchIndex>, watch::Sender<bool>, String)> {
    let parameters = crate::search_params::fingerprint();
    let file = fresh_file_name();
    let index = Arc::new(SearchIndex::open(&data_dir.join(&file)).context("cannot create the new index")?);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(projector_search::run(index.clone(), log.clone(), stopped));
    let mut checkpoint = index.watch_checkpoint();
    loop {
        let head = log.head().await?;
        let searchable = *checkpoint.borrow_and_update();
        progress(index.checkpoint(), head);
        if searchable >= head {
            return Ok((file, index, stop, parameters));
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), checkpoint.changed()).await;
    }
}

impl SearchSlot {
    /// Opens the index in use and starts its projector. With `bulk_load`, the number of events
    /// a bulk load is about to write, the index's build is held from the start (see
    /// [`SearchIndex::hold_build`]) until [`Self::wait_for`].
    pub fn open(data_dir: &Path, log: Arc<dyn EventLog>, bulk_load: Option<u64>) -> anyhow::Result<Arc<Self>> {
        let index = Arc::new(open_current(data_dir)?);
        if let Some(events) = bulk_load {
            index.hold_build(events).context("cannot prepare the search index for a bulk load")?;
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(projector_search::run(index.clone(), log.clone(), stopped));
        Ok(Arc::new(SearchSlot {
            data_dir: data_dir.to_path_buf(),
            log,
            current: RwLock::new(index),
            stop_current: Mutex::new(stop),
            status: Mutex::new(ReindexStatus { state: "idle", ..ReindexStatus::default() }),
        }))
    }

    pub fn current(&self) -> Arc<SearchIndex> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn status(&self) -> ReindexStatus {
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_status(&self, state: &'static str, position: u64, head: u64) {
        *self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = ReindexStatus { state, position, head };
    }

    /// Marks a rebuild as running; false if one already is.
    pub fn begin_reindex(&self) -> bool {
        let mut status = self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if status.state == "running" {
            return false;
        }
        *status = ReindexStatus { state: "running", position: 0, head: 0 };
        true
    }

    /// Rebuilds the index by replay and swaps it in; searches go on meanwhile. Call after
    /// [`Self::begin_reindex`] returned true.
    pub async fn reindex(self: &Arc<Self>) -> anyhow::Result<()> {
        let progress = |position, head| self.set_status("running", position, head);
        let built = build(&self.data_dir, &self.log, &progress).await;
        let (file, index, stop, parameters) = match built {
            Ok(built) => built,
            Err(error) => {
                self.set_status("failed", 0, 0);
                return Err(error);
            }
        };
        point_to(&self.data_dir, &file)?;
        crate::search_params::record_built_with(&self.data_dir, &parameters)?;
        let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(|p| p.into_inner()), index);
        let old_stop = std::mem::replace(&mut *self.stop_current.lock().unwrap_or_else(|p| p.into_inner()), stop);
        let _ = old_stop.send(true);
        // Readers in flight keep their open handles; the files go once nothing points to them.
        if old.path() != self.data_dir.join(&file) {
            remove_index_files(old.path());
        }
        let head = self.log.head().await.unwrap_or(0);
        self.set_status("done", head, head);
        tracing::info!("search index rebuilt and swapped in");
        Ok(())
    }

    /// Waits until the index in use is searchable as of `position`, or `timeout` passes;
    /// returns whether it is. A bulk load's hold on the build ends here: whoever waits needs
    /// the value indexes.
    pub async fn wait_for(self: &Arc<Self>, position: u64, timeout: Duration) -> bool {
        let index = self.current();
        if index.release_build() {
            let slot = self.clone();
            tokio::spawn(async move { slot.finish_build(index).await });
        }
        let mut checkpoint = self.current().watch_checkpoint();
        tokio::time::timeout(timeout, checkpoint.wait_for(|applied| *applied >= position)).await.is_ok_and(|r| r.is_ok())
    }

    /// Creates the value indexes of a build that was held, once the projector has caught up
    /// (it would only at its next catch-up, which may be long if the log is quiet).
    async fn finish_build(&self, index: Arc<SearchIndex>) {
        while index.is_building() && !index.is_held() && Arc::ptr_eq(&index, &self.current()) {
            if index.checkpoint() >= self.log.head().await.unwrap_or(u64::MAX) {
                let building = index.clone();
                match tokio::task::spawn_blocking(move || building.finish_build()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => tracing::warn!(%error, "cannot create the search index's value indexes yet; retrying"),
                    Err(error) => tracing::warn!(%error, "the search index build task failed; retrying"),
                }
            }
            tokio::time::sleep(FINISH_POLL).await;
        }
    }

    pub fn stop(&self) {
        let _ = self.stop_current.lock().unwrap_or_else(|p| p.into_inner()).send(true);
    }
}

/// `fhir-server reindex` with the server stopped: rebuild into a fresh file, point to it, remove
/// the old one, printing progress.
pub async fn reindex_offline(data_dir: &Path, log: Arc<dyn EventLog>) -> anyhow::Result<()> {
    let old = data_dir.join(current_file(data_dir));
    let progress = |position: u64, head: u64| {
        eprint!("\rreindexing: {position} of {head} events");
    };
    let (file, index, stop, parameters) = build(data_dir, &log, &progress).await?;
    eprintln!();
    let _ = stop.send(true);
    drop(index);
    point_to(data_dir, &file)?;
    crate::search_params::record_built_with(data_dir, &parameters)?;
    if old != data_dir.join(&file) {
        remove_index_files(&old);
    }
    println!("search index rebuilt into {file}");
    Ok(())
}
