//! Where a snapshot comes from: a projection that knows, per type, which versions were current
//! at a log position (the history stores: SQLite embedded, DynamoDB in AWS mode). The bodies
//! come from the log itself.

use std::time::Duration;

use async_trait::async_trait;

#[async_trait]
pub trait SnapshotSource: Send + Sync + 'static {
    /// Waits until the source has seen the log up to `position`, or `timeout` passes.
    async fn wait_for(&self, position: u64, timeout: Duration) -> bool;

    /// The positions (ascending, after `after`, at most `limit`) of the versions of
    /// `resource_type` current at `as_of` that are not deletes and were recorded at or after
    /// `since_ms`.
    async fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>, String>;
}
