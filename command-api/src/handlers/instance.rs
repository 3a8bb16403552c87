//! Instance interactions: read, vread, update (PUT), patch (JSON Patch or FHIRPath Patch) and
//! delete.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use event_log::{Event, Operation, StreamKey};
use fhir_core::summary::SummaryMode;
use fhir_core::{operation_outcome, Issue, IssueType};
use serde_json::Value;

use super::{instance_key, FhirPath};
use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{read_resource_body, PreferReturn, RequestContext};
use crate::resource::{parse_resource, same_content, validate, Resource};
use crate::respond::{fhir_json_response, parse_etag, prettify, shape, with_version_headers};
use crate::patch::PatchDocument;
use crate::state::AppState;
use crate::write::{write_with_retry, Plan, Written};

pub async fn read(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    let event = state
        .log
        .read_latest(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{resource_type}/{id} is not known")))?;
    respond_with_version(&state, &context, event, true).await
}

pub async fn vread(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id, version)): FhirPath<(String, String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    let not_found = || ApiError::NotFound(format!("{resource_type}/{id} has no version '{version}'"));
    let number: u64 = version.parse().map_err(|_| not_found())?;
    let event = state.log.read_version(&key, number).await?.ok_or_else(not_found)?;
    respond_with_version(&state, &context, event, false).await
}

/// Answers a read or vread from a stored event, honouring conditional headers, `_summary`,
/// `_elements` and `_pretty` (a Binary from its bytes).
async fn respond_with_version(state: &AppState, context: &RequestContext, event: Event, conditional: bool) -> ApiResult<Response> {
    if event.operation == Operation::Delete {
        return Err(ApiError::Gone { version: event.version, deleted_at: event.recorded_at });
    }
    let interaction = if conditional { Interaction::Read } else { Interaction::Vread };
    context.principal.check_stored(interaction, &event.body)?;
    if conditional && not_modified(context, &event)? {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(with_version_headers(response, event.version, event.recorded_at));
    }
    if event.key.resource_type == "Binary" && context.param("_summary").is_none() && context.param("_elements").is_none() {
        return super::binary::respond(state, context, &event).await;
    }
    let mut body = view(context, event.body)?;
    if context.pretty {
        body = prettify(body);
    }
    Ok(with_version_headers(fhir_json_response(StatusCode::OK, body), event.version, event.recorded_at))
}

fn not_modified(context: &RequestContext, event: &Event) -> ApiResult<bool> {
    if let Some(tags) = context.header(header::IF_NONE_MATCH)? {
        return Ok(tags.split(',').any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(event.version)));
    }
    if let Some(since) = context.header(header::IF_MODIFIED_SINCE)? {
        let since = fhir_core::instant::parse_http_date(since)
            .ok_or_else(|| ApiError::invalid("If-Modified-Since must be an HTTP-date such as 'Tue, 02 Jan 2024 03:04:05 GMT'"))?;
        // HTTP dates have whole seconds; compare at that precision.
        return Ok(event.recorded_at.unix_timestamp() <= since.unix_timestamp());
    }
    Ok(false)
}

