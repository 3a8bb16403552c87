//! Wires the search index in use into the API's `SearchBackend` port.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use command_api::{SearchFailure, SearchPageRequest, SearchResult};
use fhir_core::search::SearchQuery;
use projector_search::{PageRequest, SearchError};

use crate::search_slot::SearchSlot;

pub struct IndexedSearch(pub Arc<SearchSlot>);

#[async_trait]
impl command_api::SearchBackend for IndexedSearch {
    async fn search(&self, tenant: &str, query: &SearchQuery, page: SearchPageRequest) -> Result<SearchResult, SearchFailure> {
        let index = self.0.current();
        let tenant = tenant.to_string();
        let query = query.clone();
        let snapshot = page.snapshot.unwrap_or_else(|| index.checkpoint());
        let request = PageRequest { snapshot, offset: page.offset };
        let found = tokio::task::spawn_blocking(move || index.search(&tenant, &query, request))
            .await
            .map_err(|error| SearchFailure::Internal(error.to_string()))?;
        match found {
            Ok(page) => Ok(SearchResult { snapshot, matches: page.matches, included: page.included, total: page.total, has_next: page.has_next, next_after: None }),
            Err(SearchError::Unsupported(why)) => Err(SearchFailure::Unsupported(why.to_string())),
            Err(SearchError::Index(error)) => Err(SearchFailure::Internal(error.to_string())),
        }
    }

    async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        self.0.wait_for(position, timeout).await
    }
}
