//! An R4 Subscription as the notifier uses it, parsed and checked: the criteria (a search URL of
//! the shared query model, criteria only), the rest-hook channel (endpoint, headers, payload),
//! the status and the end. The API refuses what does not parse, with the reasons.
//!
//! A Subscription of the Subscriptions Backport IG names a topic in `criteria` instead. This
//! server's topics are one per resource type, [`TOPIC_BASE`]`/{type}`: a resource of that type is
//! created or updated. Its `backport-filter-criteria` extensions (`Observation?code=...`, all of
//! which must match) narrow it, and `backport-payload-content` says what a notification carries
//! (`empty`, `id-only`, `full-resource`).

use fhir_core::instant::parse_range;
use fhir_core::search::matcher::query_criteria;
use fhir_core::search::Criterion;
use fhir_core::{Issue, IssueType};
use serde_json::Value;
use time::OffsetDateTime;

/// This server's subscription topics: `{TOPIC_BASE}/{resource type}`.
pub const TOPIC_BASE: &str = "https://fhir-server.dev/SubscriptionTopic";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

/// What a topic-based notification carries besides its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Empty,
    IdOnly,
    FullResource,
}

/// A Backport IG subscription's topic and content.
#[derive(Clone, Debug, PartialEq)]
pub struct Topic {
    pub url: String,
    pub content: Content,
}

/// Media types a payload may ask for.
const PAYLOADS: &[&str] = &["application/fhir+json", "application/json", "application/json+fhir"];

#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    /// The type the criteria search.
    pub resource_type: String,
    pub criteria: Vec<Criterion>,
    pub endpoint: String,
    /// `Name: value` headers added to every notification (may hold secrets: never logged).
    pub headers: Vec<(String, String)>,
    /// The payload's media type; `None`: a notification without a body.
    pub payload: Option<String>,
    pub end: Option<OffsetDateTime>,
    /// Set for a topic-based subscription (Backport IG): notifications are Bundles.
    pub topic: Option<Topic>,
}

impl Subscription {
    /// Whether it should be notified now (active, and not past its end).
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.status == "active" && self.end.is_none_or(|end| end > now)
    }
}

fn invalid(path: &str, text: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, text).at(path)
}

/// Parses a Subscription resource; every problem is an issue naming its element.
pub fn parse(resource: &Value) -> Result<Subscription, Vec<Issue>> {
    let mut issues = Vec::new();
    let text = |name: &str| resource.get(name).and_then(Value::as_str);
    let id = text("id").unwrap_or_default().to_string();
    let status = text("status").unwrap_or_default().to_string();
    let criteria_text = text("criteria").unwrap_or_default();
    let topic_based = criteria_text.starts_with("http://") || criteria_text.starts_with("https://");
    let parsed = if topic_based { topic_criteria(resource, criteria_text) } else { criteria(criteria_text) };
    let (resource_type, criteria) = match parsed {
        Ok(parsed) => parsed,
        Err(problem) => {
            issues.push(invalid("Subscription.criteria", problem));
            (String::new(), Vec::new())
        }
    };
    let channel = resource.get("channel").cloned().unwrap_or(Value::Null);
    let channel_text = |name: &str| channel.get(name).and_then(Value::as_str);
    match channel_text("type") {
        Some("rest-hook") => {}
        Some(other) => issues.push(Issue::error(IssueType::NotSupported, format!("channel type '{other}' is not supported; this server delivers rest-hook")).at("Subscription.channel.type")),
        None => issues.push(invalid("Subscription.channel.type", "a channel type is required (rest-hook)")),
    }
    let endpoint = channel_text("endpoint").unwrap_or_default().to_string();
    let scheme_ok = endpoint.starts_with("https://") || endpoint.starts_with("http://");
    if !scheme_ok || endpoint.contains(char::is_whitespace) {
        issues.push(invalid("Subscription.channel.endpoint", "a rest-hook needs an absolute http(s) endpoint"));
    }
    let mut headers = Vec::new();
    for (index, header) in channel.get("header").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let parsed = header.as_str().and_then(|header| header.split_once(':')).map(|(name, value)| (name.trim().to_string(), value.trim().to_string()));
        match parsed {
            Some((name, value)) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !value.contains(['\r', '\n']) => headers.push((name, value)),
            _ => issues.push(invalid(&format!("Subscription.channel.header[{index}]"), "a header is 'Name: value'")),
        }
    }
    let content = match extension(channel.get("_payload"), "backport-payload-content").and_then(Value::as_str) {
        None | Some("id-only") => Content::IdOnly,
        Some("empty") => Content::Empty,
        Some("full-resource") => Content::FullResource,
        Some(other) => {
            issues.push(invalid("Subscription.channel.payload", format!("payload content '{other}' is not empty, id-only or full-resource")));
            Content::IdOnly
        }
    };
    let topic = topic_based.then(|| Topic { url: criteria_text.to_string(), content });
    let payload = match channel_text("payload") {
        // A topic-based notification is a Bundle, in JSON unless said otherwise.
        None | Some("") if topic.is_some() => Some(PAYLOADS[0].to_string()),
        None | Some("") => None,
        Some(media) if PAYLOADS.contains(&media) => Some(media.to_string()),
        Some(other) => {
            issues.push(Issue::error(IssueType::NotSupported, format!("payload '{other}' is not supported; use application/fhir+json, or none")).at("Subscription.channel.payload"));
            None
        }
    };
    let end = match text("end") {
        None => None,
        Some(end) => match parse_range(end) {
            Some((instant, _)) => Some(instant),
            None => {
                issues.push(invalid("Subscription.end", "end is not an instant"));
                None
            }
        },
    };
    if issues.is_empty() {
        Ok(Subscription { id, status, resource_type, criteria, endpoint, headers, payload, end, topic })
    } else {
        Err(issues)
    }
}

