//! The entries of a batch or transaction Bundle, parsed into typed requests. Every error names
//! the entry (`Bundle.entry[3].request.url`) and never repeats a value of the bundle.

use fhir_core::{Issue, IssueType};
use serde_json::{Map, Value};

use crate::resource::{is_valid_id, Resource};
use crate::respond::parse_etag;

/// An entry's HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    // Declared in the transaction processing order of the specification.
    Delete,
    Post,
    Put,
    Patch,
    Get,
    Head,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "DELETE" => Method::Delete,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Delete => "DELETE",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// What a write entry's URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `Patient` (POST).
    Type { resource_type: String },
    /// `Patient/123`.
    Instance { resource_type: String, id: String },
    /// `Patient?identifier=...`.
    Conditional { resource_type: String, criteria: Vec<(String, String)> },
    /// Anything a GET or HEAD may ask for; run as it is.
    Read,
}

impl Target {
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Target::Type { resource_type } | Target::Instance { resource_type, .. } | Target::Conditional { resource_type, .. } => {
                Some(resource_type)
            }
            Target::Read => None,
        }
    }
}

/// One entry of the request Bundle.
#[derive(Clone, Debug)]
pub struct BundleEntry {
    /// Position in `Bundle.entry`.
    pub index: usize,
    pub full_url: Option<String>,
    pub resource: Option<Resource>,
    pub method: Method,
    /// The request URL relative to the base, as sent (for reads, which run as they are).
    pub url: String,
    pub target: Target,
    pub if_match: Option<u64>,
    pub if_none_exist: Option<Vec<(String, String)>>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

/// `batch` or `transaction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleKind {
    Batch,
    Transaction,
}

fn invalid(index: usize, element: &str, why: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, why).at(format!("Bundle.entry[{index}].{element}"))
}

/// Each entry of a request Bundle, parsed, or the issue that names why it cannot be.
pub type ParsedEntries = Vec<Result<BundleEntry, Issue>>;

/// Parses the request Bundle. `base_url` is stripped from absolute request URLs. An entry that
/// cannot be parsed is an issue naming it, in its place.
pub fn parse_bundle(mut bundle: Value, base_url: &str) -> Result<(BundleKind, ParsedEntries), Vec<Issue>> {
    let whole = |why: &str| vec![Issue::error(IssueType::Invalid, why)];
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(whole("POST to the base takes a Bundle of type batch or transaction"));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        _ => return Err(vec![Issue::error(IssueType::Invalid, "Bundle.type must be batch or transaction").at("Bundle.type")]),
    };
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(vec![Issue::error(IssueType::Structure, "Bundle.entry must be an array").at("Bundle.entry")]),
    };
    Ok((kind, entries.into_iter().enumerate().map(|(index, entry)| parse_entry(index, entry, base_url)).collect()))
}

fn parse_entry(index: usize, entry: Value, base_url: &str) -> Result<BundleEntry, Issue> {
    let Value::Object(mut entry) = entry else { return Err(invalid(index, "", "an entry must be an object")) };
    let resource = entry.remove("resource");
    let request = match entry.get("request") {
        Some(Value::Object(request)) => request,
        _ => return Err(invalid(index, "request", "every entry of a batch or transaction needs a request")),
    };
    let text = |name: &str| -> Result<Option<String>, Issue> {
        match request.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(invalid(index, &format!("request.{name}"), format!("request.{name} must be a string"))),
        }
    };
    let method = text("method")?
        .as_deref()
        .and_then(Method::parse)
        .ok_or_else(|| invalid(index, "request.method", "request.method must be GET, HEAD, POST, PUT, PATCH or DELETE"))?;
    let raw_url = text("url")?.ok_or_else(|| invalid(index, "request.url", "request.url is required"))?;
    let url = relative_url(&raw_url, base_url);
    let target = if method.is_read() {
        Target::Read
    } else {
        parse_target(&url).map_err(|why| invalid(index, "request.url", why))?
    };
    let resource = match resource {
        None => None,
        Some(Value::Object(resource)) => Some(resource),
        Some(_) => return Err(invalid(index, "resource", "resource must be a JSON object")),
    };
    check_resource(index, method, &target, resource.as_ref())?;
    let if_match = match text("ifMatch")? {
        None => None,
        Some(tag) => Some(parse_etag(&tag).ok_or_else(|| invalid(index, "request.ifMatch", "ifMatch must be an ETag such as W/\"3\""))?),
    };
    let if_none_exist = text("ifNoneExist")?.map(|criteria| {
        let query = criteria.split_once('?').map_or(criteria.as_str(), |(_, query)| query);
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    });
    if if_none_exist.is_some() && method != Method::Post {
        return Err(invalid(index, "request.ifNoneExist", "ifNoneExist applies to POST only"));
    }
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(_) => return Err(invalid(index, "fullUrl", "fullUrl must be a string")),
    };
    Ok(BundleEntry {
        index,
        full_url,
        resource,
        method,
        url,
        target,
        if_match,
        if_none_exist,
        if_none_match: text("ifNoneMatch")?,
        if_modified_since: text("ifModifiedSince")?,
    })
}

