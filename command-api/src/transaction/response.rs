//! The `batch-response` / `transaction-response` Bundle: one entry per request entry, in the
//! request's order, with status, location, ETag and last-modified, and the resource or the
//! OperationOutcome.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use fhir_core::operation_outcome;

use super::dispatch::Answer;
use super::entry::BundleKind;
use crate::error::{ApiError, ApiResult};
use crate::handlers::bundle::{raw, status_line, Bundle, Entry, EntryResponse};
use crate::respond::{fhir_json_response, prettify};

/// The outcome of one entry.
pub struct EntryResult {
    pub status: StatusCode,
    /// Relative (`Patient/1/_history/2`) or as the API answered it.
    pub location: Option<String>,
    pub etag: Option<String>,
    /// An instant.
    pub last_modified: Option<String>,
    pub resource: Option<Bytes>,
    pub outcome: Option<Bytes>,
}

impl From<Answer> for EntryResult {
    fn from(answer: Answer) -> Self {
        let body = (!answer.body.is_empty()).then_some(answer.body);
        let is_outcome = body.as_ref().is_some_and(|b| resource_type(b).as_deref() == Some("OperationOutcome"));
        let failed = answer.status.is_client_error() || answer.status.is_server_error();
        let last_modified = answer
            .last_modified
            .and_then(|date| fhir_core::instant::parse_http_date(&date))
            .map(fhir_core::instant::format_instant);
        EntryResult {
            status: answer.status,
            location: answer.location,
            etag: answer.etag,
            last_modified,
            resource: if failed || is_outcome { None } else { body.clone() },
            outcome: if failed || is_outcome { body } else { None },
        }
    }
}

fn resource_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "resourceType")]
        resource_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(body).ok()?.resource_type
}

impl From<ApiError> for EntryResult {
    fn from(error: ApiError) -> Self {
        let outcome = serde_json::to_vec(&operation_outcome(&error.issues())).unwrap_or_default();
        EntryResult { status: error.status(), location: None, etag: None, last_modified: None, resource: None, outcome: Some(outcome.into()) }
    }
}

/// Renders the response Bundle.
pub fn render(kind: BundleKind, results: &[EntryResult], pretty: bool) -> ApiResult<Response> {
    let mut entry = Vec::with_capacity(results.len());
    for result in results {
        entry.push(Entry {
            full_url: None,
            resource: result.resource.as_deref().map(raw).transpose()?,
            search: None,
            request: None,
            response: Some(EntryResponse {
                status: status_line(result.status),
                location: result.location.clone(),
                etag: result.etag.clone(),
                last_modified: result.last_modified.clone(),
                outcome: result.outcome.as_deref().map(raw).transpose()?,
            }),
        });
    }
    let bundle_type = match kind {
        BundleKind::Batch => "batch-response",
        BundleKind::Transaction => "transaction-response",
    };
    let mut body = Bundle::new(bundle_type, Vec::new(), entry).to_bytes()?;
    if pretty {
        body = prettify(body);
    }
    Ok(fhir_json_response(StatusCode::OK, body))
}
