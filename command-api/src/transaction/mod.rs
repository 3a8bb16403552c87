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

/// Runs a batch or transaction Bundle read from the request body.
pub async fn process(state: &Arc<AppState>, context: &RequestContext, body: &[u8]) -> ApiResult<Response> {
    let bundle = parse_json(body)?;
    let (kind, entries) = entry::parse_bundle(bundle, &context.base_url).map_err(ApiError::BadRequest)?;
    match kind {
        entry::BundleKind::Batch => batch::run(state, context, entries).await,
        entry::BundleKind::Transaction => {
            let issues: Vec<_> = entries.iter().filter_map(|entry| entry.as_ref().err().cloned()).collect();
            if !issues.is_empty() {
                return Err(ApiError::BadRequest(issues));
            }
            commit::run(state, context, entries.into_iter().flatten().collect()).await
        }
    }
}
