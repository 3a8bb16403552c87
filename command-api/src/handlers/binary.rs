//! Binary: the bytes live in the blob store, the resource in the log. A Binary version in the
//! log holds `contentType`, `securityContext` and, in `meta.extension` ([`CONTENT_EXTENSION`]),
//! where its bytes are with their size and SHA-256; never the bytes themselves.
//!
//! - `POST /Binary` or `PUT /Binary/id` with a non-FHIR `Content-Type` stores the body as it
//!   comes (streamed, up to `max_binary_bytes`); `X-Security-Context` names the security context.
//! - The JSON form (`data` in base64) works too: the bytes are moved out of the resource.
//! - `GET /Binary/id` (and vread) answers the raw bytes with their content type, unless the
//!   request asks for FHIR (`_format`, or an `Accept` naming FHIR JSON): then the resource with
//!   `data`, base64-encoded as it streams.
//! - `GET /Binary/id/$download-url` answers a signed, expiring URL for the bytes (S3 presigned in
//!   AWS mode; the server's own `_blob` route in embedded mode); `POST /Binary/$upload-url`
//!   creates a Binary and answers a signed URL to PUT its bytes to.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use blob_store::{BlobError, ByteStream};
use bytes::Bytes;
use event_log::{Event, ExpectedVersion, Operation, StreamKey};
use futures::StreamExt;
use serde_json::{json, Value};

use super::instance::write_response;
use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{content_media_type, is_json_media_type, read_resource_body, RequestContext};
use crate::resource::{parse_resource, validate, Resource};
use crate::respond::{fhir_json_response, with_version_headers};
use crate::state::AppState;
use crate::write::{append_one, write_with_retry, Plan};

/// The `meta.extension` that says where a Binary's bytes are.
pub const CONTENT_EXTENSION: &str = "https://fhir-server.dev/StructureDefinition/binary-content";

/// Where one Binary version's bytes are, with their size and hash when the server saw them
/// pass (not for bytes uploaded to a signed URL, which may not have arrived yet).
struct Content {
    location: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// `POST /Binary`.
pub async fn create(state: &Arc<AppState>, context: &RequestContext, body: Body) -> ApiResult<Response> {
    let resource = incoming(state, context, body, None).await?;
    let location = content_of(&resource).map(|content| content.location);
    let id = uuid::Uuid::now_v7().to_string();
    let key = StreamKey::new(&context.tenant, "Binary", &id);
    let written = append_one(state, &context.principal, &key, ExpectedVersion::NoStream, Operation::Create, Some(resource)).await;
    let written = discard_on_failure(state, location, written).await?;
    Ok(write_response(context, "Binary", &id, written))
}

/// `PUT /Binary/id`.
pub async fn update(state: &Arc<AppState>, context: &RequestContext, key: &StreamKey, body: Body) -> ApiResult<Response> {
    let resource = incoming(state, context, body, Some(&key.id)).await?;
    let location = content_of(&resource).map(|content| content.location);
    let if_match = super::instance::if_match(context)?;
    let written = write_with_retry(state, &context.principal, key, if_match, |latest| match latest {
        None if !state.config.update_create => Err(ApiError::MethodNotAllowed("this server does not let PUT create resources with client-chosen ids".into())),
        _ => Ok(Plan::Put(resource.clone())),
    })
    .await;
    let written = discard_on_failure(state, location, written).await?;
    Ok(write_response(context, "Binary", &key.id, written))
}

/// A failed write leaves no bytes behind.
async fn discard_on_failure<T>(state: &AppState, location: Option<String>, result: ApiResult<T>) -> ApiResult<T> {
    if let (Err(_), Some(location)) = (&result, location) {
        if let Err(error) = state.blobs.store.delete(&location).await {
            tracing::warn!(%error, "could not remove the bytes of a Binary that was not written");
        }
    }
    result
}

/// The Binary resource a request body makes, its bytes stored: raw bytes, or the JSON form.
async fn incoming(state: &AppState, context: &RequestContext, body: Body, id: Option<&str>) -> ApiResult<Resource> {
    let media = content_media_type(&context.headers)?;
    let mut resource = match media.as_deref() {
        Some(media) if !is_json_media_type(media) && !media.contains("fhir") => {
            let content_type = context.header(header::CONTENT_TYPE)?.unwrap_or(media).to_string();
            let mut resource = Resource::new();
            resource.insert("resourceType".into(), json!("Binary"));
            if let Some(id) = id {
                resource.insert("id".into(), json!(id));
            }
            resource.insert("contentType".into(), json!(content_type));
            if let Some(reference) = context.header(header::HeaderName::from_static("x-security-context"))? {
                resource.insert("securityContext".into(), json!({ "reference": reference }));
            }
            let stream = request_stream(state, body);
            let content = store(state, &context.tenant, &content_type, stream).await?;
            set_content(&mut resource, Some(&content));
            resource
        }
        _ => {
            let body = read_resource_body(state, &context.headers, body).await?;
            let mut resource = parse_resource(&body, "Binary")?;
            if let Some(id) = id {
                match resource.get("id") {
                    Some(Value::String(body_id)) if body_id == id => {}
                    Some(_) => return Err(ApiError::invalid("the id in the body does not match the id in the URL")),
                    None => return Err(ApiError::invalid("an update must carry the resource id in the body")),
                }
            } else {
                resource.remove("id");
            }
            offload(state, &context.tenant, &mut resource).await?;
            resource
        }
    };
    if id.is_none() {
        resource.remove("id");
    }
    validate(&resource, false)?;
    Ok(resource)
}

/// Moves the base64 `data` of a Binary resource into the blob store, leaving where it went.
/// Whatever a client wrote in [`CONTENT_EXTENSION`] is dropped first: only the server says
/// where bytes are. Returns the location of the bytes stored, if any.
pub async fn offload(state: &AppState, tenant: &str, resource: &mut Resource) -> ApiResult<Option<String>> {
    set_content(resource, None);
    let Some(data) = resource.remove("data") else { return Ok(None) };
    let Value::String(data) = data else { return Err(ApiError::invalid("Binary.data must be a base64 string")) };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| ApiError::invalid("Binary.data is not valid base64"))?;
    let content_type = resource.get("contentType").and_then(Value::as_str).unwrap_or("application/octet-stream").to_string();
    let stream: ByteStream = futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
    let content = store(state, tenant, &content_type, stream).await?;
    let location = content.location.clone();
    set_content(resource, Some(&content));
    Ok(Some(location))
}

