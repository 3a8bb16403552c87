//! `_summary` and `_elements`: reduced views of a resource, as the R4 search page defines them.
//!
//! - `_summary=true`: the elements marked `isSummary` in the base definition, plus mandatory
//!   ones, applied at the top level and inside backbone elements (a datatype value that is kept
//!   is kept whole);
//! - `_summary=text`: `text`, `id`, `meta` and the mandatory top-level elements;
//! - `_summary=data`: everything but `text`;
//! - `_summary=count`: a search returns no resources at all; if a resource is summarized in
//!   this mode anyway, it gets the `true` treatment (the smallest honest view);
//! - `_summary=false`: the whole resource.
//!
//! `_elements` keeps `resourceType`, `id`, `meta`, the listed top-level elements and the
//! mandatory ones. A primitive's `_name` sibling goes where its value goes. Whenever something
//! was removed, `meta.tag` gets the `SUBSETTED` tag so that no one mistakes the view for the
//! resource. Properties the definitions do not know are dropped by `true`, `text` and
//! `_elements`.

use serde_json::{json, Map, Value};

use crate::definitions::{r4, Definitions, Structure, TypeTarget};

/// System of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// Code of the tag marking a resource from which elements were left out.
pub const SUBSETTED_CODE: &str = "SUBSETTED";

/// The value of a `_summary` search parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryMode {
    True,
    Text,
    Data,
    Count,
    False,
}

impl SummaryMode {
    /// Parses the value of `_summary` (`true`, `text`, `data`, `count`, `false`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "true" => Some(SummaryMode::True),
            "text" => Some(SummaryMode::Text),
            "data" => Some(SummaryMode::Data),
            "count" => Some(SummaryMode::Count),
            "false" => Some(SummaryMode::False),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SummaryMode::True => "true",
            SummaryMode::Text => "text",
            SummaryMode::Data => "data",
            SummaryMode::Count => "count",
            SummaryMode::False => "false",
        }
    }
}

/// The view of a resource that `_summary=mode` asks for. Anything that is not a resource of a
/// known type comes back unchanged.
pub fn summarize(resource: &Value, mode: SummaryMode) -> Value {
    let definitions = r4();
    let Some((map, structure)) = known_resource(definitions, resource) else {
        return resource.clone();
    };
    let (kept, removed) = match mode {
        SummaryMode::False => return resource.clone(),
        SummaryMode::True | SummaryMode::Count => summary_object(definitions, map, structure, true),
        SummaryMode::Text => top_level(map, structure, |key| matches!(key, "id" | "meta" | "text")),
        SummaryMode::Data => {
            let kept: Map<String, Value> =
                map.iter().filter(|(key, _)| *key != "text").map(|(k, v)| (k.clone(), v.clone())).collect();
            let removed = kept.len() != map.len();
            (kept, removed)
        }
    };
    finish(kept, removed)
}

/// The view of a resource that `_elements=a,b,c` asks for: `resourceType`, `id`, `meta`, the
/// listed top-level elements and the mandatory ones. Names may be given as in FHIRPath
/// (`deceased`), as in JSON (`deceasedBoolean`), with `[x]`, or prefixed with the resource type
/// (`Patient.name`); names that are not elements of the type are ignored.
pub fn select_elements(resource: &Value, elements: &[&str]) -> Value {
    let definitions = r4();
    let Some((map, structure)) = known_resource(definitions, resource) else {
        return resource.clone();
    };
    let resource_type = structure.path.as_str();
    let requested: Vec<&str> = elements
        .iter()
        .map(|name| name.trim())
        .map(|name| name.strip_prefix(resource_type).and_then(|rest| rest.strip_prefix('.')).unwrap_or(name))
        .map(|name| name.strip_suffix("[x]").unwrap_or(name))
        .collect();
    let (kept, removed) = top_level(map, structure, |key| {
        matches!(key, "id" | "meta")
            || requested.contains(&key)
            || structure.child(key).is_some_and(|(element, _)| requested.contains(&element.base_name()))
    });
    finish(kept, removed)
}

fn known_resource<'a>(
    definitions: &'a Definitions,
    resource: &'a Value,
) -> Option<(&'a Map<String, Value>, &'a Structure)> {
    let map = resource.as_object()?;
    let resource_type = map.get("resourceType")?.as_str()?;
    if !definitions.is_resource_type(resource_type) {
        return None;
    }
    Some((map, definitions.structure_of_type(resource_type)?))
}