/// The URL relative to the base: an absolute URL on this server loses its base, a leading `/` goes.
fn relative_url(url: &str, base_url: &str) -> String {
    let url = url.strip_prefix(base_url).unwrap_or(url);
    url.trim_start_matches('/').to_string()
}

fn parse_target(url: &str) -> Result<Target, String> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let resource_type = segments[0].to_string();
    if !fhir_core::definitions::r4().is_resource_type(&resource_type) {
        return Err("request.url must start with a FHIR R4 resource type".into());
    }
    match (segments.len(), query) {
        (1, None) => Ok(Target::Type { resource_type }),
        (1, Some(query)) => {
            let criteria: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            Ok(Target::Conditional { resource_type, criteria })
        }
        (2, None) if is_valid_id(segments[1]) => Ok(Target::Instance { resource_type, id: segments[1].to_string() }),
        (2, None) => Err("the id in request.url is not a valid FHIR id".into()),
        _ => Err("request.url must be [type], [type]/[id] or [type]?[criteria]".into()),
    }
}

/// Which methods take a resource, of which type.
fn check_resource(index: usize, method: Method, target: &Target, resource: Option<&Map<String, Value>>) -> Result<(), Issue> {
    let resource_type = || resource.and_then(|r| r.get("resourceType")).and_then(Value::as_str);
    match method {
        Method::Post | Method::Put => {
            let expected = target.resource_type().unwrap_or_default();
            match (resource, resource_type()) {
                (None, _) => Err(invalid(index, "resource", format!("a {} entry needs a resource", method.as_str()))),
                (Some(_), Some(found)) if found == expected => Ok(()),
                (Some(_), _) => Err(invalid(index, "resource.resourceType", "the resource's type does not match request.url")),
            }
        }
        Method::Patch => match resource_type() {
            Some("Parameters" | "Binary") => Ok(()),
            _ => Err(invalid(index, "resource", "a PATCH entry needs a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch")),
        },
        _ => Ok(()),
    }
    .and_then(|()| match (method, target) {
        (Method::Post, Target::Type { .. }) | (Method::Put | Method::Patch | Method::Delete, Target::Instance { .. } | Target::Conditional { .. }) => Ok(()),
        (Method::Get | Method::Head, _) => Ok(()),
        (Method::Post, _) => Err(invalid(index, "request.url", "POST takes a request.url of [type]")),
        _ => Err(invalid(index, "request.url", format!("{} takes a request.url of [type]/[id] or [type]?[criteria]", method.as_str()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(entries: Value) -> Result<Vec<BundleEntry>, Vec<Issue>> {
        let (_, entries) = parse_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), "http://h/fhir")?;
        let issues: Vec<Issue> = entries.iter().filter_map(|e| e.as_ref().err().cloned()).collect();
        if issues.is_empty() {
            Ok(entries.into_iter().flatten().collect())
        } else {
            Err(issues)
        }
    }

    #[test]
    fn targets_and_conditions() {
        let entries = parse(json!([
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|b"}},
            {"resource": {"resourceType": "Patient", "id": "x"}, "request": {"method": "PUT", "url": "http://h/fhir/Patient/x", "ifMatch": "W/\"2\""}},
            {"request": {"method": "DELETE", "url": "Patient?identifier=a|c"}},
            {"request": {"method": "GET", "url": "Patient?name=x"}}
        ]))
        .unwrap();
        assert_eq!(entries[0].if_none_exist, Some(vec![("identifier".into(), "a|b".into())]));
        assert_eq!(entries[1].target, Target::Instance { resource_type: "Patient".into(), id: "x".into() });
        assert_eq!(entries[1].if_match, Some(2));
        assert!(matches!(&entries[2].target, Target::Conditional { criteria, .. } if criteria[0].1 == "a|c"));
        assert_eq!(entries[3].target, Target::Read);
    }

    #[test]
    fn errors_name_the_entry() {
        let issues = parse(json!([
            {"request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation"}, "request": {"method": "PUT", "url": "Patient/1"}},
            {"request": {"method": "FETCH", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Nope/1"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient/1"}}
        ]))
        .unwrap_err();
        let places: Vec<&str> = issues.iter().map(|i| i.expression[0].as_str()).collect();
        assert_eq!(places, ["Bundle.entry[0].resource", "Bundle.entry[1].resource.resourceType", "Bundle.entry[2].request.method", "Bundle.entry[3].request.url", "Bundle.entry[4].request.url"]);
    }
}
