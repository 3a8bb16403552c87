//! Search: `GET [type]?...`, `POST [type]/_search` (form body merged with the query string), and
//! system search `GET [base]?_type=...` (compartment search and `$everything` build on it in
//! `compartment.rs`). The index answers with log positions at a snapshot; the
//! bodies come from the log; pages link to each other through a cursor that pins the snapshot,
//! so paging stays consistent while writes go on.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use fhir_core::search::{parse_search, CompartmentFilter, SearchQuery};
use fhir_core::summary::SummaryMode;
use fhir_core::{operation_outcome, Issue, IssueType};

use super::bundle::{link_url, raw, Bundle, Entry, EntrySearch, Link};
use super::{check_type, FhirPath};
use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::respond::{fhir_json_response, prettify, shape};
use crate::state::{AppState, SearchFailure, SearchPageRequest, SearchResult};

/// The `Prefer` token that asks a search to reflect every write acknowledged before it.
pub const READ_YOUR_WRITES: &str = "read-your-writes";

pub async fn type_search(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    let params = context.params.clone();
    respond(&state, &context, vec![resource_type.clone()], params, &resource_type, None).await
}

/// `POST [type]/_search`: parameters from an `application/x-www-form-urlencoded` body and the URL.
pub async fn type_search_post(state: &AppState, resource_type: &str, context: &RequestContext, body: Body) -> ApiResult<Response> {
    let media = crate::negotiate::content_media_type(&context.headers)?;
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType("_search takes an application/x-www-form-urlencoded body".into()));
    }
    let body = crate::negotiate::read_limited(state, &context.headers, body).await?;
    let mut params = context.params.clone();
    params.extend(form_urlencoded::parse(&body).into_owned());
    respond(state, context, vec![resource_type.to_string()], params, resource_type, None).await
}

/// `GET [base]?_type=A,B&...`: search across types (all types without `_type`).
pub async fn system_search(State(state): State<Arc<AppState>>, context: RequestContext) -> ApiResult<Response> {
    let types: Vec<String> = context
        .params
        .iter()
        .filter(|(name, _)| name == "_type")
        .flat_map(|(_, value)| value.split(','))
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let params = context.params.clone();
    respond(&state, &context, types, params, "", None).await
}

/// Runs the search for `params` over `types` (within `compartment` when given) and renders the
/// searchset Bundle, whose links point at `path`.
pub(super) async fn respond(
    state: &AppState,
    context: &RequestContext,
    types: Vec<String>,
    params: Vec<(String, String)>,
    path: &str,
    compartment: Option<CompartmentFilter>,
) -> ApiResult<Response> {
    let strict = context.prefers("handling=strict");
    let mut query = parse_search(types, &params, strict).map_err(ApiError::BadRequest)?;
    query.compartment = compartment;
    crate::access::check_search(&context.principal, &query)?;
    context.principal.bound_search(&mut query)?;
    let page = parse_cursor(query.cursor.as_deref())?;
    let mut warnings = query.ignored.clone();
    if page.snapshot.is_none() && context.prefers(READ_YOUR_WRITES) {
        let head = state.log.head().await?;
        if !state.search.wait_for(head, state.config.search_wait).await {
            warnings.push(Issue::warning(
                IssueType::Incomplete,
                "the search index had not caught up with every earlier write when the wait ran out; results may miss the newest writes",
            ));
        }
    }
    let result = run(state, &context.tenant, &query, page.clone()).await?;
    let mut body = searchset(state, context, &query, &result, path, &warnings, &page).await?;
    if context.pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// Runs a query on the index, mapping its failures.
pub async fn run(state: &AppState, tenant: &str, query: &SearchQuery, page: SearchPageRequest) -> ApiResult<SearchResult> {
    state.search.search(tenant, query, page).await.map_err(|failure| match failure {
        SearchFailure::Unsupported(why) => ApiError::BadRequest(vec![Issue::error(IssueType::NotSupported, why)]),
        SearchFailure::Internal(detail) => ApiError::Internal(detail),
    })
}

/// `_cursor` is `<snapshot>-<offset>`, and `-<after>` when the index said where the previous
/// page ended (see [`SearchPageRequest::after`]).
fn parse_cursor(cursor: Option<&str>) -> ApiResult<SearchPageRequest> {
    let Some(cursor) = cursor else { return Ok(SearchPageRequest::default()) };
    let invalid = || ApiError::invalid("_cursor must come from a next or previous link");
    let mut parts = cursor.splitn(3, '-');
    let snapshot = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
    let offset = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
    let after = parts.next().map(String::from);
    Ok(SearchPageRequest { snapshot: Some(snapshot), offset, after })
}

async fn searchset(
    state: &AppState,
    context: &RequestContext,
    query: &SearchQuery,
    result: &SearchResult,
    path: &str,
    warnings: &[Issue],
    page: &SearchPageRequest,
) -> ApiResult<Bytes> {
    let offset = page.offset;
    let page_link = |offset: Option<usize>, after: Option<&str>| {
        let mut params = query.applied.clone();
        if let Some(offset) = offset {
            let after = after.map(|after| format!("-{after}")).unwrap_or_default();
            params.push(("_cursor".into(), format!("{}-{offset}{after}", result.snapshot)));
        }
        link_url(&context.base_url, path, &params)
    };
    let mut link = vec![Link { relation: "self", url: page_link((offset > 0).then_some(offset), page.after.as_deref()) }];
    if result.has_next {
        link.push(Link { relation: "next", url: page_link(Some(offset + query.count), result.next_after.as_deref()) });
    }
    if offset > 0 {
        link.push(Link { relation: "previous", url: page_link(Some(offset.saturating_sub(query.count)), None) });
    }
    let mut positions = result.matches.clone();
    positions.extend(&result.included);
    let mut events = state.log.read_positions(&positions).await?;
    // Matches are bounded by the query; included resources are checked one by one.
    events.retain(|event| context.principal.reaches(Interaction::Search, &event.body));
    let summary = query.summary.filter(|mode| *mode != SummaryMode::Count);
    let bodies: Vec<Bytes> = events.iter().map(|event| shape(event.body.clone(), summary, &query.elements)).collect::<ApiResult<_>>()?;
    let outcome = (!warnings.is_empty()).then(|| serde_json::to_vec(&operation_outcome(warnings)).unwrap_or_default());
    let mut entry = Vec::with_capacity(events.len() + 1);
    for (event, body) in events.iter().zip(&bodies) {
        let mode = if result.matches.contains(&event.position) { "match" } else { "include" };
        entry.push(Entry {
            full_url: Some(format!("{}/{}/{}", context.base_url, event.key.resource_type, event.key.id)),
            resource: Some(raw(body)?),
            search: Some(EntrySearch { mode }),
            request: None,
            response: None,
        });
    }
    if let Some(outcome) = &outcome {
        entry.push(Entry { full_url: None, resource: Some(raw(outcome)?), search: Some(EntrySearch { mode: "outcome" }), request: None, response: None });
    }
    let mut bundle = Bundle::new("searchset", link, entry);
    bundle.total = result.total;
    bundle.to_bytes()
}
