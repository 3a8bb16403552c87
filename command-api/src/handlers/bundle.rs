//! The Bundle JSON the API returns (history, searchset, batch and transaction responses), serialized with each stored body
//! embedded as-is rather than re-parsed into a tree.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{ApiError, ApiResult};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<'a> {
    pub resource_type: &'static str,
    pub id: String,
    pub meta: Meta,
    #[serde(rename = "type")]
    pub bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<Entry<'a>>,
}

impl<'a> Bundle<'a> {
    pub fn new(bundle_type: &'static str, link: Vec<Link>, entry: Vec<Entry<'a>>) -> Self {
        Bundle {
            resource_type: "Bundle",
            id: uuid::Uuid::new_v4().to_string(),
            meta: Meta { last_updated: fhir_core::instant::format_instant(fhir_core::instant::now()) },
            bundle_type,
            total: None,
            link,
            entry,
        }
    }

    pub fn to_bytes(&self) -> ApiResult<Bytes> {
        serde_json::to_vec(self).map(Bytes::from).map_err(|error| ApiError::Internal(error.to_string()))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub last_updated: String,
}

#[derive(Serialize)]
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<EntrySearch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<EntryRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<EntryResponse<'a>>,
}

#[derive(Serialize)]
pub struct EntrySearch {
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct EntryRequest {
    pub method: &'static str,
    pub url: String,
}

/// `201 Created`: an entry's response status as FHIR writes it.
pub fn status_line(status: axum::http::StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryResponse<'a> {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'a RawValue>,
}

/// Borrows stored JSON as a raw value for embedding.
pub fn raw(body: &[u8]) -> ApiResult<&RawValue> {
    serde_json::from_slice::<&RawValue>(body).map_err(|_| ApiError::Internal("a stored body is not JSON".into()))
}

/// The URL of `path` with `params` (and nothing else), for links.
pub fn link_url(base_url: &str, path: &str, params: &[(String, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let separator = if path.is_empty() { "" } else { "/" };
    if query.is_empty() {
        format!("{base_url}{separator}{path}")
    } else {
        format!("{base_url}{separator}{path}?{query}")
    }
}
