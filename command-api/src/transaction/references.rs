//! References between the entries of a bundle: finding them and rewriting them once the server
//! knows each entry's identity. The specification asks for every place a fullUrl may appear:
//! references, `uri`/`url`/`oid`/`uuid`/`canonical` elements (all JSON strings equal to it), and
//! `href`/`src` in narrative, including inside extensions and contained resources.

use std::collections::HashMap;

use serde_json::Value;

/// Replaces every string equal to a key of `identities` by its value, and every occurrence of a
/// key inside a narrative `div` attribute. Returns whether anything changed.
pub fn rewrite(value: &mut Value, identities: &HashMap<String, String>) -> bool {
    match value {
        Value::String(text) => {
            if let Some(identity) = identities.get(text.as_str()) {
                *text = identity.clone();
                return true;
            }
            false
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| rewrite(item, identities) | changed),
        Value::Object(map) => {
            let mut changed = false;
            for (name, item) in map.iter_mut() {
                changed |= match (name.as_str(), item) {
                    ("div", Value::String(xhtml)) => rewrite_narrative(xhtml, identities),
                    (_, item) => rewrite(item, identities),
                };
            }
            changed
        }
        _ => false,
    }
}

/// [`rewrite`] in every element of a resource.
pub fn rewrite_in(resource: &mut serde_json::Map<String, Value>, identities: &HashMap<String, String>) {
    resource.values_mut().for_each(|value| {
        rewrite(value, identities);
    });
}

/// The values of `href` and `src` attributes in XHTML that name a key of `identities`.
fn rewrite_narrative(xhtml: &mut String, identities: &HashMap<String, String>) -> bool {
    let mut out = String::with_capacity(xhtml.len());
    let mut rest = xhtml.as_str();
    let mut changed = false;
    while let Some(at) = ["href=", "src="].iter().filter_map(|attribute| rest.find(attribute).map(|i| i + attribute.len())).min() {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let Some(quote) = tail.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            rest = tail;
            continue;
        };
        let Some(end) = tail[1..].find(quote) else {
            rest = tail;
            break;
        };
        let value = &tail[1..=end];
        match identities.get(value) {
            Some(identity) => {
                out.push(quote);
                out.push_str(identity);
                changed = true;
            }
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    if changed {
        out.push_str(rest);
        *xhtml = out;
    }
    changed
}

/// Every `reference` string in `value` that passes `wanted`, each once, in document order.
pub fn references<'a>(value: &'a Value, wanted: &dyn Fn(&str) -> bool, found: &mut Vec<&'a str>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| references(item, wanted, found)),
        Value::Object(map) => {
            for (name, item) in map {
                match (name.as_str(), item) {
                    ("reference", Value::String(reference)) if wanted(reference) => {
                        if !found.contains(&reference.as_str()) {
                            found.push(reference);
                        }
                    }
                    (_, item) => references(item, wanted, found),
                }
            }
        }
        _ => {}
    }
}

/// [`references`] in every element of a resource.
pub fn references_in<'a>(resource: &'a serde_json::Map<String, Value>, wanted: &dyn Fn(&str) -> bool, found: &mut Vec<&'a str>) {
    resource.values().for_each(|value| references(value, wanted, found));
}

/// A conditional reference: `Patient?identifier=...` (a type, then a query).
pub fn is_conditional_reference(reference: &str) -> bool {
    reference.split_once('?').is_some_and(|(resource_type, _)| fhir_core::definitions::r4().is_resource_type(resource_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_everywhere_a_full_url_can_be() {
        let identities = HashMap::from([("urn:uuid:a".to_string(), "Patient/1".to_string())]);
        let mut resource = json!({
            "resourceType": "Observation",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:a\">p</a></div>"},
            "contained": [{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:a"}]}],
            "extension": [{"url": "http://e", "valueReference": {"reference": "urn:uuid:a"}}],
            "subject": {"reference": "urn:uuid:a"},
            "focus": [{"reference": "urn:uuid:other"}],
            "derivedFrom": [{"reference": "urn:uuid:abc"}]
        });
        assert!(rewrite(&mut resource, &identities));
        assert_eq!(resource["subject"]["reference"], "Patient/1");
        assert_eq!(resource["extension"][0]["valueReference"]["reference"], "Patient/1");
        assert_eq!(resource["contained"][0]["target"][0]["reference"], "Patient/1");
        assert!(resource["text"]["div"].as_str().unwrap().contains("href=\"Patient/1\""));
        assert_eq!(resource["focus"][0]["reference"], "urn:uuid:other");
        assert_eq!(resource["derivedFrom"][0]["reference"], "urn:uuid:abc", "only whole values are rewritten");
    }

    #[test]
    fn finds_conditional_references() {
        let resource = json!({"subject": {"reference": "Patient?identifier=x|1"}, "performer": [{"reference": "Practitioner/2"}, {"reference": "Patient?identifier=x|1"}]});
        let mut found = Vec::new();
        references(&resource, &is_conditional_reference, &mut found);
        assert_eq!(found, ["Patient?identifier=x|1"]);
    }
}
