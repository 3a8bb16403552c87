//! The embedded search index: a projector that tails the event log into SQLite index tables
//! (values extracted by the R4 SearchParameter expressions), and the interpreter that runs the
//! shared typed search query on them.
//!
//! Every resource version is a row with the log positions between which it was current, so a
//! search runs at a snapshot position and its pages stay consistent while writes go on. Applying
//! an event is idempotent and the checkpoint commits with the rows it covers. Rebuilding is a
//! replay into a fresh file.
//!
//! Layout:
//! - [`schema`]: the tables and their version.
//! - [`store`]: opening, applying batches, the checkpoint, finishing a build from zero.
//! - `extract`: a batch's index values, extracted on worker threads while the writer inserts.
//! - `write`: one event's rows.
//! - [`sql`]: the typed query turned into SQL.
//! - [`search`]: running a search page and its total; `include`: `_include` and `_revinclude`.

mod extract;
mod include;
pub mod schema;
pub mod search;
pub mod sql;
pub mod store;
mod write;

use std::sync::Arc;

use event_log::EventLog;
use tokio::sync::watch;

pub use search::{PageRequest, SearchError, SearchPage};
pub use store::{IndexError, SearchIndex};

/// Runs the search projector until `shutdown` turns true.
pub async fn run(index: Arc<SearchIndex>, log: Arc<dyn EventLog>, shutdown: watch::Receiver<bool>) {
    event_log::tail::run(index, log, shutdown).await
}
