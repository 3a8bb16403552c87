//! Pooled multi-tenancy. When it is on, every route lives under `[base]/tenant/{tenantId}/`:
//! a layer in front of the routes checks the tenant id (`[A-Za-z0-9_-]{1,64}`), takes the
//! `tenant/{id}` segments out of the path and puts the [`Tenant`] in the request, where
//! [`crate::negotiate::RequestContext`] makes it the tenant of every key the request reads or
//! writes and part of every URL it answers with. The caller's own tenant (a token claim) must
//! be that tenant ([`check`]). `[base]/metadata` stays public and tenant-free.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The tenant of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

/// Whether `id` may name a tenant.
pub fn is_valid_tenant(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The layer: `[base]/tenant/{id}/rest` becomes `[base]/rest` with [`Tenant`]`(id)`.
pub(crate) async fn route(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let base_path = state.config.base_path.trim_end_matches('/').to_string();
    let path = request.uri().path().to_string();
    let Some(after_base) = path.strip_prefix(&base_path) else { return not_found() };
    if after_base == "/metadata" {
        return next.run(request).await;
    }
    let Some(rest) = after_base.strip_prefix("/tenant/") else { return not_found() };
    let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_valid_tenant(id) {
        return ApiError::invalid("a tenant id is 1 to 64 letters, digits, '_' or '-'").into_response();
    }
    let query = request.uri().query().map(|query| format!("?{query}")).unwrap_or_default();
    let Ok(uri) = format!("{base_path}/{rest}{query}").parse::<Uri>() else { return not_found() };
    *request.uri_mut() = uri;
    if let Some(slot) = request.extensions().get::<crate::audit::AuditSlot>() {
        slot.set_tenant(id);
    }
    request.extensions_mut().insert(Tenant(id.to_string()));
    next.run(request).await
}

fn not_found() -> Response {
    ApiError::NotFound("this server is multi-tenant: the FHIR base is [base]/tenant/{tenantId}".into()).into_response()
}

/// A caller bound to a tenant may only use that tenant.
pub fn check(principal: &Principal, tenant: Option<&Tenant>) -> ApiResult<()> {
    match (&principal.tenant, tenant) {
        (Some(own), Some(Tenant(asked))) if own != asked => Err(ApiError::Forbidden("the caller belongs to another tenant".into())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert!(is_valid_tenant("clinic-1_A"));
        assert!(is_valid_tenant(&"a".repeat(64)));
        assert!(!is_valid_tenant(&"a".repeat(65)));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("a.b"));
        assert!(!is_valid_tenant("a%2Fb"));
    }
}
