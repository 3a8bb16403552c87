//! Runs one bundle entry as an HTTP request through the API's own router, so that batch entries
//! and the reads of a transaction behave exactly like the same requests sent one by one.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method as HttpMethod, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::entry::{BundleEntry, Method};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;

/// What the API answered to one entry.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub etag: Option<String>,
    /// `Last-Modified` as an HTTP date.
    pub last_modified: Option<String>,
    pub body: Bytes,
}

/// Request headers passed on from the bundle's own request to each entry.
const INHERITED: &[HeaderName] = &[header::HOST, header::ACCEPT];

/// Sends `entry` (with `body` of `content_type`, if any) to `router` under `base_path`, as a
/// request of the bundle's caller.
pub async fn dispatch(
    router: &Router,
    base_path: &str,
    context: &RequestContext,
    entry: &BundleEntry,
    body: Option<(&str, Bytes)>,
) -> ApiResult<Answer> {
    let method = match entry.method {
        Method::Delete => HttpMethod::DELETE,
        Method::Post => HttpMethod::POST,
        Method::Put => HttpMethod::PUT,
        Method::Patch => HttpMethod::PATCH,
        Method::Get => HttpMethod::GET,
        Method::Head => HttpMethod::HEAD,
    };
    let uri = format!("{base_path}/{}", entry.url);
    let mut request = Request::builder().method(method).uri(uri.as_str());
    let headers = request.headers_mut().ok_or_else(|| ApiError::invalid("request.url is not a valid URL"))?;
    for name in INHERITED {
        if let Some(value) = context.headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    for (prefer, value) in context.headers.get_all("prefer").iter().map(|v| ("prefer", v)) {
        headers.append(prefer, value.clone());
    }
    let mut set = |name: &'static str, value: Option<String>| -> ApiResult<()> {
        if let Some(value) = value {
            let value = HeaderValue::from_str(&value).map_err(|_| ApiError::invalid(format!("the entry's {name} is not a valid header value")))?;
            headers.insert(name, value);
        }
        Ok(())
    };
    set("if-match", entry.if_match.map(|version| format!("W/\"{version}\"")))?;
    set("if-none-match", entry.if_none_match.clone())?;
    set("if-modified-since", entry.if_modified_since.clone())?;
    set(
        "if-none-exist",
        entry.if_none_exist.as_ref().map(|criteria| form_urlencoded::Serializer::new(String::new()).extend_pairs(criteria).finish()),
    )?;
    let mut request = match body {
        Some((content_type, bytes)) => {
            set("content-type", Some(content_type.to_string()))?;
            request.body(Body::from(bytes))
        }
        None => request.body(Body::empty()),
    }
    .map_err(|_| ApiError::invalid("request.url is not a valid URL"))?;
    // The bundle's caller, already authenticated, in the bundle's tenant.
    request.extensions_mut().insert(context.principal.clone());
    request.extensions_mut().insert(crate::tenancy::Tenant(context.tenant.clone()));
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|error| ApiError::Internal(format!("an entry's response could not be read: {error}")))?.to_bytes();
    let header_text = |name: HeaderName| parts.headers.get(name).and_then(|value| value.to_str().ok()).map(String::from);
    Ok(Answer {
        status: parts.status,
        location: header_text(header::LOCATION).or_else(|| header_text(header::CONTENT_LOCATION)),
        etag: header_text(header::ETAG),
        last_modified: header_text(header::LAST_MODIFIED),
        body,
    })
}