/// A request body stored at `location` as it streams (up to `max_binary_bytes`).
pub async fn store_at(state: &AppState, location: &str, content_type: &str, body: Body) -> ApiResult<()> {
    let stream = request_stream(state, body);
    put(state, location, content_type, stream).await.map(|_| ())
}

async fn store(state: &AppState, tenant: &str, content_type: &str, body: ByteStream) -> ApiResult<Content> {
    let location = format!("binary/{tenant}/{}", uuid::Uuid::now_v7());
    let stored = put(state, &location, content_type, body).await?;
    Ok(Content { location, size: Some(stored.size), sha256: Some(hex::encode(stored.sha256)) })
}

async fn put(state: &AppState, location: &str, content_type: &str, body: ByteStream) -> ApiResult<blob_store::Stored> {
    match state.blobs.store.put(location, content_type, body).await {
        Ok(stored) => Ok(stored),
        Err(BlobError::Upload(why)) if why.contains(TOO_LARGE) => Err(ApiError::PayloadTooLarge { limit: state.config.max_binary_bytes as usize }),
        Err(BlobError::Upload(why)) => Err(ApiError::invalid(format!("the upload broke off: {why}"))),
        Err(other) => Err(ApiError::Internal(other.to_string())),
    }
}

const TOO_LARGE: &str = "larger than max_binary_bytes";

/// A request body as a stream of chunks, ending with an error past `max_binary_bytes`.
fn request_stream(state: &AppState, body: Body) -> ByteStream {
    let chunks = body.into_data_stream().map(|chunk| chunk.map_err(|error| BlobError::Upload(error.to_string()))).boxed();
    limited(chunks, state.config.max_binary_bytes)
}

/// Ends a stream with an error once it has passed `limit` bytes.
fn limited(body: ByteStream, limit: u64) -> ByteStream {
    let mut seen = 0u64;
    body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(BlobError::Upload(format!("the body is {TOO_LARGE} ({limit})")));
        }
        Ok(chunk)
    })
    .boxed()
}

/// Replaces the content extension of `resource` (none: removes it).
fn set_content(resource: &mut Resource, content: Option<&Content>) {
    if let Some(Value::Object(meta)) = resource.get_mut("meta") {
        if let Some(Value::Array(extensions)) = meta.get_mut("extension") {
            extensions.retain(|extension| extension.get("url").and_then(Value::as_str) != Some(CONTENT_EXTENSION));
            if extensions.is_empty() {
                meta.remove("extension");
            }
        }
        if meta.is_empty() {
            resource.remove("meta");
        }
    }
    let Some(content) = content else { return };
    let mut parts = vec![json!({ "url": "location", "valueString": content.location })];
    if let Some(size) = content.size {
        parts.push(json!({ "url": "size", "valueDecimal": size }));
    }
    if let Some(sha256) = &content.sha256 {
        parts.push(json!({ "url": "sha256", "valueString": sha256 }));
    }
    let extension = json!({ "url": CONTENT_EXTENSION, "extension": parts });
    let meta = resource.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        match meta.entry("extension").or_insert_with(|| json!([])) {
            Value::Array(extensions) => extensions.push(extension),
            other => *other = json!([extension]),
        }
    }
}