/// Applies `_summary` / `_elements` from the request to a stored body.
fn view(context: &RequestContext, body: Bytes) -> ApiResult<Bytes> {
    let summary = context
        .param("_summary")
        .map(|text| SummaryMode::parse(text).ok_or_else(|| ApiError::invalid("_summary must be one of true, text, data, count, false")))
        .transpose()?;
    if summary == Some(SummaryMode::Count) {
        return Err(ApiError::invalid("_summary=count applies to searches, not to a read"));
    }
    let elements: Vec<String> = context
        .param("_elements")
        .map(|list| list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    shape(body, summary, &elements)
}

pub(super) fn if_match(context: &RequestContext) -> ApiResult<Option<u64>> {
    context
        .header(header::IF_MATCH)?
        .map(|tag| parse_etag(tag).ok_or_else(|| ApiError::invalid("If-Match must be an ETag such as W/\"3\"")))
        .transpose()
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    if resource_type == "Binary" {
        return super::binary::update(&state, &context, &key, body).await;
    }
    let body = read_resource_body(&state, &context.headers, body).await?;
    let resource = parse_resource(&body, &resource_type)?;
    match resource.get("id") {
        Some(Value::String(body_id)) if *body_id == id => {}
        Some(_) => return Err(ApiError::BadRequest(vec![Issue::error(IssueType::Invalid, "the id in the body does not match the id in the URL").at("id")])),
        None => return Err(ApiError::BadRequest(vec![Issue::error(IssueType::Required, "an update must carry the resource id in the body").at("id")])),
    }
    update_resource(&state, &context, &key, resource, true).await
}

/// Writes `resource` as the next version of `key` (validated here). `allow_create` says whether
/// a missing resource may be created under this id.
pub async fn update_resource(state: &AppState, context: &RequestContext, key: &StreamKey, resource: Resource, allow_create: bool) -> ApiResult<Response> {
    validate(&resource, false)?;
    let update_create = state.config.update_create && allow_create;
    let written = write_with_retry(state, &context.principal, key, if_match(context)?, |latest| {
        match latest {
            None if !update_create => {
                Err(ApiError::MethodNotAllowed("this server does not let PUT create resources with client-chosen ids".into()))
            }
            Some(event) if event.operation != Operation::Delete && same_content(&resource, &event.body) => Ok(Plan::Nothing),
            _ => Ok(Plan::Put(resource.clone())),
        }
    })
    .await?;
    Ok(write_response(context, &key.resource_type, &key.id, written))
}

pub async fn patch(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    let patch = PatchDocument::read(&state, &context, body).await?;
    patch_resource(&state, &context, &key, &patch).await
}

/// Applies a patch to the current version of `key` and writes the result as the next one.
pub async fn patch_resource(state: &AppState, context: &RequestContext, key: &StreamKey, patch: &PatchDocument) -> ApiResult<Response> {
    let (resource_type, id) = (&key.resource_type, &key.id);
    let written = write_with_retry(state, &context.principal, key, if_match(context)?, |latest| {
        let current = match latest {
            None => return Err(ApiError::NotFound(format!("{resource_type}/{id} is not known"))),
            Some(event) if event.operation == Operation::Delete => {
                return Err(ApiError::Gone { version: event.version, deleted_at: event.recorded_at })
            }
            Some(event) => event,
        };
        let patched = patch.patched(&current.body, resource_type, id)?;
        Ok(Plan::Put(patched))
    })
    .await?;
    Ok(write_response(context, resource_type, id, written))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id)): FhirPath<(String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    let key = instance_key(&context.tenant, &resource_type, &id)?;
    delete_resource(&state, &context, &key).await
}

/// Deletes `key` (a delete of a deleted resource writes nothing).
pub async fn delete_resource(state: &AppState, context: &RequestContext, key: &StreamKey) -> ApiResult<Response> {
    let (resource_type, id) = (&key.resource_type, &key.id);
    let written = write_with_retry(state, &context.principal, key, if_match(context)?, |latest| match latest {
        None => Err(ApiError::NotFound(format!("{resource_type}/{id} is not known"))),
        Some(event) if event.operation == Operation::Delete => Ok(Plan::Nothing),
        Some(_) => Ok(Plan::Delete),
    })
    .await?;
    let message = match written.operation {
        Some(_) => format!("deleted {resource_type}/{id} (version {})", written.version),
        None => format!("{resource_type}/{id} was already deleted"),
    };
    let body = serde_json::to_vec(&operation_outcome(&[Issue::information(message)])).unwrap_or_default();
    let response = fhir_json_response(StatusCode::OK, body.into());
    Ok(with_version_headers(response, written.version, written.recorded_at))
}

/// The response to a create or update: 201 with `Location` when the resource is new, else 200;
/// the body as `Prefer: return=` asks.
pub fn write_response(context: &RequestContext, resource_type: &str, id: &str, written: Written) -> Response {
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = match context.prefer_return {
        PreferReturn::Minimal => Bytes::new(),
        PreferReturn::Representation if context.pretty => prettify(written.body),
        PreferReturn::Representation => written.body,
        PreferReturn::OperationOutcome => {
            let verb = if written.created { "created" } else { "updated" };
            let message = format!("{verb} {resource_type}/{id} (version {})", written.version);
            serde_json::to_vec(&operation_outcome(&[Issue::information(message)])).unwrap_or_default().into()
        }
    };
    let mut response = if body.is_empty() {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response
    } else {
        fhir_json_response(status, body)
    };
    if written.created {
        let location = format!("{}/{resource_type}/{id}/_history/{}", context.base_url, written.version);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    with_version_headers(response, written.version, written.recorded_at)
}
