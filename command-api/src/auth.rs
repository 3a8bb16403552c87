//! Who is calling, as the API sees it. The binary wires an [`Authenticator`] in; a layer runs it
//! before every route except `metadata` and `.well-known/smart-configuration` (public
//! discovery) and `_blob` (signed URLs) and puts the
//! [`Principal`] in the request, where [`crate::negotiate::RequestContext`] picks it up. The
//! entries of a bundle run as requests of the same principal, without checking again.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::access::{AllowAll, Grants};
use crate::error::ApiError;
use crate::state::AppState;

/// The caller of a request.
#[derive(Clone)]
pub struct Principal {
    /// Recorded as the actor of the events it writes: the token's `sub`, or `anonymous`
    /// without authentication, or `system` for the server's own tools.
    pub actor: String,
    /// The verified token's claims (empty without one).
    pub claims: Map<String, Value>,
    /// What the caller may do (see [`crate::access`]).
    pub grants: Arc<dyn Grants>,
    /// The one tenant the caller may use (from its token); `None`: any (no authentication).
    pub tenant: Option<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal { actor: "anonymous".into(), claims: Map::new(), grants: Arc::new(AllowAll), tenant: None }
    }

    /// The server's own tools (such as `import`) calling the API inside the process.
    pub fn system() -> Self {
        Principal { actor: "system".into(), claims: Map::new(), grants: Arc::new(AllowAll), tenant: None }
    }
}

/// Why a request was not authenticated.
#[derive(Debug)]
pub enum AuthFailure {
    /// 401: no credentials, or credentials that do not check out (says which check failed).
    Unauthenticated(String),
    /// 503: the credentials cannot be checked now (the issuer's keys cannot be had).
    Unavailable(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure>;
}

/// No authentication: every caller is anonymous.
pub struct Anonymous;

#[async_trait]
impl Authenticator for Anonymous {
    async fn authenticate(&self, _headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        Ok(Principal::anonymous())
    }
}

/// The layer: authenticates the request, or answers 401 (503) with an OperationOutcome.
pub(crate) async fn authenticate(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let already = request.extensions().get::<Principal>().is_some();
    if already || is_public(&state, request.uri().path()) {
        return next.run(request).await;
    }
    match state.authenticator.authenticate(request.headers()).await {
        Ok(principal) => {
            if let Some(slot) = request.extensions().get::<crate::audit::AuditSlot>() {
                slot.set_actor(&principal.actor);
            }
            if let Err(denied) = crate::tenancy::check(&principal, request.extensions().get::<crate::tenancy::Tenant>()) {
                return denied.into_response();
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(failure) => ApiError::from(failure).into_response(),
    }
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::Unauthenticated(why) => ApiError::Unauthorized(why),
            AuthFailure::Unavailable(why) => ApiError::Unavailable(why),
        }
    }
}

fn is_public(state: &AppState, path: &str) -> bool {
    let base_path = state.config.base_path.trim_end_matches('/');
    path.strip_prefix(base_path)
        .is_some_and(|rest| rest == "/metadata" || rest == "/.well-known/smart-configuration" || rest.starts_with("/_blob/"))
}
