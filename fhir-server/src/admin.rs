//! Operations of the server itself, beside the FHIR API: `POST [base]/$reindex` starts a rebuild
//! of the search index by replay (answered 202 at once; searches go on meanwhile) and
//! `GET [base]/$reindex` reports its progress as a Parameters resource.
//!
//! Callers are authenticated as the API's are. A rebuild is for those who may create
//! SearchParameters (which start one themselves), with a token bounded to no patient, query or
//! tenant: it rebuilds the index of every tenant.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use command_api::access::Interaction;
use command_api::error::{ApiError, ApiResult};
use serde_json::json;

use crate::search_slot::SearchSlot;

#[derive(Clone)]
struct Admin {
    api: Arc<command_api::AppState>,
    slot: Arc<SearchSlot>,
}

pub fn routes(base_path: &str, api: Arc<command_api::AppState>, slot: Arc<SearchSlot>) -> Router {
    Router::new().route(&format!("{base_path}/$reindex"), get(status).post(start)).with_state(Admin { api, slot })
}

fn fhir_json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")], body.to_string()).into_response()
}

/// The caller, if it may rebuild the index (progress is shown to the same callers).
async fn authorize(admin: &Admin, headers: &HeaderMap) -> ApiResult<()> {
    let principal = admin.api.authenticator.authenticate(headers).await?;
    principal.require_one(Interaction::Create, "SearchParameter")?;
    // With multi-tenancy, a token of one tenant may not rebuild every tenant's index.
    let of_a_tenant = admin.api.config.multi_tenancy && principal.tenant.as_deref().is_some_and(|tenant| !tenant.is_empty());
    if principal.is_bounded() || of_a_tenant {
        return Err(ApiError::Forbidden("rebuilding the search index is for administrators; this token is bounded to a patient, a query or a tenant".into()));
    }
    Ok(())
}

async fn start(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&admin, &headers).await {
        return denied.into_response();
    }
    if !admin.slot.begin_reindex() {
        return fhir_json(
            StatusCode::CONFLICT,
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict", "diagnostics": "a reindex is already running"}]}),
        );
    }
    let running = admin.slot.clone();
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

async fn status(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&admin, &headers).await {
        return denied.into_response();
    }
    let status = admin.slot.status();
    fhir_json(
        StatusCode::OK,
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "state", "valueCode": status.state},
            {"name": "position", "valueInteger64": status.position.to_string()},
            {"name": "head", "valueInteger64": status.head.to_string()}
        ]}),
    )
}
