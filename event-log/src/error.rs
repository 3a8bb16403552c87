//! The event log's one error type.

use crate::model::StreamKey;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The stream is not at the version the writer expected: another writer got there first,
    /// or the stream already exists (expected none) or does not exist (expected some version).
    #[error("version conflict on {key:?}: expected {expected}, found {actual}")]
    Conflict { key: StreamKey, expected: String, actual: String },
    /// The same stream appears twice in one batch.
    #[error("stream {key:?} appears more than once in one append")]
    DuplicateStream { key: StreamKey },
    /// An append with no events.
    #[error("an append must contain at least one event")]
    EmptyAppend,
    /// The log is shutting down and accepts no more appends.
    #[error("the event log is closed")]
    Closed,
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for LogError {
    fn from(error: rusqlite::Error) -> Self {
        LogError::Storage(error.to_string())
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
