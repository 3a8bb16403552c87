//! PATCH bodies: JSON Patch (`application/json-patch+json`, RFC 6902) or FHIRPath Patch (a
//! `Parameters` resource sent as `application/fhir+json`), chosen by the Content-Type; in bundles,
//! a Parameters resource or a Binary holding a JSON Patch.

use axum::body::Body;
use fhir_core::{fhirpath_patch, Issue, IssueType};
use serde_json::Value;

use base64::Engine;

use crate::error::{ApiError, ApiResult};
use crate::negotiate::{content_media_type, is_json_media_type, read_limited, RequestContext};
use crate::resource::{validate, Resource};
use crate::state::AppState;

/// A parsed PATCH body.
pub enum PatchDocument {
    Json(json_patch::Patch),
    FhirPath(Value),
}

impl PatchDocument {
    /// Reads and parses the body of a PATCH request.
    pub async fn read(state: &AppState, context: &RequestContext, body: Body) -> ApiResult<PatchDocument> {
        let media = content_media_type(&context.headers)?;
        let fhirpath = match media.as_deref() {
            Some("application/json-patch+json") => false,
            Some(media) if is_json_media_type(media) => true,
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type '{}' is not supported for PATCH; send application/json-patch+json (JSON Patch) or application/fhir+json (FHIRPath Patch Parameters)",
                    other.unwrap_or("(none)")
                )))
            }
        };
        let body = read_limited(state, &context.headers, body).await?;
        if fhirpath {
            let document: Value = serde_json::from_slice(&body).map_err(|_| ApiError::invalid("the body is not valid JSON"))?;
            if document.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                return Err(ApiError::invalid("a FHIRPath Patch body must be a Parameters resource"));
            }
            Ok(PatchDocument::FhirPath(document))
        } else {
            serde_json::from_slice(&body)
                .map(PatchDocument::Json)
                .map_err(|_| ApiError::invalid("the body is not a valid JSON Patch document (RFC 6902)"))
        }
    }

    /// The patch a bundle entry carries: a Parameters resource (FHIRPath Patch), or a Binary
    /// whose `data` is a JSON Patch (`contentType` `application/json-patch+json`).
    pub fn from_resource(resource: &Resource) -> ApiResult<PatchDocument> {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => Ok(PatchDocument::FhirPath(Value::Object(resource.clone()))),
            Some("Binary") => {
                if resource.get("contentType").and_then(Value::as_str) != Some("application/json-patch+json") {
                    return Err(ApiError::invalid("a Binary patch must have contentType application/json-patch+json"));
                }
                let data = resource.get("data").and_then(Value::as_str).unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| ApiError::invalid("the Binary patch's data is not base64"))?;
                serde_json::from_slice(&bytes)
                    .map(PatchDocument::Json)
                    .map_err(|_| ApiError::invalid("the Binary patch's data is not a JSON Patch document (RFC 6902)"))
            }
            _ => Err(ApiError::invalid("a patch is a Parameters resource or a Binary holding a JSON Patch")),
        }
    }

    /// Patches the stored body of `resource_type/id`: the result must keep its type and id and
    /// be valid (422 otherwise).
    pub fn patched(&self, stored: &[u8], resource_type: &str, id: &str) -> ApiResult<Resource> {
        let document: Value = serde_json::from_slice(stored).map_err(|_| ApiError::Internal("a stored body is not JSON".into()))?;
        let Value::Object(patched) = self.apply(document)? else {
            return Err(ApiError::Unprocessable(vec![Issue::error(IssueType::Processing, "the patch must leave a JSON object")]));
        };
        if patched.get("resourceType").and_then(Value::as_str) != Some(resource_type) || patched.get("id").and_then(Value::as_str) != Some(id) {
            return Err(ApiError::Unprocessable(vec![Issue::error(IssueType::BusinessRule, "a patch may not change resourceType or id")]));
        }
        validate(&patched, true)?;
        Ok(patched)
    }

    /// Applies the patch to `current`; a patch that cannot be applied is 422.
    fn apply(&self, current: Value) -> ApiResult<Value> {
        match self {
            PatchDocument::Json(patch) => {
                let mut document = current;
                json_patch::patch(&mut document, patch).map_err(|error| {
                    ApiError::Unprocessable(vec![Issue::error(IssueType::Processing, format!("the patch cannot be applied: {error}"))])
                })?;
                Ok(document)
            }
            PatchDocument::FhirPath(patch) => {
                fhirpath_patch::apply(&current, patch).map_err(|error| ApiError::Unprocessable(vec![Issue::from(&error)]))
            }
        }
    }
}
