//! Turning request bodies into resources the server will store: parse, check the type and id the
//! URL names, validate, and stamp `id` and `meta` in the order FHIR JSON puts them.

use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::{ApiError, ApiResult};
use fhir_core::{Issue, IssueType};

pub type Resource = Map<String, Value>;

/// Parses a body that must be JSON; the error says where the JSON breaks, never what it holds.
pub fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::BadRequest(vec![Issue::error(
            IssueType::Structure,
            format!("the body is not valid JSON (line {}, column {})", error.line(), error.column()),
        )])
    })
}

/// Parses a body that must be one JSON object whose `resourceType` is `expected_type`.
pub fn parse_resource(body: &[u8], expected_type: &str) -> ApiResult<Resource> {
    let Value::Object(resource) = parse_json(body)? else {
        return Err(ApiError::BadRequest(vec![Issue::error(IssueType::Structure, "the body must be a JSON object")]));
    };
    match resource.get("resourceType") {
        Some(Value::String(found)) if found == expected_type => Ok(resource),
        Some(Value::String(found)) => Err(ApiError::BadRequest(vec![Issue::error(
            IssueType::Invalid,
            format!("resourceType '{found}' does not match the type in the URL ({expected_type})"),
        )
        .at("resourceType")])),
        _ => Err(ApiError::BadRequest(vec![Issue::error(IssueType::Required, "resourceType is missing").at("resourceType")])),
    }
}

/// Validates a resource; errors become a 400 (or, for `unprocessable`, a 422) listing every issue.
pub fn validate(resource: &Resource, unprocessable: bool) -> ApiResult<()> {
    // Validation takes a Value; the clone is cheap next to the JSON parse that produced the map.
    validate_value(&Value::Object(resource.clone()), unprocessable)
}

/// [`validate`] for a resource already held as a `Value`.
pub fn validate_value(resource: &Value, unprocessable: bool) -> ApiResult<()> {
    let issues = fhir_core::validation::validate_resource(resource);
    if issues.iter().any(Issue::is_error) {
        let errors = issues.into_iter().filter(Issue::is_error).collect();
        return Err(if unprocessable { ApiError::Unprocessable(errors) } else { ApiError::BadRequest(errors) });
    }
    Ok(())
}

/// Whether `resource` says the same as the stored body `stored`, apart from what the server stamps
/// (`id`, `meta.versionId`, `meta.lastUpdated`): an update that changes nothing writes nothing.
pub fn same_content(resource: &Resource, stored: &[u8]) -> bool {
    let Ok(Value::Object(mut stored)) = serde_json::from_slice::<Value>(stored) else { return false };
    let mut resource = resource.clone();
    for map in [&mut resource, &mut stored] {
        map.remove("id");
        if let Some(Value::Object(meta)) = map.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                map.remove("meta");
            }
        }
    }
    resource == stored
}

/// Serializes a resource with its server-assigned `id`, `meta.versionId` and `meta.lastUpdated`,
/// keeping `resourceType`, `id` and `meta` first and the rest in the client's order.
pub fn stamp(mut resource: Resource, id: &str, version: u64, recorded_at: OffsetDateTime) -> ApiResult<Bytes> {
    let resource_type = resource.remove("resourceType").unwrap_or(Value::Null);
    resource.remove("id");
    let mut meta = match resource.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.remove("versionId");
    meta.remove("lastUpdated");
    let mut stamped_meta = Map::with_capacity(meta.len() + 2);
    stamped_meta.insert("versionId".into(), Value::String(version.to_string()));
    stamped_meta.insert("lastUpdated".into(), Value::String(fhir_core::instant::format_instant(recorded_at)));
    stamped_meta.extend(meta);
    let mut stamped = Map::with_capacity(resource.len() + 3);
    stamped.insert("resourceType".into(), resource_type);
    stamped.insert("id".into(), Value::String(id.to_string()));
    stamped.insert("meta".into(), Value::Object(stamped_meta));
    stamped.extend(resource);
    serde_json::to_vec(&stamped)
        .map(Bytes::from)
        .map_err(|error| ApiError::Internal(format!("cannot serialize a resource: {error}")))
}

/// Whether `id` is a valid FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stamp_puts_identity_first_and_overwrites_server_fields() {
        let resource = parse_resource(
            br#"{"name":[{"family":"X"}],"meta":{"versionId":"9","profile":["http://p"]},"resourceType":"Patient","id":"old"}"#,
            "Patient",
        )
        .unwrap();
        let body = stamp(resource, "new", 2, datetime!(2024-01-02 03:04:05.678 UTC)).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"resourceType":"Patient","id":"new","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.678Z","profile":["http://p"]},"name":[{"family":"X"}]}"#
        );
    }

    #[test]
    fn parse_checks_shape_and_type() {
        assert!(matches!(parse_resource(b"{", "Patient"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_resource(b"[]", "Patient"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_resource(br#"{"resourceType":"Observation"}"#, "Patient"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_resource(br#"{"id":"1"}"#, "Patient"), Err(ApiError::BadRequest(_))));
        assert!(parse_resource(br#"{"resourceType":"Patient"}"#, "Patient").is_ok());
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("a-B.9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id(""));
    }
}
