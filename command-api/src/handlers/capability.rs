//! `GET [base]/metadata`: the CapabilityStatement, generated from what this server implements.
//! When an interaction is added, it is added here, and only then.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fhir_core::definitions::{SearchParamType, SearchParameter};
use fhir_core::search::registry;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::respond::{fhir_json_response, prettify};
use crate::state::{ApiConfig, AppState, Guides};

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

pub async fn metadata(State(state): State<Arc<AppState>>, context: RequestContext) -> ApiResult<Response> {
    let generations = (registry::generation(), state.guides.generation());
    let mut body = {
        let mut cached = state.capability_statement.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != generations {
            *cached = (generations, capability_statement(&state.config, &state.guides));
        }
        cached.1.clone()
    };
    if context.pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// Renders the CapabilityStatement for a configuration and the loaded guides: their
/// ImplementationGuides, their profiles of each type (`supportedProfile`; a single required
/// profile becomes the type's `profile`), and the custom search parameters in use.
pub fn capability_statement(config: &ApiConfig, guides: &Guides) -> Bytes {
    let conformance = guides.current();
    let profiles = conformance.resource_profiles();
    let interactions: Vec<Value> = TYPE_INTERACTIONS.iter().map(|code| json!({ "code": code })).collect();
    let resources: Vec<Value> = fhir_core::definitions::r4()
        .resource_types()
        .map(|resource_type| {
            let parameters: Vec<&SearchParameter> = searchable_parameters(resource_type).collect();
            let search_include: Vec<String> = parameters
                .iter()
                .filter(|p| p.kind == SearchParamType::Reference)
                .map(|p| format!("{resource_type}:{}", p.code))
                .collect();
            let mut operations = vec![json!({
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"
            })];
            if resource_type == "Patient" {
                operations.push(json!({
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                }));
                operations.push(json!({ "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export" }));
            }
            let mut supported_profiles = Vec::new();
            if resource_type == "Subscription" {
                supported_profiles.push("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription");
            }
            supported_profiles.extend(profiles.iter().filter(|(of, _)| *of == resource_type).map(|(_, url)| *url));
            let base_profile = match guides.required_for(resource_type) {
                [only] => only.clone(),
                _ => format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
            };
            if resource_type == "Group" {
                operations.push(json!({ "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export" }));
            }
            let mut entry = json!({
                "type": resource_type,
                "profile": base_profile,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": config.update_create,
                "conditionalCreate": true,
                "conditionalRead": "modified-since",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": search_include,
                "searchParam": parameters.iter().map(|p| search_param_json(p)).collect::<Vec<_>>(),
                "operation": operations
            });
            if !supported_profiles.is_empty() {
                entry["supportedProfile"] = json!(supported_profiles);
            }
            entry
        })
        .collect();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_core::instant::format_instant(fhir_core::instant::now()),
        "publisher": "fhir-server",
        "kind": "instance",
        "software": { "name": "fhir-server", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "Event-sourced FHIR R4 server",
            "url": config.public_base_url.clone().unwrap_or_else(|| config.base_path.clone())
        },
        "fhirVersion": "4.0.1",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "format": ["json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }, { "code": "history-system" }, { "code": "search-system" }],
            "compartment": fhir_core::definitions::r4()
                .compartment_types()
                .map(|c| format!("http://hl7.org/fhir/CompartmentDefinition/{}", c.to_ascii_lowercase()))
                .collect::<Vec<_>>(),
            "searchParam": searchable_parameters("Resource").map(search_param_json).collect::<Vec<_>>(),
            "operation": [{ "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export" }]
        }]
    });
    if !conformance.guides().is_empty() {
        statement["implementationGuide"] = json!(conformance.guides());
    }
    if let Some(smart) = &config.smart_configuration {
        statement["rest"][0]["security"] = security(smart);
    }
    serde_json::to_vec(&statement).map(Bytes::from).unwrap_or_default()
}

/// `rest.security` when SMART on FHIR is offered: the service, and the OAuth endpoints in the
/// extension the SMART App Launch guide names.
fn security(smart: &Value) -> Value {
    let mut uris = vec![
        json!({ "url": "authorize", "valueUri": smart["authorization_endpoint"] }),
        json!({ "url": "token", "valueUri": smart["token_endpoint"] }),
    ];
    for (name, field) in [("revoke", "revocation_endpoint"), ("introspect", "introspection_endpoint"), ("manage", "management_endpoint")] {
        if let Some(uri) = smart.get(field) {
            uris.push(json!({ "url": name, "valueUri": uri }));
        }
    }
    json!({
        "cors": true,
        "service": [{
            "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }],
            "text": "OAuth2 bearer tokens with SMART App Launch scopes (v1 and v2)"
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris
        }]
    })
}

/// `GET [base]/.well-known/smart-configuration`: the SMART discovery document (public), or 404
/// when the server does not offer SMART.
pub async fn smart_configuration(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let document = state.config.smart_configuration.as_ref().ok_or_else(|| {
        ApiError::NotFound("this server does not offer SMART on FHIR (configure [auth.smart])".into())
    })?;
    let mut response = axum::Json(document).into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("max-age=300"));
    Ok(response)
}

/// The parameters of a type (core and custom) that the search index answers: those with an
/// expression, except the `special` ones (`near`), plus `_id` and `_lastUpdated`.
fn searchable_parameters(resource_type: &str) -> impl Iterator<Item = &'static SearchParameter> {
    let all = if resource_type == "Resource" {
        registry::resource_level_parameters()
    } else {
        registry::search_parameters_for(resource_type)
    };
    all.into_iter().filter(|p| p.expression.is_some() && p.kind != SearchParamType::Special)
}

fn search_param_json(parameter: &SearchParameter) -> Value {
    json!({ "name": parameter.code, "definition": parameter.url, "type": parameter.kind.as_str() })
}
