//! Building FHIR HTTP responses: content type, ETag, Last-Modified, Location, `_pretty`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use fhir_core::summary::{select_elements, summarize, SummaryMode};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{ApiError, ApiResult};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub fn fhir_json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// Parses an ETag value (`W/"3"`, `"3"` or `3`) into a version number.
pub fn parse_etag(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    value.parse().ok()
}

/// Adds `ETag` and `Last-Modified` for a version.
pub fn with_version_headers(mut response: Response, version: u64, last_modified: OffsetDateTime) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(version));
    if let Ok(value) = HeaderValue::from_str(&fhir_core::instant::http_date(last_modified)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    response
}

/// Applies `_summary` / `_elements` to a stored body; returns it untouched when neither is asked.
pub fn shape(body: Bytes, summary: Option<SummaryMode>, elements: &[String]) -> ApiResult<Bytes> {
    if summary.is_none() && elements.is_empty() {
        return Ok(body);
    }
    let resource: Value = serde_json::from_slice(&body).map_err(|_| ApiError::Internal("a stored body is not JSON".into()))?;
    let resource = match summary {
        Some(mode) => summarize(&resource, mode),
        None => resource,
    };
    let resource = if elements.is_empty() {
        resource
    } else {
        let names: Vec<&str> = elements.iter().map(String::as_str).collect();
        select_elements(&resource, &names)
    };
    serde_json::to_vec(&resource).map(Bytes::from).map_err(|error| ApiError::Internal(error.to_string()))
}

/// Re-serializes JSON text with indentation for `_pretty=true`; returns the input if it is not JSON.
pub fn prettify(body: Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => serde_json::to_vec_pretty(&value).map(Bytes::from).unwrap_or(body),
        Err(_) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip() {
        assert_eq!(etag(3), "W/\"3\"");
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
