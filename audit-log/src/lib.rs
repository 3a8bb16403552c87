//! The audit trail: one [`AuditRecord`] per API request (who, which interaction on which
//! resource type and id, when, from where, with what outcome, and the request id), never any
//! resource content, appended to a store of its own that offers no way to change or remove a
//! record.
//!
//! - [`sqlite`]: `audit.db` in the data directory (embedded mode).
//! - [`dynamodb`]: a DynamoDB table keyed by tenant and time (AWS mode).
//! - [`suite`]: the behaviour both stores pass.

pub mod dynamodb;
pub mod sqlite;
pub mod suite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The request id (also sent back as `x-request-id`).
    pub request_id: String,
    /// When the request ended, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub tenant: String,
    /// The caller: a token's subject, `anonymous`, or `unauthenticated` for a refused token.
    pub actor: String,
    /// The client's network address.
    pub client: String,
    pub method: String,
    /// A FHIR restful-interaction code (`read`, `search-type`, `transaction`, ...).
    pub interaction: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// Which records to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub actor: Option<String>,
    pub resource_type: Option<String>,
    pub limit: usize,
}

impl AuditQuery {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.since_ms.is_none_or(|since| record.at_ms >= since)
            && self.until_ms.is_none_or(|until| record.at_ms <= until)
            && self.actor.as_ref().is_none_or(|actor| &record.actor == actor)
            && self.resource_type.as_ref().is_none_or(|t| record.resource_type.as_ref() == Some(t))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit store: {0}")]
pub struct AuditError(pub String);

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `records` durably (all of them, or an error).
    async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError>;
    /// A tenant's records matching `query`, newest first, at most `query.limit`.
    async fn query(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError>;
}
