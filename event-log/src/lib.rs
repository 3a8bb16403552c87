//! The event log: the only source of truth of the server.
//!
//! Every write appends immutable resource-version [`Event`]s. Each resource's versions form a
//! stream keyed by tenant, type and id; an append states the version it expects each stream to be
//! at, so two writers can never both create version N. One append may cover many streams and
//! commits all of them or none. Every event also gets a position in the whole log, which
//! projectors use as their checkpoint.
//!
//! Layout:
//! - [`model`]: the envelope ([`Event`]) and append requests.
//! - [`hash`]: the per-stream SHA-256 hash chain and its verification.
//! - [`sqlite`]: the embedded implementation (SQLite, WAL, one writer thread with group commit).
//! - [`dynamodb`]: the AWS implementation (one item per version, staged then committed).
//! - [`tail`]: the loop that feeds a projection from the log, shared by every projector.
//! - [`suite`]: the behaviour suite every implementation must pass, written once against the trait.

pub mod dynamodb;
pub mod error;
pub mod hash;
pub mod model;
pub mod sqlite;
pub mod suite;
pub mod tail;

use async_trait::async_trait;
use tokio::sync::watch;

pub use error::{LogError, Result};
pub use model::{AppendBatch, Appended, Event, ExpectedVersion, NewEvent, Operation, StreamKey, ENVELOPE_VERSION};

/// An append-only, optimistically locked log of resource-version events.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends all events of `batch` atomically. Each event's `expected` version must match its
    /// stream's current last version, or nothing is written and [`LogError::Conflict`] is returned.
    /// Returns one [`Appended`] per event, in request order. Once this returns `Ok`, the events are
    /// durable.
    async fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>>;

    /// Every version of one stream, oldest first. Empty if the stream does not exist.
    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<Event>>;

    /// One version of one stream.
    async fn read_version(&self, key: &StreamKey, version: u64) -> Result<Option<Event>>;

    /// The last version of one stream.
    async fn read_latest(&self, key: &StreamKey) -> Result<Option<Event>>;

    /// Events with a position greater than `after`, in position order: up to `limit` of them,
    /// except that one append is never split, so that a reader that applies what it reads never
    /// shows half a transaction: the last append's remaining events come along past `limit`.
    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<Event>>;

    /// The events at the given positions (those that exist), in the order asked.
    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<Event>>;

    /// The position of the last committed event (0 for an empty log).
    async fn head(&self) -> Result<u64>;

    /// A receiver that sees the head position change after each commit, so tailers need not poll.
    fn watch_head(&self) -> watch::Receiver<u64>;
}
