//! Turning request bodies into resources the server will store: parse, check the type and id the
//! URL names, validate, and stamp `id` and `meta` in the order FHIR JSON puts them.

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
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
    refuse_errors(fhir_core::validation::validate_object(resource), unprocessable)
}

/// [`validate`] for a resource held as a `Value`.
pub fn validate_value(resource: &Value, unprocessable: bool) -> ApiResult<()> {
    refuse_errors(fhir_core::validation::validate_resource(resource), unprocessable)
}

fn refuse_errors(issues: Vec<Issue>, unprocessable: bool) -> ApiResult<()> {
    if issues.iter().any(Issue::is_error) {
        let errors = issues.into_iter().filter(Issue::is_error).collect();
        return Err(if unprocessable { ApiError::Unprocessable(errors) } else { ApiError::BadRequest(errors) });
    }
    Ok(())
}

/// Whether `resource` says the same as the stored body `stored`, apart from what the server stamps
/// (`id`, `meta.versionId`, `meta.lastUpdated`): an update that changes nothing writes nothing.
pub fn same_content(resource: &Resource, stored: &[u8]) -> bool {
    let Ok(Value::Object(stored)) = serde_json::from_slice::<Value>(stored) else { return false };
    let empty = Map::new();
    // An absent meta and one holding only stamped fields say the same.
    fn meta<'a>(map: &'a Resource, empty: &'a Resource) -> Option<&'a Resource> {
        match map.get("meta") {
            None => Some(empty),
            Some(Value::Object(meta)) => Some(meta),
            Some(_) => None,
        }
    }
    let same_meta = match (meta(resource, &empty), meta(&stored, &empty)) {
        (Some(mine), Some(theirs)) => same_except(mine, theirs, &["versionId", "lastUpdated"]),
        _ => resource.get("meta") == stored.get("meta"),
    };
    same_meta && same_except(resource, &stored, &["id", "meta"])
}

/// Whether two objects hold the same members, `ignored` names aside.
fn same_except(a: &Resource, b: &Resource, ignored: &[&str]) -> bool {
    let kept = |name: &&String| !ignored.contains(&name.as_str());
    a.keys().filter(kept).count() == b.keys().filter(kept).count()
        && a.iter().filter(|(name, _)| kept(name)).all(|(name, value)| b.get(name) == Some(value))
}

/// Serializes `resource` as stored: `resourceType`, then `id`, then `meta` with `versionId` and
/// `lastUpdated` first, then the other elements as sent; whatever the client put in the server's
/// fields is replaced. Written straight from the borrowed resource, without a copy.
pub fn stamp(resource: &Resource, id: &str, version: u64, recorded_at: OffsetDateTime) -> ApiResult<Bytes> {
    let stamped = Stamped {
        resource,
        id,
        version: version.to_string(),
        last_updated: fhir_core::instant::format_instant(recorded_at),
    };
    serde_json::to_vec(&stamped)
        .map(Bytes::from)
        .map_err(|error| ApiError::Internal(format!("cannot serialize a resource: {error}")))
}

struct Stamped<'a> {
    resource: &'a Resource,
    id: &'a str,
    version: String,
    last_updated: String,
}

impl Serialize for Stamped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("resourceType", self.resource.get("resourceType").unwrap_or(&Value::Null))?;
        out.serialize_entry("id", self.id)?;
        out.serialize_entry("meta", &StampedMeta { stamped: self, meta: self.resource.get("meta").and_then(Value::as_object) })?;
        for (name, value) in self.resource {
            if !matches!(name.as_str(), "resourceType" | "id" | "meta") {
                out.serialize_entry(name, value)?;
            }
        }
        out.end()
    }
}

struct StampedMeta<'a> {
    stamped: &'a Stamped<'a>,
    meta: Option<&'a Map<String, Value>>,
}

impl Serialize for StampedMeta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("versionId", &self.stamped.version)?;
        out.serialize_entry("lastUpdated", &self.stamped.last_updated)?;
        for (name, value) in self.meta.into_iter().flatten() {
            if !matches!(name.as_str(), "versionId" | "lastUpdated") {
                out.serialize_entry(name, value)?;
            }
        }
        out.end()
    }
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
        let body = stamp(&resource, "new", 2, datetime!(2024-01-02 03:04:05.678 UTC)).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"resourceType":"Patient","id":"new","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.678Z","profile":["http://p"]},"name":[{"family":"X"}]}"#
        );
    }

    #[test]
    fn same_content_ignores_only_what_the_server_stamps() {
        let stored = br#"{"resourceType":"Patient","id":"a","meta":{"versionId":"3","lastUpdated":"2024-01-02T03:04:05.678Z"},"active":true,"gender":"male"}"#;
        let same = |body: &str| same_content(&parse_resource(body.as_bytes(), "Patient").unwrap(), stored);
        assert!(same(r#"{"resourceType":"Patient","gender":"male","active":true}"#));
        assert!(same(r#"{"resourceType":"Patient","id":"a","meta":{"versionId":"1"},"active":true,"gender":"male"}"#));
        assert!(!same(r#"{"resourceType":"Patient","active":true}"#));
        assert!(!same(r#"{"resourceType":"Patient","active":false,"gender":"male"}"#));
        assert!(!same(r#"{"resourceType":"Patient","active":true,"gender":"male","birthDate":"2000"}"#));
        assert!(!same(r#"{"resourceType":"Patient","meta":{"profile":["http://p"]},"active":true,"gender":"male"}"#));
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
