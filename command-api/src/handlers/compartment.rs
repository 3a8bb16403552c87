//! Compartment search (`GET [base]/Patient/123/Observation?...`, or `*` for every member type)
//! and `GET [base]/Patient/123/$everything`: searches restricted to the resources that refer to
//! one resource through the parameters its CompartmentDefinition names.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use fhir_core::definitions::r4;
use fhir_core::search::CompartmentFilter;

use super::search::respond;
use super::{instance_key, FhirPath};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::state::AppState;

/// `POST [base]/[type]/[id]/$[operation]`: the instance operations that change something.
pub async fn instance_operation(
    State(state): State<Arc<AppState>>,
    FhirPath((resource_type, id, operation)): FhirPath<(String, String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    match (resource_type.as_str(), operation.as_str()) {
        ("Subscription", "$resend") => crate::subscriptions::resend(&state, &context, &id).await,
        _ => Err(ApiError::NotFound(format!("operation {operation} is not supported on a {resource_type} instance"))),
    }
}

/// `GET [base]/[compartment type]/[id]/[type or * or $everything]`.
pub async fn compartment_search(
    State(state): State<Arc<AppState>>,
    FhirPath((compartment_type, id, target)): FhirPath<(String, String, String)>,
    context: RequestContext,
) -> ApiResult<Response> {
    instance_key(&context.tenant, &compartment_type, &id)?;
    if target == "$everything" {
        return everything(&state, &context, &compartment_type, &id).await;
    }
    if compartment_type == "Subscription" && target == "$status" {
        return crate::subscriptions::status(&state, &context, &id).await;
    }
    if compartment_type == "Binary" && target == "$download-url" {
        return super::binary::download_url_route(&state, &context, &id).await;
    }
    if target.starts_with('$') {
        return Err(ApiError::NotFound(format!("operation {target} is not supported on a {compartment_type} instance")));
    }
    let members = member_types(&compartment_type)?;
    let types = if target == "*" {
        let mut all = members;
        if !all.contains(&compartment_type) {
            all.push(compartment_type.clone());
        }
        all
    } else if members.contains(&target) || target == compartment_type {
        vec![target.clone()]
    } else if r4().is_resource_type(&target) {
        return Err(ApiError::invalid(format!("{target} is not in the {compartment_type} compartment")));
    } else {
        return Err(ApiError::NotFound(format!("'{target}' is not a FHIR R4 resource type")));
    };
    // The compartment's own resource is in it (the compartment has its identity).
    let include_self = types.contains(&compartment_type);
    let compartment = CompartmentFilter::new(&compartment_type, &id, &types, include_self);
    let path = format!("{compartment_type}/{id}/{target}");
    respond(&state, &context, types, context.params.clone(), &path, compartment).await
}

/// `Patient/[id]/$everything`: the patient, every resource in its compartment, and the resources
/// those refer to (`_include=*`), paged like a search. `_since` keeps resources updated at or
/// after an instant, `_type` limits the types; `start`/`end` are not supported and reported.
async fn everything(state: &AppState, context: &RequestContext, compartment_type: &str, id: &str) -> ApiResult<Response> {
    if compartment_type != "Patient" {
        return Err(ApiError::NotFound(format!("operation $everything is not supported on {compartment_type}")));
    }
    let key = instance_key(&context.tenant, compartment_type, id)?;
    match state.log.read_latest(&key).await? {
        Some(event) if event.operation != event_log::Operation::Delete => {}
        _ => return Err(ApiError::NotFound(format!("{compartment_type}/{id} is not known"))),
    }
    let mut types = member_types(compartment_type)?;
    if !types.iter().any(|t| t == compartment_type) {
        types.push(compartment_type.to_string());
    }
    let mut params = Vec::new();
    for (name, value) in &context.params {
        match name.as_str() {
            "_since" => params.push(("_lastUpdated".to_string(), format!("ge{value}"))),
            "_type" => {
                let wanted: Vec<&str> = value.split(',').map(str::trim).collect();
                if let Some(unknown) = wanted.iter().find(|t| !types.iter().any(|member| member == *t)) {
                    return Err(ApiError::invalid(format!("_type: '{unknown}' is not in the {compartment_type} compartment")));
                }
                types.retain(|member| wanted.contains(&member.as_str()));
                params.push((name.clone(), value.clone()));
            }
            "start" | "end" => {
                return Err(ApiError::invalid(format!(
                    "$everything parameter {name} (care dates) is not supported by this server; use _since or a compartment search with a date parameter"
                )))
            }
            _ => params.push((name.clone(), value.clone())),
        }
    }
    if !params.iter().any(|(name, _)| name == "_include") {
        params.push(("_include".to_string(), "*".to_string()));
    }
    let compartment = CompartmentFilter::new(compartment_type, id, &types, types.iter().any(|t| t == compartment_type));
    let path = format!("{compartment_type}/{id}/$everything");
    respond(state, context, types, params, &path, compartment).await
}

/// The resource types in the compartment of `compartment_type`; 404 when it defines none.
fn member_types(compartment_type: &str) -> ApiResult<Vec<String>> {
    let members = r4().compartment_members(compartment_type);
    if members.is_empty() {
        return Err(ApiError::NotFound(format!("{compartment_type} defines no compartment")));
    }
    Ok(members.iter().map(|(member, _)| member.clone()).collect())
}
