//! Wires the history projector's store into the API's `HistoryIndex` port and the export
//! worker's `SnapshotSource`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fhir_core::history::{HistoryPage, HistoryQuery};
use projector_history::HistoryStore;

pub struct ProjectedHistory(pub Arc<HistoryStore>);

#[async_trait]
impl command_api::HistoryIndex for ProjectedHistory {
    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage, String> {
        let store = self.0.clone();
        let tenant = tenant.to_string();
        let query = query.clone();
        tokio::task::spawn_blocking(move || store.history(&tenant, &query))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    }

    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut checkpoint = self.0.watch_checkpoint();
        tokio::time::timeout(timeout, checkpoint.wait_for(|applied| *applied >= position)).await.is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl export_worker::SnapshotSource for ProjectedHistory {
    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        command_api::HistoryIndex::wait_for(self, position, timeout).await
    }

    async fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>, String> {
        let store = self.0.clone();
        let (tenant, resource_type) = (tenant.to_string(), resource_type.to_string());
        tokio::task::spawn_blocking(move || store.live_at(&tenant, &resource_type, as_of, since_ms, after, limit))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    }
}
