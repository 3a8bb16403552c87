//! The FHIR REST API (axum). Writes (create, update, patch, delete) are validated, turned into
//! resource-version events and appended to the log with optimistic concurrency; reads and vreads
//! are answered from the log itself, so a client always reads its own writes; `_history` comes
//! from the history projection, after waiting (bounded) for it to catch up.
//!
//! Layout:
//! - [`state`]: shared state, settings, and the read-model ports the binary wires in;
//!   [`auth`]: the caller, and the authentication port; [`access`]: what the caller may do, and [`reach`]: which resources (a SMART patient
//!   context, query-restricted scopes);
//!   [`tenancy`]: the tenant of a request when multi-tenancy is on; [`audit`]: one record per
//!   request, and `$audit`.
//! - [`negotiate`]: query parameters, formats, `Prefer`, body media type and size.
//! - [`resource`]: parse, validate and stamp request resources; [`patch`]: JSON Patch and
//!   FHIRPath Patch bodies.
//! - [`write`]: the optimistic write path with retries; [`locks`]: per-criteria locks for
//!   conditional writes.
//! - [`handlers`]: the routes and one file per family of interactions; [`transaction`]: batch
//!   and transaction Bundles; [`subscriptions`]: Subscriptions checked as they are written, and
//!   their `$status` and `$resend`.
//! - [`respond`] and [`error`]: response building, and the one place errors become statuses.

pub mod access;
pub mod audit;
pub mod auth;
pub mod error;
pub mod guides;
pub mod handlers;
pub mod locks;
pub mod negotiate;
pub mod patch;
pub mod reach;
pub mod resource;
pub mod respond;
pub mod state;
pub mod subscriptions;
pub mod tenancy;
pub mod transaction;
pub mod write;

use std::sync::Arc;

use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;
pub use state::{ApiConfig, AppState, HistoryIndex, SearchBackend, SearchFailure, SearchPageRequest, SearchResult};

/// The API's router over its state (which callers inside the process may also use directly).
pub fn router_for(state: Arc<AppState>) -> Router {
    let routes = handlers::routes(state.clone()).layer(CatchPanicLayer::custom(|_| {
        axum::response::IntoResponse::into_response(ApiError::Internal("a request handler panicked".into()))
    }));
    // The tenant comes out of the path before the routes see it.
    let routes = match state.config.multi_tenancy {
        true => Router::new().fallback_service(routes).layer(axum::middleware::from_fn_with_state(state.clone(), tenancy::route)),
        false => routes,
    };
    routes.layer(axum::middleware::from_fn_with_state(state, audit::layer))
}
