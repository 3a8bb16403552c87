//! The log's events on a Kinesis data stream, for projectors that run apart from the writers
//! (AWS mode).
//!
//! - [`relay`]: the outbox relay, log to stream, at least once, in order per resource.
//! - [`consumer`]: shard workers that share a stream's shards through leases, checkpoint in
//!   DynamoDB, take over a dead worker's shards and follow resharding.
//! - [`lambda`]: the same projection code on a Lambda Kinesis batch, with partial batch failures.
//! - [`record`]: one event as one record; [`leases`]: the lease and checkpoint table.
//!
//! A projection fed from the stream sees each resource's versions in order, but may see some of
//! them again (after a takeover or a retry), and sees different resources in no global order:
//! it must be idempotent and never let an older version overwrite a newer one. A full replay
//! reads the log (`EventLog::read_from`), not the stream, whose retention is limited.

pub mod consumer;
pub mod lambda;
pub mod leases;
pub mod record;
pub mod relay;

use async_trait::async_trait;
use event_log::{Event, LogError};

pub use consumer::{Consumer, ConsumerOptions};
pub use leases::Leases;
pub use relay::Relay;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Aws(String),
    #[error("{0}")]
    Encoding(String),
    #[error("the lease {0} is held by another worker now")]
    LeaseLost(String),
    /// The worker is shutting down with a batch not applied (its checkpoint stays before it).
    #[error("stopped before the batch was applied")]
    Stopped,
    #[error(transparent)]
    Log(#[from] LogError),
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;

pub(crate) fn kinesis_error(error: impl std::error::Error) -> StreamError {
    StreamError::Aws(format!("Kinesis: {}", aws_sdk_kinesis::error::DisplayErrorContext(error)))
}

/// A read model fed from the stream.
#[async_trait]
pub trait StreamProjection: Send + Sync + 'static {
    /// A short name: it names the projection's leases, so it must stay the same across restarts.
    fn name(&self) -> &str;
    /// Applies events of one shard, in the shard's order. Must be idempotent and must never let
    /// an older version of a resource overwrite a newer one. An error makes the runtime retry
    /// the same events.
    async fn apply(&self, events: &[Event]) -> std::result::Result<(), String>;
}

/// Creates a stream with `shards` shards and waits until it is active (nothing if it exists).
pub async fn create_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str, shards: i32) -> Result<()> {
    match kinesis.create_stream().stream_name(stream).shard_count(shards).send().await {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(kinesis_error(error)),
    }
    for _ in 0..600 {
        let description = kinesis.describe_stream_summary().stream_name(stream).send().await.map_err(kinesis_error)?;
        if description.stream_description_summary().is_some_and(|d| d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(StreamError::Aws(format!("the stream {stream} did not become active")))
}
