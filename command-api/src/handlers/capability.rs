//! `GET [base]/metadata`: the CapabilityStatement, generated from what this server implements.
//! When an interaction is added, it is added here, and only then.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::negotiate::RequestContext;
use crate::respond::{fhir_json_response, prettify};
use crate::state::{ApiConfig, AppState};

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"];

pub async fn metadata(State(state): State<Arc<AppState>>, context: RequestContext) -> ApiResult<Response> {
    let mut body = state.capability_statement.clone();
    if context.pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}

/// Renders the CapabilityStatement for a configuration.
pub fn capability_statement(config: &ApiConfig) -> Bytes {
    let interactions: Vec<Value> = TYPE_INTERACTIONS.iter().map(|code| json!({ "code": code })).collect();
    let resources: Vec<Value> = fhir_core::definitions::r4()
        .resource_types()
        .map(|resource_type| {
            json!({
                "type": resource_type,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": config.update_create,
                "conditionalCreate": false,
                "conditionalRead": "modified-since",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"
                }]
            })
        })
        .collect();
    let statement = json!({
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
        "format": ["json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "history-system" }]
        }]
    });
    serde_json::to_vec(&statement).map(Bytes::from).unwrap_or_default()
}
