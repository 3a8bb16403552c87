//! Batch and transaction Bundles (`POST [base]`).
//!
//! - `entry`: the request Bundle parsed into typed entries.
//! - `references`: finding and rewriting references between entries.
//! - `commit`: a transaction as one atomic append of any size.
//! - `batch`: independent entries, each run as its own request.
//! - `dispatch`: running one entry through the API's router.
//! - `response`: the response Bundle.

mod batch;
mod commit;
mod dispatch;
mod entry;
mod references;
mod response;

use std::sync::Arc;

use axum::response::Response;

use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::resource::parse_json;
use crate::state::AppState;

pub use entry::BundleKind;
pub use response::EntryResult;

/// Runs a batch or transaction Bundle read from the request body; answers with the response
/// Bundle.
pub async fn process(state: &Arc<AppState>, context: &RequestContext, body: &[u8]) -> ApiResult<Response> {
    let (kind, results) = run(state, context, parse_json(body)?).await?;
    let mut answer = response::render(kind, &results, context.pretty)?;
    let audited_as = match kind {
        BundleKind::Batch => "batch",
        BundleKind::Transaction => "transaction",
    };
    answer.extensions_mut().insert(crate::audit::AuditedAs(audited_as));
    Ok(answer)
}

/// Runs a batch or transaction Bundle: what it was, and each entry's outcome in the request's
/// order. A transaction that fails fails as a whole, with an error naming the entry.
pub async fn run(state: &Arc<AppState>, context: &RequestContext, bundle: serde_json::Value) -> ApiResult<(BundleKind, Vec<EntryResult>)> {
    let (kind, entries) = entry::parse_bundle(bundle, &context.base_url).map_err(ApiError::BadRequest)?;
    let results = match kind {
        BundleKind::Batch => batch::run(state, context, entries).await,
        BundleKind::Transaction => {
            let issues: Vec<_> = entries.iter().filter_map(|entry| entry.as_ref().err().cloned()).collect();
            if !issues.is_empty() {
                return Err(ApiError::BadRequest(issues));
            }
            commit::run(state, context, entries.into_iter().flatten().collect()).await?
        }
    };
    Ok((kind, results))
}
