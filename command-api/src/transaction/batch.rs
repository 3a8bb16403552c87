//! Batch: every entry is processed on its own, exactly as if it were sent alone (through the
//! API's own router), so one failing entry does not touch the others. Entries may not refer to
//! each other: that is what a transaction is for, and such an entry fails with a clear message.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use fhir_core::Issue;
use serde_json::Value;

use super::dispatch::dispatch;
use super::entry::{BundleEntry, Method};
use super::references::references_in;
use super::response::EntryResult;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::state::AppState;

/// How many entries of one batch run at once.
const CONCURRENCY: usize = 8;

pub async fn run(state: &Arc<AppState>, context: &RequestContext, entries: Vec<Result<BundleEntry, Issue>>) -> Vec<EntryResult> {
    let router = crate::handlers::routes(state.clone());
    let base_path = state.config.base_path.trim_end_matches('/').to_string();
    let full_urls: HashSet<&str> = entries.iter().flatten().filter_map(|entry| entry.full_url.as_deref()).collect();
    let runs: Vec<_> = entries.iter().map(|entry| run_entry(&router, &base_path, context, entry.as_ref(), &full_urls)).collect();
    futures::stream::iter(runs).buffered(CONCURRENCY).collect().await
}

async fn run_entry(
    router: &Router,
    base_path: &str,
    context: &RequestContext,
    entry: Result<&BundleEntry, &Issue>,
    full_urls: &HashSet<&str>,
) -> EntryResult {
    let entry = match entry {
        Ok(entry) => entry,
        Err(issue) => return EntryResult::from(ApiError::BadRequest(vec![issue.clone()])),
    };
    let outcome = async {
        refuse_references_between_entries(entry, full_urls)?;
        let body = entry_body(entry)?;
        dispatch(router, base_path, context, entry, body).await
    };
    match outcome.await {
        Ok(answer) => EntryResult::from(answer),
        Err(error) => EntryResult::from(error),
    }
}

fn refuse_references_between_entries(entry: &BundleEntry, full_urls: &HashSet<&str>) -> ApiResult<()> {
    let Some(resource) = &entry.resource else { return Ok(()) };
    let mut found = Vec::new();
    references_in(resource, &|reference| full_urls.contains(reference), &mut found);
    if found.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "this entry refers to another entry of the batch by its fullUrl; batch entries are processed independently, so send a transaction to link them",
        ))
    }
}

/// The body an entry sends, with its media type.
pub(super) fn entry_body(entry: &BundleEntry) -> ApiResult<Option<(&'static str, Bytes)>> {
    let Some(resource) = &entry.resource else { return Ok(None) };
    let json = || serde_json::to_vec(resource).map(Bytes::from).map_err(|error| ApiError::Internal(error.to_string()));
    match entry.method {
        Method::Patch if resource.get("resourceType").and_then(Value::as_str) == Some("Binary") => {
            // A JSON Patch travels as a Binary; decode it once, here.
            let crate::patch::PatchDocument::Json(patch) = crate::patch::PatchDocument::from_resource(resource)? else {
                return Err(ApiError::Internal("a Binary patch decoded to something else".into()));
            };
            let bytes = serde_json::to_vec(&patch).map_err(|error| ApiError::Internal(error.to_string()))?;
            Ok(Some(("application/json-patch+json", bytes.into())))
        }
        Method::Post | Method::Put | Method::Patch => Ok(Some(("application/fhir+json", json()?))),
        _ => Ok(None),
    }
}