/// Where the bytes of a stored Binary are, if it has any.
fn content_of(resource: &Resource) -> Option<Content> {
    let extension = resource
        .get("meta")?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|extension| extension.get("url").and_then(Value::as_str) == Some(CONTENT_EXTENSION))?;
    let part = |name: &str| extension.get("extension")?.as_array()?.iter().find(|part| part.get("url").and_then(Value::as_str) == Some(name)).cloned();
    Some(Content {
        location: part("location")?.get("valueString")?.as_str()?.to_string(),
        size: part("size").and_then(|size| size.get("valueDecimal")?.as_u64()),
        sha256: part("sha256").and_then(|hash| Some(hash.get("valueString")?.as_str()?.to_string())),
    })
}

/// Whether a read asks for the raw bytes: no `_format`, and no `Accept` naming FHIR.
pub fn wants_raw(context: &RequestContext) -> bool {
    if context.param("_format").is_some() {
        return false;
    }
    let accept = context.headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    !accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        is_json_media_type(&media) || media.contains("fhir")
    })
}

/// Answers a read or vread of a Binary version (live) from its bytes.
pub async fn respond(state: &AppState, context: &RequestContext, event: &Event) -> ApiResult<Response> {
    let resource = parse_resource(&event.body, "Binary").map_err(|_| ApiError::Internal("a stored Binary is not valid".into()))?;
    let content = content_of(&resource);
    let blob = match &content {
        Some(content) => match state.blobs.store.get(&content.location).await.map_err(|error| ApiError::Internal(error.to_string()))? {
            Some(blob) => Some(blob),
            // Bytes to come through a signed upload URL: the FHIR form has no data yet.
            None if content.size.is_none() && wants_raw(context) => {
                return Err(ApiError::NotFound(format!("the bytes of Binary/{} have not been uploaded yet", event.key.id)))
            }
            None if content.size.is_none() => None,
            None => return Err(ApiError::Internal("the bytes of a Binary are missing from the blob store".into())),
        },
        None => None,
    };
    let response = if wants_raw(context) {
        let content_type = resource.get("contentType").and_then(Value::as_str).unwrap_or("application/octet-stream");
        let mut response = match blob {
            Some(blob) => {
                let mut response = Response::new(Body::from_stream(blob.body));
                response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
                response
            }
            None => Response::new(Body::empty()),
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
        // Bytes served from the API's origin must not run there as a page.
        headers.insert(header::HeaderName::from_static("content-security-policy"), HeaderValue::from_static("sandbox"));
        headers.insert(header::HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
        if let Some(Value::String(reference)) = resource.get("securityContext").and_then(|context| context.get("reference")) {
            if let Ok(value) = HeaderValue::from_str(reference) {
                headers.insert(header::HeaderName::from_static("x-security-context"), value);
            }
        }
        response
    } else {
        match blob {
            Some(blob) => {
                let mut response = Response::new(json_with_data(&event.body, blob.body)?);
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
                response
            }
            None => fhir_json_response(StatusCode::OK, event.body.clone()),
        }
    };
    Ok(with_version_headers(response, event.version, event.recorded_at))
}

/// The stored resource with `data` appended, base64-encoded chunk by chunk as the bytes stream
/// (each chunk's bytes up to a multiple of three; the rest, padded, at the end).
fn json_with_data(stored: &Bytes, bytes: ByteStream) -> ApiResult<Body> {
    let open = stored.strip_suffix(b"}").ok_or_else(|| ApiError::Internal("a stored Binary is not a JSON object".into()))?;
    let head = Bytes::from([open, b",\"data\":\""].concat());
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let data = futures::stream::unfold((Some(bytes), Vec::new()), move |(bytes, mut carry)| async move {
        let mut bytes = bytes?;
        match bytes.next().await {
            Some(Ok(chunk)) => {
                carry.extend_from_slice(&chunk);
                let whole = carry.len() / 3 * 3;
                let text = encode(&carry[..whole]);
                carry.drain(..whole);
                Some((Ok(Bytes::from(text)), (Some(bytes), carry)))
            }
            Some(Err(error)) => Some((Err(error), (None, carry))),
            None => Some((Ok(Bytes::from(format!("{}\"}}", encode(&carry)))), (None, Vec::new()))),
        }
    });
    Ok(Body::from_stream(futures::stream::once(async move { Ok::<_, BlobError>(head) }).chain(data)))
}

/// `GET /Binary/id/$download-url`: a URL that fetches the bytes until it expires (needs `read`
/// on Binary, and the Binary within reach).
pub async fn download_url_route(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<Response> {
    context.principal.require_one(Interaction::Read, "Binary")?;
    let key = super::instance_key(&context.tenant, "Binary", id)?;
    let event = state.log.read_latest(&key).await?.ok_or_else(|| ApiError::NotFound(format!("Binary/{id} is not known")))?;
    if event.operation == Operation::Delete {
        return Err(ApiError::Gone { version: event.version, deleted_at: event.recorded_at });
    }
    context.principal.check_stored(Interaction::Read, &event.body)?;
    download_url(state, context, &event).await
}

async fn download_url(state: &AppState, context: &RequestContext, event: &Event) -> ApiResult<Response> {
    let resource = parse_resource(&event.body, "Binary").map_err(|_| ApiError::Internal("a stored Binary is not valid".into()))?;
    let content = content_of(&resource).ok_or_else(|| ApiError::NotFound("this Binary has no content".into()))?;
    let expires_in = state.config.download_url_ttl;
    let url = state.blobs.download_url(&context.base_url, &content.location, expires_in).await?;
    let expires = fhir_core::instant::format_instant(fhir_core::instant::now() + expires_in);
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "url", "valueUrl": url },
            { "name": "expires", "valueInstant": expires },
            { "name": "contentType", "valueCode": resource.get("contentType").cloned().unwrap_or(Value::Null) },
            { "name": "size", "valueDecimal": content.size },
        ]
    });
    Ok(fhir_json_response(StatusCode::OK, serde_json::to_vec(&parameters).unwrap_or_default().into()))
}

