//! What a request asks for besides its path: query parameters, the response format (`_format`,
//! `Accept`, `_pretty`), `Prefer: return=`, the base URL, and the body with its media type and size.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::auth::Principal;
use crate::tenancy::Tenant;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `Prefer: return=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreferReturn {
    Minimal,
    Representation,
    OperationOutcome,
}

/// Everything a handler needs from the request line and headers.
pub struct RequestContext {
    /// Decoded query parameters in request order.
    pub params: Vec<(String, String)>,
    pub pretty: bool,
    pub prefer_return: PreferReturn,
    /// The absolute base URL of the FHIR API, e.g. `http://127.0.0.1:8080/fhir`.
    pub base_url: String,
    pub headers: HeaderMap,
    pub tenant: String,
    pub principal: Principal,
}

impl RequestContext {
    /// The context of a call from inside the process (e.g. `fhir-server import`) rather than
    /// over HTTP: no query, no headers, the default tenant, answers as `prefer_return` says.
    pub fn internal(state: &AppState, prefer_return: PreferReturn) -> Self {
        RequestContext {
            params: Vec::new(),
            pretty: false,
            prefer_return,
            base_url: base_url(state, &HeaderMap::new()),
            headers: HeaderMap::new(),
            tenant: state.config.default_tenant.clone(),
            principal: Principal::system(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Whether a `Prefer` header carries `token` (e.g. `handling=strict`, `read-your-writes`).
    pub fn prefers(&self, token: &str) -> bool {
        self.headers
            .get_all("prefer")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split([',', ';']))
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    }

    pub fn header(&self, name: header::HeaderName) -> ApiResult<Option<&str>> {
        match self.headers.get(&name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(Some)
                .map_err(|_| ApiError::invalid(format!("header {name} is not valid text"))),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        let params: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|query| form_urlencoded::parse(query.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let format = params.iter().find(|(key, _)| key == "_format").map(|(_, value)| value.as_str());
        // Binary contents and blobs are served in their own media types.
        let base_path = state.config.base_path.trim_end_matches('/');
        // Inside the base path's router the path has lost its prefix; outside, it still has it.
        let path = parts.uri.path();
        let rest = path.strip_prefix(base_path).filter(|rest| rest.starts_with('/')).unwrap_or(path);
        let raw = rest.starts_with("/Binary") || rest.starts_with("/_blob/");
        match format {
            Some(format) => check_format_parameter(format)?,
            None if raw => {}
            None => check_accept(&parts.headers)?,
        }
        let pretty = match params.iter().find(|(key, _)| key == "_pretty").map(|(_, v)| v.as_str()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::invalid("parameter _pretty must be true or false")),
        };
        let prefer_return = parse_prefer_return(&parts.headers);
        let tenant = parts.extensions.get::<Tenant>().map_or_else(|| state.config.default_tenant.clone(), |Tenant(id)| id.clone());
        let mut base_url = base_url(state, &parts.headers);
        if parts.extensions.get::<Tenant>().is_some() {
            base_url = format!("{base_url}/tenant/{tenant}");
        }
        Ok(RequestContext {
            params,
            pretty,
            prefer_return,
            base_url,
            headers: parts.headers.clone(),
            tenant,
            principal: parts.extensions.get::<Principal>().cloned().unwrap_or_else(Principal::anonymous),
        })
    }
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(public) = &state.config.public_base_url {
        return public.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_plain_host(h));
    format!("http://{}{}", host.unwrap_or("localhost"), state.config.base_path)
}

/// A Host header is echoed into URLs, so only host[:port] characters are accepted.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Whether a media type (lowercase, without parameters) is FHIR JSON.
pub fn is_json_media_type(media: &str) -> bool {
    matches!(media, "application/fhir+json" | "application/json" | "application/json+fhir" | "text/json")
}

fn check_format_parameter(format: &str) -> ApiResult<()> {
    let media = format.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "json" || is_json_media_type(&media) {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(format!("_format '{media}' is not served; this server speaks JSON only (_format=json)")))
    }
}

fn check_accept(headers: &HeaderMap) -> ApiResult<()> {
    let Some(accept) = headers.get(header::ACCEPT) else { return Ok(()) };
    let accept = accept.to_str().map_err(|_| ApiError::invalid("Accept header is not valid text"))?;
    if accept.trim().is_empty() {
        return Ok(());
    }
    let acceptable = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        media == "*/*" || media == "application/*" || media == "text/*" || is_json_media_type(&media)
    });
    if acceptable {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable("no acceptable format: this server speaks application/fhir+json only".into()))
    }
}

fn parse_prefer_return(headers: &HeaderMap) -> PreferReturn {
    let prefers = headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok());
    for prefer in prefers {
        for token in prefer.split([',', ';']) {
            match token.trim().split_once('=') {
                Some(("return", "minimal")) => return PreferReturn::Minimal,
                Some(("return", "representation")) => return PreferReturn::Representation,
                Some(("return", "OperationOutcome")) => return PreferReturn::OperationOutcome,
                _ => {}
            }
        }
    }
    PreferReturn::Representation
}

/// The request's Content-Type without parameters, lowercase.
pub fn content_media_type(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().map_err(|_| ApiError::invalid("Content-Type header is not valid text")))
        .transpose()?;
    Ok(content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase()))
}

/// Reads a FHIR resource body (JSON media type, or none) up to the configured limit.
pub async fn read_resource_body(state: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    if let Some(media) = content_media_type(headers)?.filter(|media| !is_json_media_type(media)) {
        return Err(ApiError::UnsupportedMediaType(format!("Content-Type '{media}' is not supported; send application/fhir+json")));
    }
    read_limited(state, headers, body).await
}

/// Reads a body up to the configured limit (413 beyond it).
pub async fn read_limited(state: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let limit = state.config.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge { limit }),
        Err(_) => Err(ApiError::invalid("the request body could not be read")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn accept_negotiation() {
        assert!(check_accept(&headers(&[])).is_ok());
        assert!(check_accept(&headers(&[("accept", "application/fhir+json")])).is_ok());
        assert!(check_accept(&headers(&[("accept", "text/html, */*;q=0.8")])).is_ok());
        assert!(check_accept(&headers(&[("accept", "application/fhir+xml")])).is_err());
        assert!(check_format_parameter("json").is_ok());
        assert!(check_format_parameter("application/fhir+json").is_ok());
        assert!(check_format_parameter("xml").is_err());
    }

    #[test]
    fn prefer_return() {
        assert_eq!(parse_prefer_return(&headers(&[])), PreferReturn::Representation);
        assert_eq!(parse_prefer_return(&headers(&[("prefer", "return=minimal")])), PreferReturn::Minimal);
        assert_eq!(
            parse_prefer_return(&headers(&[("prefer", "handling=strict, return=OperationOutcome")])),
            PreferReturn::OperationOutcome
        );
    }

    #[test]
    fn hosts_are_checked_before_echoing() {
        assert!(is_plain_host("127.0.0.1:8080"));
        assert!(is_plain_host("[::1]:80"));
        assert!(!is_plain_host("evil.com/path?"));
        assert!(!is_plain_host(""));
    }
}
