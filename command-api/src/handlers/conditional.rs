//! Conditional create (`If-None-Exist`), update, patch and delete (`[type]?criteria`): the
//! criteria are a search that first waits for the index to catch up with every write acknowledged
//! before the request, and writes with the same criteria run one at a time, so identical
//! concurrent conditional creates make one resource. Zero, one and many matches get the
//! specification's outcomes; many is 412.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use event_log::{Event, ExpectedVersion, Operation, StreamKey};
use fhir_core::search::parse_search;
use fhir_core::{operation_outcome, Issue, IssueType};
use serde_json::Value;

use super::instance::{delete_resource, patch_resource, update_resource, write_response};
use super::search::run;
use super::{check_type, FhirPath};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{read_resource_body, RequestContext};
use crate::resource::{parse_resource, validate, Resource};
use crate::respond::{fhir_json_response, with_version_headers};
use crate::state::{AppState, SearchPageRequest};
use crate::write::append_one;

/// Parameters that are not criteria.
const NOT_CRITERIA: &[&str] = &["_format", "_pretty"];

/// The current resources matching `criteria` (at most two: enough to tell one from many).
/// Only what `principal` reaches can match (see [`crate::reach`]).
pub(crate) async fn matches(state: &AppState, principal: &Principal, tenant: &str, resource_type: &str, criteria: &[(String, String)]) -> ApiResult<Vec<Event>> {
    let criteria: Vec<(String, String)> = criteria.iter().filter(|(name, _)| !NOT_CRITERIA.contains(&name.as_str())).cloned().collect();
    if criteria.is_empty() {
        return Err(ApiError::PreconditionFailed("a conditional operation needs search criteria".into()));
    }
    // Unknown criteria would silently widen the match: they are errors here.
    let mut query = parse_search(vec![resource_type.to_string()], &criteria, true).map_err(ApiError::BadRequest)?;
    if query.criteria.is_empty() {
        return Err(ApiError::PreconditionFailed("a conditional operation needs search criteria".into()));
    }
    principal.bound_search(&mut query)?;
    query.count = 2;
    query.include.clear();
    query.revinclude.clear();
    let head = state.log.head().await?;
    if !state.search.wait_for(head, state.config.search_wait).await {
        return Err(ApiError::Unavailable("the search index has not caught up with earlier writes; retry shortly".into()));
    }
    let result = run(state, tenant, &query, SearchPageRequest::default()).await?;
    Ok(state.log.read_positions(&result.matches).await?)
}

pub(crate) fn lock_key(tenant: &str, resource_type: &str, criteria: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = criteria.iter().collect();
    sorted.sort();
    format!("{tenant}\u{0}{resource_type}\u{0}{sorted:?}")
}

fn too_many(resource_type: &str) -> ApiError {
    ApiError::PreconditionFailed(format!("the criteria match more than one {resource_type}"))
}

/// `POST [type]` with `If-None-Exist`.
pub async fn conditional_create(state: &AppState, context: &RequestContext, resource_type: &str, resource: Resource, if_none_exist: &str) -> ApiResult<Response> {
    let query = if_none_exist.split_once('?').map_or(if_none_exist, |(_, query)| query);
    let criteria: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let _guard = state.conditional_locks.lock(lock_key(&context.tenant, resource_type, &criteria)).await;
    let found = matches(state, &context.principal, &context.tenant, resource_type, &criteria).await?;
    match found.as_slice() {
        [] => {
            let id = uuid::Uuid::now_v7().to_string();
            let key = StreamKey::new(&context.tenant, resource_type, &id);
            let written = append_one(state, &context.principal, &key, ExpectedVersion::NoStream, Operation::Create, Some(resource)).await?;
            Ok(write_response(context, resource_type, &id, written))
        }
        [existing] => {
            // The specification: ignore the create, answer 200 with the existing resource.
            let response = fhir_json_response(StatusCode::OK, existing.body.clone());
            Ok(with_version_headers(response, existing.version, existing.recorded_at))
        }
        _ => Err(too_many(resource_type)),
    }
}

/// `PUT [type]?criteria`.
pub async fn conditional_update(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    let body = read_resource_body(&state, &context.headers, body).await?;
    let mut resource = parse_resource(&body, &resource_type)?;
    validate(&resource, false)?;
    let _guard = state.conditional_locks.lock(lock_key(&context.tenant, &resource_type, &context.params)).await;
    let found = matches(&state, &context.principal, &context.tenant, &resource_type, &context.params).await?;
    let body_id = resource.get("id").and_then(Value::as_str).map(String::from);
    match found.as_slice() {
        [] => match body_id {
            // No match and an id in the body: an update-as-create under that id.
            Some(id) => {
                let key = super::instance_key(&context.tenant, &resource_type, &id)?;
                update_resource(&state, &context, &key, resource, true).await
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                let key = StreamKey::new(&context.tenant, &resource_type, &id);
                let written = append_one(&state, &context.principal, &key, ExpectedVersion::NoStream, Operation::Create, Some(resource)).await?;
                Ok(write_response(&context, &resource_type, &id, written))
            }
        },
        [existing] => {
            if body_id.as_ref().is_some_and(|id| *id != existing.key.id) {
                return Err(ApiError::BadRequest(vec![
                    Issue::error(IssueType::Invalid, "the id in the body is not the id of the matching resource").at("id"),
                ]));
            }
            resource.insert("id".into(), Value::String(existing.key.id.clone()));
            update_resource(&state, &context, &existing.key, resource, false).await
        }
        _ => Err(too_many(&resource_type)),
    }
}

/// `PATCH [type]?criteria`.
pub async fn conditional_patch(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    let patch = crate::patch::PatchDocument::read(&state, &context, body).await?;
    let _guard = state.conditional_locks.lock(lock_key(&context.tenant, &resource_type, &context.params)).await;
    match matches(&state, &context.principal, &context.tenant, &resource_type, &context.params).await?.as_slice() {
        [] => Err(ApiError::NotFound(format!("no {resource_type} matches the criteria"))),
        [existing] => patch_resource(&state, &context, &existing.key, &patch).await,
        _ => Err(too_many(&resource_type)),
    }
}

/// `DELETE [type]?criteria`: deletes the one match; no match is fine; many is 412.
pub async fn conditional_delete(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    let _guard = state.conditional_locks.lock(lock_key(&context.tenant, &resource_type, &context.params)).await;
    match matches(&state, &context.principal, &context.tenant, &resource_type, &context.params).await?.as_slice() {
        [] => {
            let message = format!("no {resource_type} matches the criteria; nothing was deleted");
            let body = serde_json::to_vec(&operation_outcome(&[Issue::information(message)])).unwrap_or_default();
            Ok(fhir_json_response(StatusCode::OK, body.into()))
        }
        [existing] => delete_resource(&state, &context, &existing.key).await,
        _ => Err(too_many(&resource_type)),
    }
}
