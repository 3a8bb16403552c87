//! The HTTP routes of the FHIR API and their handlers, one file per family of interactions.

pub(crate) mod binary;
mod blob;
pub(crate) mod bundle;
mod capability;
mod compartment;
pub(crate) mod conditional;
mod export;
mod history;
mod instance;
mod search;
mod type_level;

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use event_log::StreamKey;
use serde::de::DeserializeOwned;

pub use capability::capability_statement;

use crate::error::{ApiError, ApiResult};
use crate::resource::is_valid_id;
use crate::state::AppState;

/// The FHIR API routes, mounted under the configured base path.
pub fn routes(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/metadata", get(capability::metadata))
        .route("/.well-known/smart-configuration", get(capability::smart_configuration))
        .route("/_history", get(history::system_history))
        .route("/$audit", get(crate::audit::query))
        .route("/_blob/{*key}", get(blob::download).put(blob::upload))
        .route("/$export", get(export::system).post(export::system))
        .route("/$install-package", axum::routing::post(crate::guides::install))
        .route("/$export-status/{id}", get(export::status).delete(export::cancel))
        .route("/Patient/$export", get(export::patient).post(export::patient))
        .route("/Group/{id}/$export", get(export::group).post(export::group))
        .route("/", get(search::system_search).post(type_level::bundle))
        .route(
            "/{type}",
            get(search::type_search)
                .post(type_level::create)
                .put(conditional::conditional_update)
                .patch(conditional::conditional_patch)
                .delete(conditional::conditional_delete),
        )
        .route("/{type}/_history", get(history::type_history))
        .route(
            "/{type}/{id}",
            get(instance::read).put(instance::update).delete(instance::delete).patch(instance::patch).post(type_level::operation),
        )
        .route("/{type}/{id}/_history", get(history::instance_history))
        .route("/{type}/{id}/{compartment}", get(compartment::compartment_search).post(compartment::instance_operation))
        .route("/{type}/{id}/_history/{version}", get(instance::vread))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn(crate::access::authorize))
        .route_layer(axum::middleware::from_fn(log_request))
        .with_state(state.clone());
    let base_path = state.config.base_path.trim_end_matches('/');
    let router = if base_path.is_empty() {
        api
    } else {
        // `[base]/` is the base too (system search, bundles).
        Router::new()
            .route(&format!("{base_path}/"), get(search::system_search).post(type_level::bundle))
            .with_state(state.clone())
            .nest(base_path, api)
    };
    router.fallback(not_found).layer(axum::middleware::from_fn_with_state(state, crate::auth::authenticate))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no FHIR interaction at this URL".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this HTTP method is not allowed at this URL".into())
}

/// One log line per request: method, route template, status and latency. Never the URL itself,
/// whose ids and query values may identify a patient.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %route, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    response
}

/// A path extractor whose failures are OperationOutcomes, not plain-text rejections.
pub struct FhirPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for FhirPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| FhirPath(value))
            .map_err(|_| ApiError::invalid("the URL path could not be decoded"))
    }
}

/// Checks that a resource type exists in R4.
pub fn check_type(resource_type: &str) -> ApiResult<()> {
    if fhir_core::definitions::r4().is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("'{resource_type}' is not a FHIR R4 resource type")))
    }
}

/// Checks the type and id of an instance URL and builds its stream key.
pub fn instance_key(tenant: &str, resource_type: &str, id: &str) -> ApiResult<StreamKey> {
    check_type(resource_type)?;
    if !is_valid_id(id) {
        return Err(ApiError::invalid("the id in the URL is not a valid FHIR id ([A-Za-z0-9-.]{1,64})"));
    }
    Ok(StreamKey::new(tenant, resource_type, id))
}
