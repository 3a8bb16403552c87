//! The FHIR API as a Lambda function behind API Gateway: each event becomes an HTTP request to
//! the API's router, and its answer the function's response. The caller's address (the
//! `sourceIp` of the request context) is what the audit trail records.
//!
//! A stage's name at the start of the path (`/prod/fhir/Patient`) is taken off.
//!
//! API Gateway limits a response to 6 MB (10 MB for REST APIs): a large Binary is read through
//! its `$download-url`, not through the function.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tower::ServiceExt;

/// Answers one API Gateway request with the API's router.
pub async fn handle(router: Router, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let client = source_ip(&request);
    let stage = stage(&request);
    let (mut parts, body) = request.into_parts();
    // The API's paths do not start with the stage's name (`/prod/fhir/...`).
    if let Some(stage) = stage {
        let prefix = format!("/{stage}/");
        if let Some(rest) = parts.uri.path().strip_prefix(&prefix[..prefix.len() - 1]).filter(|rest| rest.starts_with('/')) {
            let path_and_query = match parts.uri.query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_string(),
            };
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(path_and_query.parse()?);
            parts.uri = axum::http::Uri::from_parts(uri)?;
        }
    }
    let body = match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Text(text) => axum::body::Body::from(text),
        Body::Binary(bytes) => axum::body::Body::from(bytes),
        _ => axum::body::Body::empty(),
    };
    let mut request = axum::http::Request::from_parts(parts, body);
    if let Some(ip) = client {
        request.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    let response = router.oneshot(request).await?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let textual = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(is_text);
    let body = if bytes.is_empty() {
        Body::Empty
    } else if textual {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(error) => Body::Binary(error.into_bytes()),
        }
    } else {
        Body::Binary(bytes.to_vec())
    };
    Ok(Response::from_parts(parts, body))
}

/// JSON and text answers go back as text; everything else base64-encoded.
fn is_text(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    media.starts_with("text/") || media.ends_with("json") || media.ends_with("+json") || media.ends_with("xml")
}

/// The stage a request came through, unless it is the default one.
fn stage(request: &Request) -> Option<String> {
    let stage = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.stage.clone(),
        RequestContext::ApiGatewayV2(context) => context.stage.clone(),
        _ => None,
    };
    stage.filter(|stage| !stage.is_empty() && stage != "$default")
}

fn source_ip(request: &Request) -> Option<IpAddr> {
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.clone(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone(),
        _ => None,
    };
    ip?.parse().ok()
}