/// Keeps `resourceType`, the top-level properties `wanted` accepts (by JSON name, with a
/// primitive's `_name` following `name`) and the mandatory elements.
fn top_level(
    map: &Map<String, Value>,
    structure: &Structure,
    wanted: impl Fn(&str) -> bool,
) -> (Map<String, Value>, bool) {
    let mut kept = Map::new();
    let mut removed = false;
    for (key, value) in map {
        let name = key.strip_prefix('_').unwrap_or(key);
        let keep =
            key == "resourceType" || wanted(name) || structure.child(name).is_some_and(|(element, _)| element.min > 0);
        if keep {
            kept.insert(key.clone(), value.clone());
        } else {
            removed = true;
        }
    }
    (kept, removed)
}

/// `_summary=true` for one object: summary and mandatory elements, recursing into backbone
/// elements.
fn summary_object(
    definitions: &Definitions,
    map: &Map<String, Value>,
    structure: &Structure,
    is_resource: bool,
) -> (Map<String, Value>, bool) {
    let mut kept = Map::new();
    let mut removed = false;
    for (key, value) in map {
        if is_resource && key == "resourceType" {
            kept.insert(key.clone(), value.clone());
            continue;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        let Some((element, ty)) = structure.child(name) else {
            removed = true;
            continue;
        };
        if !element.is_summary && element.min == 0 {
            removed = true;
            continue;
        }
        let backbone = match ty.target {
            TypeTarget::Complex(id) if ty.code == "BackboneElement" || ty.code == "Element" => {
                Some(definitions.structure(id))
            }
            _ => None,
        };
        let value = match backbone {
            Some(inner) if !key.starts_with('_') => {
                let (value, inner_removed) = summary_value(definitions, value, inner);
                removed |= inner_removed;
                value
            }
            _ => value.clone(),
        };
        kept.insert(key.clone(), value);
    }
    (kept, removed)
}

fn summary_value(definitions: &Definitions, value: &Value, structure: &Structure) -> (Value, bool) {
    match value {
        Value::Object(map) => {
            let (kept, removed) = summary_object(definitions, map, structure, false);
            (Value::Object(kept), removed)
        }
        Value::Array(items) => {
            let mut removed = false;
            let items = items
                .iter()
                .map(|item| {
                    let (item, item_removed) = summary_value(definitions, item, structure);
                    removed |= item_removed;
                    item
                })
                .collect();
            (Value::Array(items), removed)
        }
        other => (other.clone(), false),
    }
}

/// Adds the SUBSETTED tag if something was removed, keeping `resourceType`, `id` and `meta`
/// first.
fn finish(kept: Map<String, Value>, removed: bool) -> Value {
    if !removed {
        return Value::Object(kept);
    }
    let mut out = Map::new();
    for key in ["resourceType", "id", "_id"] {
        if let Some(value) = kept.get(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
    let mut meta = kept.get("meta").cloned().unwrap_or_else(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            let present = tags.iter().any(|tag| {
                tag.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
                    && tag.get("code").and_then(Value::as_str) == Some(SUBSETTED_CODE)
            });
            if !present {
                tags.push(json!({
                    "system": SUBSETTED_SYSTEM,
                    "code": SUBSETTED_CODE,
                    "display": "Resource encoded in summary mode",
                }));
            }
        }
    }
    out.insert("meta".to_string(), meta);
    for (key, value) in kept {
        if !out.contains_key(&key) {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "extension": [{"url": "http://example.org/e", "valueString": "v"}],
            "identifier": [{"system": "http://example.org/mrn", "value": "1"}],
            "name": [{"family": "Doe", "given": ["Jane"]}],
            "gender": "female",
            "birthDate": "1970-01-01",
            "_birthDate": {"id": "bd"},
            "deceasedBoolean": false,
            "maritalStatus": {"text": "married"},
            "contact": [{"name": {"family": "Doe"}}],
            "link": [{"other": {"reference": "Patient/2"}, "type": "seealso", "extension": [{"url": "http://example.org/l", "valueString": "x"}]}]
        })
    }

    fn keys(value: &Value) -> Vec<&str> {
        value.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    fn is_subsetted(value: &Value) -> bool {
        value["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["code"] == SUBSETTED_CODE && t["system"] == SUBSETTED_SYSTEM))
    }

    #[test]
    fn parses_summary_values() {
        for mode in [SummaryMode::True, SummaryMode::Text, SummaryMode::Data, SummaryMode::Count, SummaryMode::False] {
            assert_eq!(SummaryMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SummaryMode::parse("TRUE"), None);
        assert_eq!(SummaryMode::parse(""), None);
    }

    #[test]
    fn summary_true_keeps_summary_and_mandatory_elements() {
        let summary = summarize(&patient(), SummaryMode::True);
        assert_eq!(
            keys(&summary),
            [
                "resourceType",
                "id",
                "meta",
                "identifier",
                "name",
                "gender",
                "birthDate",
                "_birthDate",
                "deceasedBoolean",
                "link"
            ]
        );
        assert!(is_subsetted(&summary));
        assert_eq!(summary["meta"]["versionId"], "2");
        // Inside a backbone element the same rule applies: link.extension is not a summary element.
        assert_eq!(keys(&summary["link"][0]), ["other", "type"]);
        // Datatype values are kept whole.
        assert_eq!(summary["name"][0], patient()["name"][0]);

        // Mandatory elements are kept even when not marked summary (Appointment.participant).
        let appointment = json!({
            "resourceType": "Appointment", "status": "booked", "comment": "c",
            "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}]
        });
        assert_eq!(
            keys(&summarize(&appointment, SummaryMode::True)),
            ["resourceType", "meta", "status", "participant"]
        );
        assert_eq!(summarize(&patient(), SummaryMode::Count), summary);
    }

    #[test]
    fn summary_text_keeps_text_id_meta_and_mandatory() {
        let observation = json!({
            "resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "weight"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "valueQuantity": {"value": 1}, "_status": {"id": "s"}
        });
        let text = summarize(&observation, SummaryMode::Text);
        assert_eq!(keys(&text), ["resourceType", "id", "meta", "status", "code", "text", "_status"]);
        assert!(is_subsetted(&text));
    }

    #[test]
    fn summary_data_removes_only_text() {
        let data = summarize(&patient(), SummaryMode::Data);
        let mut expected = patient();
        expected.as_object_mut().map(|m| m.shift_remove("text"));
        assert!(is_subsetted(&data));
        expected["meta"] = data["meta"].clone();
        assert_eq!(data, expected);

        let without_text = json!({"resourceType": "Patient", "id": "p"});
        assert_eq!(summarize(&without_text, SummaryMode::Data), without_text, "nothing removed, no tag");
    }

    #[test]
    fn summary_false_and_unknown_input_are_unchanged() {
        assert_eq!(summarize(&patient(), SummaryMode::False), patient());
        let odd = json!({"resourceType": "Nope", "x": 1});
        assert_eq!(summarize(&odd, SummaryMode::True), odd);
        assert_eq!(summarize(&json!([1]), SummaryMode::Text), json!([1]));
    }

    #[test]
    fn subsetted_tag_is_added_once_beside_existing_tags() {
        let mut p = patient();
        p["meta"]["tag"] = json!([{"system": "http://example.org/tags", "code": "a"}]);
        let once = summarize(&p, SummaryMode::True);
        let twice = summarize(&once, SummaryMode::Text);
        let tags = twice["meta"]["tag"].as_array().cloned().unwrap_or_default();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0]["code"], "a");
    }

    #[test]
    fn elements_keeps_the_listed_and_the_mandatory() {
        let selected = select_elements(&patient(), &["name", "birthDate", "deceased", "Patient.gender", "nonsense"]);
        assert_eq!(
            keys(&selected),
            ["resourceType", "id", "meta", "name", "gender", "birthDate", "_birthDate", "deceasedBoolean"]
        );
        assert!(is_subsetted(&selected));

        let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "v", "note": [{"text": "n"}]});
        let selected = select_elements(&observation, &["value[x]"]);
        assert_eq!(keys(&selected), ["resourceType", "meta", "status", "code", "valueString"]);

        let minimal = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "x"}]});
        assert_eq!(select_elements(&minimal, &["name"]), minimal, "nothing removed, no tag");
    }
}
