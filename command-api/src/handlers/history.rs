//! `_history` at instance, type and system level: a page of positions from the history
//! projection (after it has caught up with this request's view of the log), bodies from the log,
//! returned as a `history` Bundle with a next link.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use event_log::{Event, Operation, StreamKey};
use fhir_core::history::{HistoryQuery, HistoryScope};
use fhir_core::instant::format_instant;

use super::bundle::{link_url, raw, Bundle, Entry, EntryRequest, EntryResponse, Link};
use super::{check_type, instance_key, FhirPath};
use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::respond::{fhir_json_response, prettify};
use crate::state::AppState;

pub async fn system_history(State(state): State<Arc<AppState>>, context: RequestContext) -> ApiResult<Response> {
    history(&state, &context, HistoryScope::System, "_history".into()).await
}

pub async fn type_history(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    let path = format!("{resource_type}/_history");
    history(&state, &context, HistoryScope::Type(resource_type), path).await
}

pub async fn instance_history(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    if state.log.read_latest(&key).await?.is_none() {
        return Err(ApiError::NotFound(format!("{resource_type}/{id} is not known")));
    }
    let path = format!("{resource_type}/{id}/_history");
    history(&state, &context, HistoryScope::Instance(resource_type, id), path).await
}

async fn history(state: &AppState, context: &RequestContext, scope: HistoryScope, path: String) -> ApiResult<Response> {
    let query = HistoryQuery::parse(scope, &context.params).map_err(|issue| ApiError::BadRequest(vec![issue]))?;
    // Read-your-writes: everything committed before this request is in the answer.
    let head = state.log.head().await?;
    if !state.history.wait_for(head, state.config.history_wait).await {
        tracing::warn!(head, "history projection is behind the log; answering from what it has");
    }
    let page = state.history.history(&context.tenant, &query).await.map_err(ApiError::Internal)?;
    let mut events = state.log.read_positions(&page.positions).await?;
    if context.principal.is_bounded() {
        events = reached(state, context, events).await?;
    }
    let self_link = link(context, &path, None);
    let next_link = page.next_before.map(|before| link(context, &path, Some(before)));
    let mut body = history_bundle(&context.base_url, &events, self_link, next_link)?;
    if context.pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// The versions the principal reaches (see [`crate::reach`]); a delete when it reached the
/// version deleted. A page may then hold fewer entries than `_count`; its next link stays.
async fn reached(state: &AppState, context: &RequestContext, events: Vec<Event>) -> ApiResult<Vec<Event>> {
    let mut kept = Vec::with_capacity(events.len());
    for event in events {
        let body = match event.operation {
            Operation::Delete if event.version > 1 => state.log.read_version(&event.key, event.version - 1).await?.map(|before| before.body),
            Operation::Delete => None,
            _ => Some(event.body.clone()),
        };
        if body.is_some_and(|body| context.principal.reaches(Interaction::History, &body)) {
            kept.push(event);
        }
    }
    Ok(kept)
}

/// The URL of this page (no cursor) or of the page before `before`, keeping the other parameters.
fn link(context: &RequestContext, path: &str, before: Option<u64>) -> String {
    let mut params: Vec<(String, String)> = context.params.iter().filter(|(name, _)| name != "_before").cloned().collect();
    if let Some(before) = before {
        params.push(("_before".into(), before.to_string()));
    }
    link_url(&context.base_url, path, &params)
}

fn history_bundle(base_url: &str, events: &[Event], self_link: String, next_link: Option<String>) -> ApiResult<Bytes> {
    let mut link = vec![Link { relation: "self", url: self_link }];
    if let Some(url) = next_link {
        link.push(Link { relation: "next", url });
    }
    let mut entry = Vec::with_capacity(events.len());
    for event in events {
        let StreamKey { resource_type, id, .. } = &event.key;
        let resource = if event.operation == Operation::Delete { None } else { Some(raw(&event.body)?) };
        let (method, url, status) = match event.operation {
            Operation::Create => ("POST", resource_type.clone(), "201 Created"),
            Operation::Update => ("PUT", format!("{resource_type}/{id}"), "200 OK"),
            Operation::Delete => ("DELETE", format!("{resource_type}/{id}"), "200 OK"),
        };
        entry.push(Entry {
            full_url: Some(format!("{base_url}/{resource_type}/{id}")),
            resource,
            search: None,
            request: Some(EntryRequest { method, url }),
            response: Some(EntryResponse {
                status: status.to_string(),
                location: None,
                etag: Some(format!("W/\"{}\"", event.version)),
                last_modified: Some(format_instant(event.recorded_at)),
                outcome: None,
            }),
        });
    }
    Bundle::new("history", link, entry).to_bytes()
}