/// The value of the Backport IG extension `name` on an element's `_element` object.
fn extension<'a>(element: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    let url = format!("{BACKPORT}/{name}");
    element?.get("extension")?.as_array()?.iter().find(|extension| extension.get("url").and_then(Value::as_str) == Some(url.as_str())).and_then(|extension| {
        extension.as_object()?.iter().find(|(key, _)| key.starts_with("value")).map(|(_, value)| value)
    })
}

/// A topic's type, and the criteria of its filters (every `backport-filter-criteria`, which must
/// all search that type).
fn topic_criteria(resource: &Value, url: &str) -> Result<(String, Vec<Criterion>), String> {
    let resource_type = url
        .strip_prefix(TOPIC_BASE)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|t| fhir_core::definitions::r4().is_resource_type(t))
        .ok_or_else(|| format!("unknown topic; this server's topics are {TOPIC_BASE}/{{resource type}} (a resource of that type is created or updated)"))?;
    let url = format!("{BACKPORT}/backport-filter-criteria");
    let filters = resource.get("_criteria").and_then(|element| element.get("extension")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut all = Vec::new();
    for filter in filters.iter().filter(|extension| extension.get("url").and_then(Value::as_str) == Some(url.as_str())) {
        let text = filter.get("valueString").and_then(Value::as_str).ok_or("a filter criteria extension needs a valueString")?;
        let (filter_type, filter_criteria) = criteria(text)?;
        if filter_type != resource_type {
            return Err(format!("the filter '{text}' searches {filter_type}, not the topic's {resource_type}"));
        }
        all.extend(filter_criteria);
    }
    Ok((resource_type.to_string(), all))
}

/// `Type?criteria`: the type and its criteria (see [`query_criteria`]).
fn criteria(text: &str) -> Result<(String, Vec<Criterion>), String> {
    let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
    if !fhir_core::definitions::r4().is_resource_type(resource_type) {
        return Err(format!("criteria must be a search of a resource type, such as Observation?code=1234-5 (got '{}')", text.chars().take(100).collect::<String>()));
    }
    Ok((resource_type.to_string(), query_criteria(resource_type, query)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscription(criteria: &str, channel: Value) -> Value {
        json!({ "resourceType": "Subscription", "id": "s1", "status": "requested", "reason": "test", "criteria": criteria, "channel": channel })
    }

    #[test]
    fn valid_and_invalid_subscriptions() {
        let hook = json!({ "type": "rest-hook", "endpoint": "https://example.org/hook", "payload": "application/fhir+json", "header": ["Authorization: Bearer secret"] });
        let parsed = parse(&subscription("Observation?code=http://loinc.org|1234-5&status=final", hook.clone())).unwrap();
        assert_eq!(parsed.resource_type, "Observation");
        assert_eq!(parsed.criteria.len(), 2);
        assert_eq!(parsed.headers, vec![("Authorization".to_string(), "Bearer secret".to_string())]);
        assert_eq!(parsed.payload.as_deref(), Some("application/fhir+json"));
        assert!(parse(&subscription("Patient", hook.clone())).is_ok(), "every Patient");
        for (criteria, expected) in [
            ("Observation?_include=Observation:subject", "_include"),
            ("Observation?_sort=date", "_sort"),
            ("Observation?nope=1", "nope"),
            ("Observation?subject.name=x", "chained"),
            ("Nope?x=1", "resource type"),
        ] {
            let issues = parse(&subscription(criteria, hook.clone())).unwrap_err();
            assert!(issues[0].diagnostics.contains(expected), "{criteria}: {issues:?}");
        }
        let issues = parse(&subscription("Patient", json!({ "type": "email", "endpoint": "mailto:x@example.org" }))).unwrap_err();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(parse(&subscription("Patient", json!({ "type": "rest-hook", "endpoint": "https://x", "payload": "text/csv" }))).is_err());
        assert!(parse(&subscription("Patient", json!({ "type": "rest-hook", "endpoint": "https://x", "header": ["no colon"] }))).is_err());
    }

    #[test]
    fn backport_topic_subscriptions() {
        let filter = |value: &str| json!({ "url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": value });
        let mut resource = subscription(&format!("{TOPIC_BASE}/Observation"), json!({ "type": "rest-hook", "endpoint": "https://x/hook",
            "_payload": { "extension": [{ "url": format!("{BACKPORT}/backport-payload-content"), "valueCode": "full-resource" }] } }));
        resource["_criteria"] = json!({ "extension": [filter("Observation?code=1234-5"), filter("Observation?status=final")] });
        let parsed = parse(&resource).unwrap();
        assert_eq!(parsed.resource_type, "Observation");
        assert_eq!(parsed.criteria.len(), 2, "every filter must match");
        assert_eq!(parsed.topic, Some(Topic { url: format!("{TOPIC_BASE}/Observation"), content: Content::FullResource }));
        assert_eq!(parsed.payload.as_deref(), Some("application/fhir+json"));
        resource["_criteria"] = json!({ "extension": [filter("Patient?name=x")] });
        assert!(parse(&resource).unwrap_err()[0].diagnostics.contains("not the topic's"));
        resource["criteria"] = json!("http://example.org/topics/admission");
        assert!(parse(&resource).unwrap_err()[0].diagnostics.contains("unknown topic"));
    }
}