/// `POST /Binary/$upload-url` (`contentType` as a query parameter, or in a Parameters body):
/// creates a Binary whose bytes are to be PUT to the answered URL (signed, until it expires;
/// S3 presigned in AWS mode). The server does not see those bytes pass, so that Binary records
/// no size or hash; reading it before the upload is 404.
pub async fn upload_url(state: &AppState, context: &RequestContext, body: Body) -> ApiResult<Response> {
    context.principal.require_one(Interaction::Create, "Binary")?;
    let content_type = match context.param("contentType") {
        Some(content_type) => content_type.to_string(),
        None => {
            let body = read_resource_body(state, &context.headers, body).await?;
            let parameters: Value = if body.is_empty() { Value::Null } else { crate::resource::parse_json(&body)? };
            parameters
                .get("parameter")
                .and_then(Value::as_array)
                .and_then(|list| list.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("contentType")))
                .and_then(|p| p.get("valueCode").or_else(|| p.get("valueString")).and_then(Value::as_str))
                .map(String::from)
                .ok_or_else(|| ApiError::invalid("$upload-url needs a contentType (query parameter, or Parameters body)"))?
        }
    };
    let valid = content_type.len() <= 255 && content_type.contains('/') && content_type.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !valid {
        return Err(ApiError::invalid("contentType must be a media type such as image/png"));
    }
    let location = format!("binary/{}/{}", context.tenant, uuid::Uuid::now_v7());
    let mut resource = Resource::new();
    resource.insert("resourceType".into(), json!("Binary"));
    resource.insert("contentType".into(), json!(content_type));
    set_content(&mut resource, Some(&Content { location: location.clone(), size: None, sha256: None }));
    validate(&resource, false)?;
    let id = uuid::Uuid::now_v7().to_string();
    let key = StreamKey::new(&context.tenant, "Binary", &id);
    let written = append_one(state, &context.principal, &key, ExpectedVersion::NoStream, Operation::Create, Some(resource)).await?;
    let expires_in = state.config.download_url_ttl;
    let upload = state.blobs.upload_url(&context.base_url, &location, &content_type, expires_in).await?;
    let headers: Vec<Value> = upload.headers.iter().map(|(name, value)| json!({ "name": "header", "valueString": format!("{name}: {value}") })).collect();
    let mut parameter = vec![
        json!({ "name": "id", "valueId": id }),
        json!({ "name": "url", "valueUrl": upload.url }),
        json!({ "name": "method", "valueCode": "PUT" }),
        json!({ "name": "expires", "valueInstant": fhir_core::instant::format_instant(fhir_core::instant::now() + expires_in) }),
    ];
    parameter.extend(headers);
    let body = serde_json::to_vec(&json!({ "resourceType": "Parameters", "parameter": parameter })).unwrap_or_default();
    let mut response = fhir_json_response(StatusCode::CREATED, body.into());
    let location = format!("{}/Binary/{id}/_history/{}", context.base_url, written.version);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(with_version_headers(response, written.version, written.recorded_at))
}
