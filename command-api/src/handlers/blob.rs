//! `GET` and `PUT [base]/_blob/{key}?expires=..&signature=..`: the server's own signed, expiring
//! blob URLs (embedded mode; in AWS mode the URLs are S3's). The signature is the permission: the
//! route needs no token, and refuses a wrong or expired one with 403. A signature names its
//! method: a download URL cannot upload. Uploads go only to Binary contents, up to
//! `max_binary_bytes`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::state::AppState;

/// Checks the link's signature for `method` on `key`.
fn check(state: &AppState, context: &RequestContext, method: &str, key: &str) -> ApiResult<()> {
    let signer = state.blobs.signer.as_ref().ok_or_else(|| ApiError::NotFound("this server does not serve blobs itself".into()))?;
    let expires: u64 = context.param("expires").and_then(|value| value.parse().ok()).ok_or_else(|| ApiError::Forbidden("the link has no valid expiry".into()))?;
    let signature = context.param("signature").ok_or_else(|| ApiError::Forbidden("the link is not signed".into()))?;
    signer.verify(method, key, expires, signature).map_err(|refused| ApiError::Forbidden(refused.to_string()))
}

pub async fn upload(State(state): State<Arc<AppState>>, Path(key): Path<String>, context: RequestContext, body: Body) -> ApiResult<Response> {
    check(&state, &context, "PUT", &key)?;
    if !key.starts_with("binary/") {
        return Err(ApiError::Forbidden("only Binary contents are uploaded here".into()));
    }
    let content_type = context.header(header::CONTENT_TYPE)?.unwrap_or("application/octet-stream").to_string();
    super::binary::store_at(&state, &key, &content_type, body).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

pub async fn download(State(state): State<Arc<AppState>>, Path(key): Path<String>, context: RequestContext) -> ApiResult<Response> {
    check(&state, &context, "GET", &key)?;
    let blob = state
        .blobs
        .store
        .get(&key)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .ok_or_else(|| ApiError::NotFound("the file no longer exists".into()))?;
    let mut response = Response::new(Body::from_stream(blob.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&blob.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    headers.insert(header::HeaderName::from_static("content-security-policy"), HeaderValue::from_static("sandbox"));
    headers.insert(header::HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    Ok(response)
}
