//! Operations of the server itself, beside the FHIR API: `POST [base]/$reindex` starts a rebuild
//! of the search index by replay (answered 202 at once; searches go on meanwhile) and
//! `GET [base]/$reindex` reports its progress as a Parameters resource. There is no
//! authorization yet: like the rest of the server, keep it on loopback.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::search_slot::SearchSlot;

pub fn routes(base_path: &str, slot: Arc<SearchSlot>) -> Router {
    Router::new().route(&format!("{base_path}/$reindex"), get(status).post(start)).with_state(slot)
}

fn fhir_json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")], body.to_string()).into_response()
}

async fn start(State(slot): State<Arc<SearchSlot>>) -> Response {
    if !slot.begin_reindex() {
        return fhir_json(
            StatusCode::CONFLICT,
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict", "diagnostics": "a reindex is already running"}]}),
        );
    }
    let running = slot.clone();
    tokio::spawn(async move {
        if let Err(error) = running.reindex().await {
            tracing::error!(error = %format!("{error:#}"), "reindex failed");
        }
    });
    fhir_json(
        StatusCode::ACCEPTED,
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": "reindex started; GET $reindex for progress"}]}),
    )
}

async fn status(State(slot): State<Arc<SearchSlot>>) -> Response {
    let status = slot.status();
    fhir_json(
        StatusCode::OK,
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "state", "valueCode": status.state},
            {"name": "position", "valueInteger64": status.position.to_string()},
            {"name": "head", "valueInteger64": status.head.to_string()}
        ]}),
    )
}
