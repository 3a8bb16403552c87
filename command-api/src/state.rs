//! What every handler shares: the log, the read models it may query, and the API's settings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use blob_store::local::UrlSigner;
use blob_store::BlobStore;
use event_log::EventLog;
use fhir_core::history::{HistoryPage, HistoryQuery};
use fhir_core::search::SearchQuery;

use crate::audit::AuditTrail;
use crate::auth::Authenticator;
use crate::error::{ApiError, ApiResult};
pub use crate::guides::Guides;
pub use crate::subscriptions::Subscriptions;
use audit_log::AuditStore;

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
    /// Every route under `[base]/tenant/{tenantId}/` (see [`crate::tenancy`]).
    pub multi_tenancy: bool,
    /// How long `_history` waits for the projection to catch up with the request's log position.
    pub history_wait: Duration,
    /// How long a search asked to read its writes, or a conditional operation, waits for the
    /// search index to catch up with the log.
    pub search_wait: Duration,
    /// Largest raw Binary upload, in bytes (413 beyond it).
    pub max_binary_bytes: u64,
    /// How long a download URL (of a Binary's bytes, of an export file) works.
    pub download_url_ttl: Duration,
    /// Exports one tenant may have in progress at once (429 beyond).
    pub max_exports_per_tenant: usize,
    /// How long the files of a finished export are kept (the manifest's `Expires`).
    pub export_retention: Duration,
    /// The SMART App Launch discovery document served at `/.well-known/smart-configuration`
    /// (and named in the CapabilityStatement's security); `None`: SMART is not offered.
    pub smart_configuration: Option<serde_json::Value>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_path: "/fhir".into(),
            public_base_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            update_create: true,
            default_tenant: "default".into(),
            multi_tenancy: false,
            history_wait: Duration::from_secs(5),
            search_wait: Duration::from_secs(5),
            max_binary_bytes: 5 * 1024 * 1024 * 1024,
            download_url_ttl: Duration::from_secs(3600),
            max_exports_per_tenant: 2,
            export_retention: Duration::from_secs(24 * 3600),
            smart_configuration: None,
        }
    }
}

pub struct AppState {
    pub log: Arc<dyn EventLog>,
    pub history: Arc<dyn HistoryIndex>,
    pub search: Arc<dyn SearchBackend>,
    pub config: ApiConfig,
    /// Serializes conditional writes with the same criteria.
    pub conditional_locks: crate::locks::KeyedLocks,
    /// The CapabilityStatement, rendered again when the search parameters or the guides change
    /// (see [`crate::handlers::capability_statement`]), with the generations it was made for.
    pub capability_statement: std::sync::Mutex<((u64, u64), bytes::Bytes)>,
    /// Who is calling (see [`crate::auth`]).
    pub authenticator: Arc<dyn Authenticator>,
    /// Where every request is recorded (see [`crate::audit`]); none when disabled.
    pub audit: Option<Arc<AuditTrail>>,
    /// Bytes outside the log: Binary contents, export files.
    pub blobs: Blobs,
    /// Bulk export jobs, and the worker to wake when one is kicked off.
    pub exports: Exports,
    /// Where notifications may go, and the notifier's queue.
    pub subscriptions: Subscriptions,
    /// The loaded Implementation Guides (see [`crate::guides`]).
    pub guides: Arc<Guides>,
}

/// What the API works with besides the log and the read models.
pub struct Services {
    pub blobs: Blobs,
    pub exports: Exports,
    pub subscriptions: Subscriptions,
    pub guides: Arc<Guides>,
}

/// Where export jobs are kept, and how a kick-off wakes the worker.
#[derive(Clone)]
pub struct Exports {
    pub jobs: Arc<dyn export_worker::JobStore>,
    pub wake: Arc<tokio::sync::Notify>,
}

/// The blob store, and how its URLs are made: signed by the server for the server's own
/// `_blob` route (embedded), or by the store (S3 presigned).
#[derive(Clone)]
pub struct Blobs {
    pub store: Arc<dyn BlobStore>,
    /// Set when the server serves the blobs itself.
    pub signer: Option<UrlSigner>,
}

impl Blobs {
    /// A URL that fetches `key` until `expires_in` has passed; `base_url` is the request's base.
    pub async fn download_url(&self, base_url: &str, key: &str, expires_in: Duration) -> ApiResult<String> {
        blob_store::check_key(key).map_err(|error| ApiError::Internal(error.to_string()))?;
        match &self.signer {
            Some(signer) => Ok(signer.url(&format!("{base_url}/_blob"), "GET", key, expires_in)),
            None => Ok(self.store.download_url(key, expires_in).await.map_err(|error| ApiError::Internal(error.to_string()))?.url),
        }
    }

    /// A URL to PUT `key`'s bytes (with `content_type`) to until `expires_in` has passed.
    pub async fn upload_url(&self, base_url: &str, key: &str, content_type: &str, expires_in: Duration) -> ApiResult<blob_store::SignedUrl> {
        blob_store::check_key(key).map_err(|error| ApiError::Internal(error.to_string()))?;
        match &self.signer {
            Some(signer) => Ok(blob_store::SignedUrl {
                url: signer.url(&format!("{base_url}/_blob"), "PUT", key, expires_in),
                headers: vec![("content-type".into(), content_type.into())],
            }),
            None => self.store.upload_url(key, content_type, expires_in).await.map_err(|error| ApiError::Internal(error.to_string())),
        }
    }
}

impl AppState {
    pub fn new(
        log: Arc<dyn EventLog>,
        history: Arc<dyn HistoryIndex>,
        search: Arc<dyn SearchBackend>,
        config: ApiConfig,
        authenticator: Arc<dyn Authenticator>,
        audit: Option<Arc<dyn AuditStore>>,
        services: Services,
    ) -> Arc<Self> {
        let Services { blobs, exports, subscriptions, guides } = services;
        let capability_statement = std::sync::Mutex::new(((u64::MAX, u64::MAX), bytes::Bytes::new()));
        let audit = audit.map(AuditTrail::start);
        Arc::new(AppState { log, history, search, config, conditional_locks: Default::default(), capability_statement, authenticator, audit, blobs, exports, subscriptions, guides })
    }
}

/// The search index, as the API sees it. The binary wires in the search projector's index.
#[async_trait]
pub trait SearchBackend: Send + Sync + 'static {
    /// One page of `query` for `tenant` at `snapshot` (the index's checkpoint when `None`).
    async fn search(&self, tenant: &str, query: &SearchQuery, page: SearchPageRequest) -> Result<SearchResult, SearchFailure>;

    /// Waits until the index has applied the log up to `position`, or `timeout` passes.
    async fn wait_for(&self, position: u64, timeout: Duration) -> bool;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPageRequest {
    pub snapshot: Option<u64>,
    pub offset: usize,
    /// Where the previous page ended, as the backend put it in [`SearchResult::next_after`]
    /// (an index that pages by `search_after`); the offset still counts the pages.
    pub after: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchResult {
    /// The snapshot the page was computed at; later pages use the same one.
    pub snapshot: u64,
    /// Log positions of the matches on this page, in order.
    pub matches: Vec<u64>,
    /// Log positions of `_include`/`_revinclude` resources.
    pub included: Vec<u64>,
    pub total: Option<u64>,
    pub has_next: bool,
    /// An opaque position for the next page, for an index that pages from where the last one
    /// ended rather than by offset.
    pub next_after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchFailure {
    /// The query is valid FHIR but this index cannot answer it (a 400 saying so).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}
