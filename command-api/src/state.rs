//! What every handler shares: the log, the read models it may query, and the API's settings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use event_log::EventLog;
use fhir_core::history::{HistoryPage, HistoryQuery};

/// The history read model, as the API sees it. The binary wires in the projector's store.
#[async_trait]
pub trait HistoryIndex: Send + Sync + 'static {
    /// One page of log positions answering `query` for `tenant`, newest first.
    async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage, String>;

    /// Waits until the projection has applied the log up to `position`, or `timeout` passes.
    /// Returns whether it caught up.
    async fn wait_for(&self, position: u64, timeout: Duration) -> bool;
}

/// The API's settings (the binary fills them from its configuration).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Path prefix of the FHIR API, e.g. `/fhir`; empty to serve at the root.
    pub base_path: String,
    /// The absolute base URL to use in `Location` and `fullUrl`; derived from `Host` when unset.
    pub public_base_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Whether PUT may create a resource with a client-chosen id.
    pub update_create: bool,
    /// The tenant of every request while multi-tenancy is off.
    pub default_tenant: String,
    /// How long `_history` waits for the projection to catch up with the request's log position.
    pub history_wait: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_path: "/fhir".into(),
            public_base_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            update_create: true,
            default_tenant: "default".into(),
            history_wait: Duration::from_secs(5),
        }
    }
}

pub struct AppState {
    pub log: Arc<dyn EventLog>,
    pub history: Arc<dyn HistoryIndex>,
    pub config: ApiConfig,
    /// The CapabilityStatement, rendered once at start-up.
    pub capability_statement: bytes::Bytes,
}
