//! Type-level interactions: create and `$validate`, and `POST [base]` for batch/transaction.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use event_log::{ExpectedVersion, Operation, StreamKey};
use fhir_core::{operation_outcome, Issue, IssueType};
use serde_json::Value;

use super::{check_type, instance::write_response, FhirPath};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{read_resource_body, RequestContext};
use crate::resource::{parse_json, parse_resource, validate};
use crate::respond::{fhir_json_response, prettify};
use crate::state::AppState;
use crate::write::append_one;

pub async fn create(
    State(state): State<Arc<AppState>>,
    FhirPath(resource_type): FhirPath<String>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    if resource_type == "Binary" && context.headers.get("if-none-exist").is_none() {
        return super::binary::create(&state, &context, body).await;
    }
    let body = read_resource_body(&state, &context.headers, body).await?;
    let resource = parse_resource(&body, &resource_type)?;
    validate(&resource, false)?;
    if let Some(criteria) = context.header(axum::http::HeaderName::from_static("if-none-exist"))? {
        return super::conditional::conditional_create(&state, &context, &resource_type, resource, criteria).await;
    }
    // The server assigns the id; one in the body is ignored, as the specification says. Ids are
    // time-ordered (UUIDv7) so that new streams land on the same index pages of the log.
    let id = uuid::Uuid::now_v7().to_string();
    let key = StreamKey::new(&context.tenant, &resource_type, &id);
    let written = append_one(&state, &context.principal, &key, ExpectedVersion::NoStream, Operation::Create, Some(resource)).await?;
    Ok(write_response(&context, &resource_type, &id, written))
}

/// `POST [base]/[type]/$[operation]`: the route shares its shape with `POST [type]/[id]`, which
/// is not an interaction, so anything but a known operation is 405.
pub async fn operation(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, operation)): FhirPath<(String, String)>,
    context: RequestContext,
    body: Body,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    match operation.as_str() {
        "$validate" => validate_operation(&state, &resource_type, &context, body).await,
        "$upload-url" if resource_type == "Binary" => super::binary::upload_url(&state, &context, body).await,
        "_search" => super::search::type_search_post(&state, &resource_type, &context, body).await,
        name if name.starts_with('$') => Err(ApiError::NotFound(format!("operation {name} is not supported on {resource_type}"))),
        _ => Err(ApiError::MethodNotAllowed("POST is not allowed on a resource instance; use PUT to update".into())),
    }
}

/// `$validate`: 200 with an OperationOutcome listing every issue (or "All OK"), whether or not the
/// resource is valid. The body is the resource itself or a Parameters resource with a `resource`
/// (and optionally a `profile`). The resource is checked against R4, against the loaded profiles
/// it claims or the configuration requires, and against `profile` (a query parameter or a
/// Parameters part) when given: an unknown profile is an error issue.
async fn validate_operation(state: &AppState, resource_type: &str, context: &RequestContext, body: Body) -> ApiResult<Response> {
    let body = read_resource_body(state, &context.headers, body).await?;
    let value = parse_json(&body)?;
    let mut profile = context.params.iter().find(|(name, _)| name == "profile").map(|(_, value)| value.clone());
    let resource = if value.get("resourceType").and_then(Value::as_str) == Some("Parameters") && resource_type != "Parameters" {
        let parameters = value.get("parameter").and_then(Value::as_array);
        let named = |name: &str| parameters.and_then(|parameters| parameters.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name)));
        if let Some(url) = named("profile").and_then(|p| p.get("valueUri").or_else(|| p.get("valueCanonical"))).and_then(Value::as_str) {
            profile = Some(url.to_string());
        }
        named("resource").and_then(|parameter| parameter.get("resource")).cloned().ok_or_else(|| ApiError::invalid("the Parameters resource has no 'resource' parameter"))?
    } else {
        value
    };
    let issues = match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found != resource_type => vec![Issue::error(
            IssueType::Invalid,
            format!("resourceType '{found}' does not match the type in the URL ({resource_type})"),
        )
        .at("resourceType")],
        _ => {
            // The named profile is checked as a required one: once, even if also claimed.
            let mut profiles = state.guides.required_for(resource_type).to_vec();
            profiles.extend(profile);
            let mut issues = fhir_core::validation::validate_resource(&resource);
            issues.extend(state.guides.current().validate_claimed(&resource, &profiles));
            issues
        }
    };
    let mut body = serde_json::to_vec(&operation_outcome(&issues)).unwrap_or_default().into();
    if context.pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// `POST [base]`: a batch or transaction Bundle.
pub async fn bundle(State(state): State<Arc<AppState>>, context: RequestContext, body: Body) -> ApiResult<Response> {
    let body = read_resource_body(&state, &context.headers, body).await?;
    crate::transaction::process(&state, &context, &body).await
}
