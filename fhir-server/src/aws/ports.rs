//! The AWS read models behind the API's ports: `_history` (and export snapshots) from DynamoDB
//! and search from OpenSearch, each waiting for its projection's watermark (`event_stream::consumer::watermark`)
//! when the API asks it to catch up with a write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use command_api::{SearchFailure, SearchPageRequest, SearchResult};
use event_stream::consumer::watermark;
use event_stream::Leases;
use fhir_core::history::{HistoryPage, HistoryQuery};
use fhir_core::search::SearchQuery;
use projector_history::dynamodb::DynamoHistory;
use projector_opensearch::search::SearchError;
use projector_opensearch::OpenSearchIndex;

/// How often a wait looks at the watermark again.
const POLL: Duration = Duration::from_millis(50);

/// One projection's progress, as the lowest mark its workers applied.
pub struct Progress {
    pub kinesis: aws_sdk_kinesis::Client,
    pub leases: Leases,
    pub projection: &'static str,
    pub stream: String,
}

impl Progress {
    async fn position(&self) -> u64 {
        match watermark(&self.kinesis, &self.leases, self.projection, &self.stream).await {
            Ok(position) => position,
            Err(error) => {
                tracing::warn!(%error, projection = self.projection, "cannot read the watermark");
                0
            }
        }
    }

    /// Waits until everything up to `position` is applied, or `timeout` passes.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.position().await >= position {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

pub struct StreamHistory {
    pub store: Arc<DynamoHistory>,
    pub progress: Progress,
}

#[async_trait]
impl command_api::HistoryIndex for StreamHistory {
    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage, String> {
        self.store.history(tenant, query).await.map_err(|error| error.to_string())
    }

    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        self.progress.wait_for(position, timeout).await
    }
}

#[async_trait]
impl export_worker::SnapshotSource for StreamHistory {
    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        self.progress.wait_for(position, timeout).await
    }

    async fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>, String> {
        self.store.live_at(tenant, resource_type, as_of, since_ms, after, limit).await.map_err(|error| error.to_string())
    }
}

pub struct StreamSearch {
    pub index: Arc<OpenSearchIndex>,
    pub progress: Progress,
}

#[async_trait]
impl command_api::SearchBackend for StreamSearch {
    async fn search(&self, tenant: &str, query: &SearchQuery, page: SearchPageRequest) -> Result<SearchResult, SearchFailure> {
        let request = projector_opensearch::search::PageRequest { offset: page.offset, snapshot: page.snapshot, after: page.after };
        match self.index.search(tenant, query, request).await {
            Ok(found) => Ok(SearchResult {
                snapshot: found.snapshot,
                matches: found.matches,
                included: found.included,
                total: found.total,
                has_next: found.has_next,
                next_after: found.next_after,
            }),
            Err(SearchError::Unsupported(why)) => Err(SearchFailure::Unsupported(why.to_string())),
            Err(SearchError::Index(error)) => Err(SearchFailure::Internal(error.to_string())),
        }
    }

    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        // Applied is not yet searchable: OpenSearch shows writes after a refresh.
        self.progress.wait_for(position, timeout).await && self.index.refresh().await.is_ok()
    }
}
