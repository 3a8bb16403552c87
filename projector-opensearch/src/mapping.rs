//! The mapping of a resource type's index, generated from its SearchParameters (the R4 ones
//! and the custom ones installed when it is generated).
//!
//! Every parameter is a `nested` field under `p`, so that the parts of one value (a token's
//! system and code, a date's low and high end) are matched together. Its sub-fields follow the
//! parameter's type, and `g` numbers the occurrence of a composite parameter its components
//! belong to. Besides the parameter itself the extraction (`fhir_core::search::extract`) writes
//! `{code}:identifier` (a token) for a reference and `{code}:of-type` for a token; a composite's
//! component values (`{code}${n}`) go inside one object per occurrence, under `{n}`, each nested
//! in turn. The mapping is strict: a value the mapping does not
//! describe is an error, never silently unindexed.

use fhir_core::definitions::{SearchParamType, SearchParameter};
use fhir_core::search::registry;
use serde_json::{json, Map, Value};

fn keyword() -> Value {
    json!({"type": "keyword"})
}

fn nested(fields: &[(&str, &str)]) -> Value {
    let mut properties = Map::new();
    properties.insert("g".into(), json!({"type": "integer"}));
    for (name, kind) in fields {
        properties.insert((*name).into(), json!({"type": kind}));
    }
    json!({"type": "nested", "properties": properties})
}

/// The nested field for values of a parameter of `kind`.
fn shape(kind: SearchParamType) -> Option<Value> {
    Some(match kind {
        SearchParamType::String => nested(&[("norm", "keyword"), ("exact", "keyword")]),
        SearchParamType::Token => nested(&[("system", "keyword"), ("code", "keyword"), ("text", "keyword")]),
        SearchParamType::Date => nested(&[("low", "long"), ("high", "long")]),
        SearchParamType::Number => nested(&[("value", "double"), ("low", "double"), ("high", "double")]),
        SearchParamType::Quantity => {
            nested(&[("value", "double"), ("low", "double"), ("high", "double"), ("system", "keyword"), ("code", "keyword"), ("unit", "keyword")])
        }
        SearchParamType::Reference => nested(&[("type", "keyword"), ("id", "keyword"), ("version", "keyword"), ("url", "keyword")]),
        SearchParamType::Uri => nested(&[("uri", "keyword")]),
        SearchParamType::Composite | SearchParamType::Special => return None,
    })
}

/// The fields one SearchParameter adds under `p`.
fn fields(parameter: &SearchParameter, into: &mut Map<String, Value>) {
    let code = &parameter.code;
    match parameter.kind {
        SearchParamType::Composite => {
            // One nested object per occurrence, its components nested inside it by position, so
            // a query can ask for all components of one occurrence.
            let mut components = Map::new();
            components.insert("g".into(), json!({"type": "integer"}));
            for (index, component) in parameter.component.iter().enumerate() {
                let kind = registry::search_parameter_by_url(&component.definition).map(|definition| definition.kind);
                if let Some(shape) = kind.and_then(shape) {
                    components.insert(index.to_string(), shape);
                }
            }
            into.insert(code.clone(), json!({"type": "nested", "properties": components}));
        }
        kind => {
            if let Some(shape) = shape(kind) {
                into.insert(code.clone(), shape);
            }
            if kind == SearchParamType::Reference {
                into.insert(format!("{code}:identifier"), nested(&[("system", "keyword"), ("code", "keyword")]));
            }
            if kind == SearchParamType::Token {
                into.insert(format!("{code}:of-type"), nested(&[("system", "keyword"), ("code", "keyword"), ("value", "keyword")]));
            }
        }
    }
}

/// The mappings of the index of `resource_type`.
pub fn mappings(resource_type: &str) -> Value {
    let mut parameters = Map::new();
    for parameter in registry::search_parameters_for(resource_type) {
        fields(parameter, &mut parameters);
    }
    json!({
        "dynamic": "strict",
        "properties": {
            "id": keyword(),
            "type": keyword(),
            "version": {"type": "long"},
            "position": {"type": "long"},
            "last_updated": {"type": "long"},
            "deleted": {"type": "boolean"},
            "p": {"dynamic": "strict", "properties": parameters}
        }
    })
}

/// The settings of the index of `resource_type`: OpenSearch allows 50 nested fields per index by
/// default, fewer than some types have parameters.
pub fn settings(mappings: &Value) -> Value {
    json!({ "index.mapping.nested_fields.limit": nested_fields(mappings).max(50) })
}

/// Nested fields at any depth.
fn nested_fields(mapping: &Value) -> usize {
    let own = usize::from(mapping["type"] == "nested");
    own + mapping["properties"].as_object().map_or(0, |properties| properties.values().map(nested_fields).sum())
}

/// The paths (`p.code.system`) a document uses that `mappings` does not describe.
pub fn unmapped(mappings: &Value, document: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    let described = &mappings["properties"]["p"]["properties"];
    if let Some(parameters) = document["p"].as_object() {
        for (parameter, values) in parameters {
            for value in values.as_array().into_iter().flatten() {
                check(&described[parameter], value, &format!("p.{parameter}"), &mut missing);
            }
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

/// Checks one stored value (or a composite's component values inside it) against its mapping.
fn check(described: &Value, value: &Value, path: &str, missing: &mut Vec<String>) {
    for (field, inner) in value.as_object().into_iter().flatten() {
        let mapped = &described["properties"][field];
        if mapped.is_null() {
            missing.push(format!("{path}.{field}"));
        } else if let Some(components) = inner.as_array() {
            for component in components {
                check(mapped, component, &format!("{path}.{field}"), missing);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_of_the_type_is_mapped_by_its_type() {
        let observation = mappings("Observation");
        let p = &observation["properties"]["p"]["properties"];
        assert_eq!(p["code"]["type"], "nested");
        assert_eq!(p["code"]["properties"]["system"]["type"], "keyword");
        assert_eq!(p["value-quantity"]["properties"]["value"]["type"], "double");
        assert_eq!(p["date"]["properties"]["low"]["type"], "long");
        assert_eq!(p["subject"]["properties"]["id"]["type"], "keyword");
        assert_eq!(p["subject:identifier"]["properties"]["code"]["type"], "keyword");
        assert_eq!(p["code-value-quantity"]["properties"]["1"]["properties"]["unit"]["type"], "keyword", "a composite's components by their own types");
        assert_eq!(p["_lastUpdated"]["properties"]["high"]["type"], "long", "parameters of Resource too");
        assert!(p.get("near").is_none());
    }

    #[test]
    fn values_the_mapping_does_not_describe_are_named() {
        let patient = mappings("Patient");
        let document = json!({"p": {"gender": [{"g": 0, "code": "male", "low": 1}], "no-such": [{"g": 0}]}});
        assert_eq!(unmapped(&patient, &document), ["p.gender.low", "p.no-such.g"]);
        assert_eq!(settings(&patient)["index.mapping.nested_fields.limit"], 50);
        assert!(settings(&mappings("Observation"))["index.mapping.nested_fields.limit"].as_u64().unwrap() > 50);
    }
}
