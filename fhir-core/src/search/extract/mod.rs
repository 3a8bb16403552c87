//! Extraction: the index values of every SearchParameter of a resource's type (the R4 ones and
//! the custom ones of [`super::registry`]), found by the parameters' FHIRPath expressions and
//! converted by the parameter's type and the FHIR type of each value found (a token from a
//! CodeableConcept is its codings and its text; a date from a Period is its range; a reference
//! is its type and id, its URL, and its identifier).
//!
//! Each parameter's expression is reduced per resource type to the part that can give values
//! there (`plan`), and skipped on a resource that lacks every element it navigates from.
//! Repeated values of one parameter are stored once, and a composite occurrence only when each
//! of its components has a value.

mod plan;

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::index::{normalize, IndexEntry, IndexValue};
use super::registry;
use super::value::Decimal;
use crate::definitions::{r4, SearchParamType, SearchParameter};
use crate::fhirpath::{compile, Expression, Item, ItemValue};
use crate::instant::{parse_range, unix_millis};

/// A parameter with its compiled expressions, for one resource type.
pub(super) struct Compiled {
    code: String,
    kind: SearchParamType,
    expression: Expression,
    /// Top-level elements one of which the resource must have for `expression` to give anything
    /// (see [`plan`]); `None`: always evaluate.
    needs: Option<Vec<String>>,
    /// For composites: each component's type and expression (relative to the composite's value).
    components: Vec<(SearchParamType, Expression)>,
    /// For a token on a `code` element with a required binding to codes of one system: that
    /// system, which the element's values imply (`Patient.gender` is in
    /// `http://hl7.org/fhir/administrative-gender`).
    implied_system: Option<String>,
}

/// Compiled parameters by resource type.
pub(super) type CompiledByType = HashMap<String, Vec<Compiled>>;

/// Parameters answered from the resource rows themselves, not from extracted values.
const FROM_RESOURCE_ROW: &[&str] = &["_id", "_lastUpdated"];

/// The core parameters; the custom ones are compiled when they are installed and kept with them
/// (see [`super::registry`]).
static COMPILED: LazyLock<CompiledByType> = LazyLock::new(|| compile_all(true));

/// Every resource type's core parameters; `planned: false` evaluates the expressions as written
/// (for tests that check the plans change nothing).
fn compile_all(planned: bool) -> CompiledByType {
    let definitions = r4();
    let component_kind = |url: &str| definitions.search_parameter_by_url(url).map(|parameter| parameter.kind);
    definitions
        .resource_types()
        .map(|resource_type| {
            let compiled = definitions
                .search_parameters_for(resource_type)
                .filter(|parameter| !FROM_RESOURCE_ROW.contains(&parameter.code.as_str()))
                .filter_map(|parameter| compile_parameter(resource_type, parameter, &component_kind, planned))
                .collect();
            (resource_type.to_string(), compiled)
        })
        .collect()
}

/// One parameter compiled for `resource_type`, its composite components' types found by
/// `component_kind` (from a component's definition url); `None` when there is nothing to
/// evaluate (no expression, one that does not compile, an unknown component).
pub(super) fn compile_parameter(
    resource_type: &str,
    parameter: &SearchParameter,
    component_kind: &dyn Fn(&str) -> Option<SearchParamType>,
    planned: bool,
) -> Option<Compiled> {
    let source = parameter.expression.as_deref()?;
    let plan = if planned { plan::plan(resource_type, source) } else { plan::unplanned(source) };
    let (expression, needs) = match compile(&plan.expression) {
        Ok(expression) => (expression, plan.needs),
        Err(_) => (compile(source).ok()?, None),
    };
    let components = parameter
        .component
        .iter()
        .map(|component| Some((component_kind(&component.definition)?, compile(&component.expression).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    let implied_system = match parameter.kind {
        SearchParamType::Token => implied_system(resource_type, source),
        _ => None,
    };
    Some(Compiled { code: parameter.code.clone(), kind: parameter.kind, expression, needs, components, implied_system })
}

/// The system implied by the required binding of the `code` element that `expression` selects on
/// `resource_type`, when the expression's part for that type is a plain path (`Patient.gender`)
/// and the bound value set draws its codes from one system.
fn implied_system(resource_type: &str, expression: &str) -> Option<String> {
    let definitions = r4();
    let prefix = format!("{resource_type}.");
    let mut paths = expression.split('|').map(str::trim).filter(|part| part.starts_with(&prefix));
    let path = paths.next()?;
    if paths.next().is_some() || !path.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return None;
    }
    let resolved = definitions.element(resource_type, path)?;
    if resolved.element_type?.code != "code" {
        return None;
    }
    let value_set = definitions.binding_value_set(resolved.element.binding.as_ref()?)?;
    let mut systems = value_set.systems();
    match (systems.next(), systems.next()) {
        (Some(system), None) => Some(system.to_string()),
        _ => None,
    }
}

/// Every index value of `resource` (its type from `resourceType`): those of the core parameters
/// of its type, then those of the custom ones installed now. Empty for an unknown type.
pub fn extract(resource: &Value) -> Vec<IndexEntry> {
    let custom = registry::snapshot();
    extract_with(&[&COMPILED, custom.compiled()], resource)
}

fn extract_with(compiled: &[&CompiledByType], resource: &Value) -> Vec<IndexEntry> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else { return Vec::new() };
    let Some(object) = resource.as_object() else { return Vec::new() };
    let parameters = compiled.iter().filter_map(|by_type| by_type.get(resource_type)).flatten();
    let mut entries = Vec::new();
    for parameter in parameters {
        if let Some(needs) = &parameter.needs {
            if !needs.iter().any(|element| plan::has_element(object, element)) {
                continue;
            }
        }
        let Ok(items) = parameter.expression.evaluate(resource) else { continue };
        if parameter.kind == SearchParamType::Composite {
            for (group, item) in items.iter().enumerate() {
                push_composite(&mut entries, resource, parameter, group as u32 + 1, item);
            }
        } else {
            let start = entries.len();
            for item in &items {
                push_values(&mut entries, &parameter.code, 0, parameter.kind, parameter.implied_system.as_deref(), item, Forms::All);
            }
            dedup_from(&mut entries, start);
        }
    }
    entries
}

/// One occurrence of a composite: its components' values, or nothing when a component has none
/// (a composite search needs every component to match in the same occurrence, so such an
/// occurrence can never match). Only the values a composite search compares are kept: those in
/// the component type's own form (no `:text` displays, no `:of-type` or `:identifier` forms).
fn push_composite<'a>(entries: &mut Vec<IndexEntry>, resource: &'a Value, parameter: &Compiled, group: u32, item: &Item<'a>) {
    // Every component first: most occurrences lack one (an Observation has one value[x] of four).
    let mut found = Vec::with_capacity(parameter.components.len());
    for (_, component) in &parameter.components {
        match component.evaluate_on(resource, item) {
            Ok(items) if !items.is_empty() => found.push(items),
            _ => return,
        }
    }
    let start = entries.len();
    for (index, ((kind, _), items)) in parameter.components.iter().zip(&found).enumerate() {
        let param = format!("{}${index}", parameter.code);
        let before = entries.len();
        for value in items {
            push_values(entries, &param, group, *kind, None, value, Forms::Own);
        }
        if entries.len() == before {
            entries.truncate(start);
            return;
        }
        dedup_from(entries, before);
    }
}

/// Which forms of a value to store: all of them, or (for composite components, which are only
/// compared as their type) only the parameter's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forms {
    All,
    /// No `:text` displays, no `:of-type` or `:identifier` forms.
    Own,
}

/// [`normalize`], without the Unicode decomposition when the text is ASCII (most is): the same
/// result, for a fraction of the work.
fn fold(text: &str) -> String {
    if !text.is_ascii() {
        return normalize(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for byte in text.bytes() {
        // `char::is_whitespace` in ASCII: tab, line feed, vertical tab, form feed, return, space.
        if matches!(byte, b'\t'..=b'\r' | b' ') {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(byte.to_ascii_lowercase() as char);
    }
    out
}

/// Drops repeated entries after `start` (the same coding twice, a display equal to the text):
/// a repeat never changes which resources match, and each one costs an index row.
fn dedup_from(entries: &mut Vec<IndexEntry>, start: usize) {
    // Most parameters have a handful of values; some (a Provenance's targets) thousands.
    const COMPARE_ALL_UP_TO: usize = 16;
    if entries.len() - start <= COMPARE_ALL_UP_TO {
        let mut index = start + 1;
        while index < entries.len() {
            if entries[start..index].contains(&entries[index]) {
                entries.remove(index);
            } else {
                index += 1;
            }
        }
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(entries.len() - start);
    let mut kept = start;
    for index in start..entries.len() {
        // Equal entries have equal hashes; equal hashes are compared in full.
        let repeated = !seen.insert(entry_hash(&entries[index])) && entries[start..kept].contains(&entries[index]);
        if !repeated {
            entries.swap(kept, index);
            kept += 1;
        }
    }
    entries.truncate(kept);
}

fn entry_hash(entry: &IndexEntry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    entry.param.hash(&mut hasher);
    entry.group.hash(&mut hasher);
    match &entry.value {
        IndexValue::String { normalized, exact } => (0u8, normalized, exact).hash(&mut hasher),
        IndexValue::Token { system, code } => (1u8, system, code).hash(&mut hasher),
        IndexValue::Text { normalized } => (2u8, normalized).hash(&mut hasher),
        IndexValue::OfType { system, code, value } => (3u8, system, code, value).hash(&mut hasher),
        IndexValue::Date { low, high } => (4u8, low, high).hash(&mut hasher),
        IndexValue::Number { value, .. } => (5u8, value.to_bits()).hash(&mut hasher),
        IndexValue::Quantity { value, code, .. } => (6u8, value.to_bits(), code).hash(&mut hasher),
        IndexValue::Reference { resource_type, id, version, url } => (7u8, resource_type, id, version, url).hash(&mut hasher),
        IndexValue::Uri(uri) => (8u8, uri).hash(&mut hasher),
    }
    hasher.finish()
}

fn push_values(entries: &mut Vec<IndexEntry>, param: &str, group: u32, kind: SearchParamType, implied_system: Option<&str>, item: &Item<'_>, forms: Forms) {
    let mut push = |param: &str, value: IndexValue| entries.push(IndexEntry { param: param.to_string(), group, value });
    match kind {
        SearchParamType::String => strings(item, &mut |text| {
            push(param, IndexValue::String { normalized: fold(text), exact: text.to_string() })
        }),
        SearchParamType::Token => tokens(param, implied_system, item, forms, &mut push),
        SearchParamType::Date => {
            if let Some((low, high)) = date_range(item) {
                push(param, IndexValue::Date { low, high });
            }
        }
        SearchParamType::Number => {
            if let Some(number) = number(item) {
                push(param, IndexValue::Number { value: number.value, low: number.low, high: number.high });
            }
        }
        SearchParamType::Quantity => {
            if let Some(value) = quantity(item) {
                push(param, value);
            }
        }
        SearchParamType::Reference => references(param, item, forms, &mut push),
        SearchParamType::Uri => {
            if let Some(text) = item.as_str() {
                push(param, IndexValue::Uri(text.to_string()));
            }
        }
        SearchParamType::Composite | SearchParamType::Special => {}
    }
}

fn json_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str).filter(|text| !text.is_empty())
}

fn json_strs<'a>(object: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    object.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// The strings a string parameter indexes: the value itself, or the parts of a name or address.
fn strings(item: &Item<'_>, push: &mut impl FnMut(&str)) {
    if let Some(text) = item.as_str() {
        push(text);
        return;
    }
    let Some(object) = item.json().filter(|v| v.is_object()) else { return };
    let (single, multiple): (&[&str], &[&str]) = match item.fhir_type() {
        Some("HumanName") => (&["family", "text"], &["given", "prefix", "suffix"]),
        Some("Address") => (&["city", "district", "state", "postalCode", "country", "text"], &["line"]),
        _ => (&[], &[]),
    };
    for key in single {
        if let Some(text) = json_str(object, key) {
            push(text);
        }
    }
    for key in multiple {
        for text in json_strs(object, key) {
            push(text);
        }
    }
}

fn tokens(param: &str, implied_system: Option<&str>, item: &Item<'_>, forms: Forms, push: &mut impl FnMut(&str, IndexValue)) {
    let extras = forms == Forms::All;
    match item.value() {
        ItemValue::Boolean(value) => return push(param, IndexValue::Token { system: None, code: value.to_string() }),
        ItemValue::Json(Value::Bool(value)) => return push(param, IndexValue::Token { system: None, code: value.to_string() }),
        _ => {}
    }
    if let Some(code) = item.as_str() {
        let system = implied_system.filter(|_| item.fhir_type() == Some("code")).map(String::from);
        return push(param, IndexValue::Token { system, code: code.to_string() });
    }
    let Some(object) = item.json().filter(|v| v.is_object()) else { return };
    let coding = |coding: &Value, push: &mut dyn FnMut(&str, IndexValue)| {
        if let Some(code) = json_str(coding, "code") {
            push(param, IndexValue::Token { system: json_str(coding, "system").map(String::from), code: code.to_string() });
        }
        if let Some(display) = json_str(coding, "display").filter(|_| extras) {
            push(param, IndexValue::Text { normalized: fold(display) });
        }
    };
    match item.fhir_type() {
        Some("Coding") => coding(object, push),
        Some("CodeableConcept") => {
            for each in object.get("coding").and_then(Value::as_array).into_iter().flatten() {
                coding(each, push);
            }
            if let Some(text) = json_str(object, "text").filter(|_| extras) {
                push(param, IndexValue::Text { normalized: fold(text) });
            }
        }
        Some("Identifier") => {
            if let Some(value) = json_str(object, "value") {
                push(param, IndexValue::Token { system: json_str(object, "system").map(String::from), code: value.to_string() });
                let of_type = format!("{param}:of-type");
                if let Some(kind) = object.get("type").filter(|_| extras) {
                    for each in kind.get("coding").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(code) = json_str(each, "code") {
                            push(
                                &of_type,
                                IndexValue::OfType { system: json_str(each, "system").map(String::from), code: code.to_string(), value: value.to_string() },
                            );
                        }
                    }
                    if let Some(text) = json_str(kind, "text") {
                        push(param, IndexValue::Text { normalized: fold(text) });
                    }
                }
            }
        }
        Some("ContactPoint") => {
            if let Some(value) = json_str(object, "value") {
                push(param, IndexValue::Token { system: json_str(object, "use").map(String::from), code: value.to_string() });
            }
        }
        Some("Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity") => {
            if let Some(code) = json_str(object, "code") {
                push(param, IndexValue::Token { system: json_str(object, "system").map(String::from), code: code.to_string() });
            }
        }
        Some("Reference") => {
            if let Some(identifier) = object.get("identifier") {
                if let Some(value) = json_str(identifier, "value") {
                    push(param, IndexValue::Token { system: json_str(identifier, "system").map(String::from), code: value.to_string() });
                }
            }
        }
        _ => {}
    }
}

/// Milliseconds `[low, high)` covered by a date-like value.
fn date_range(item: &Item<'_>) -> Option<(i64, i64)> {
    let single = |text: &str| parse_range(text).map(|(start, end)| (unix_millis(start), unix_millis(end)));
    match item.value() {
        ItemValue::Date(text) | ItemValue::DateTime(text) => return single(text),
        _ => {}
    }
    if let Some(text) = item.as_str() {
        return single(text);
    }
    let object = item.json().filter(|v| v.is_object())?;
    match item.fhir_type() {
        Some("Period") => {
            let low = json_str(object, "start").and_then(single).map_or(i64::MIN, |(low, _)| low);
            let high = json_str(object, "end").and_then(single).map_or(i64::MAX, |(_, high)| high);
            (low != i64::MIN || high != i64::MAX).then_some((low, high))
        }
        Some("Timing") => {
            let events: Vec<(i64, i64)> = json_strs(object, "event").filter_map(single).collect();
            if !events.is_empty() {
                let low = events.iter().map(|e| e.0).min()?;
                let high = events.iter().map(|e| e.1).max()?;
                return Some((low, high));
            }
            let bounds = object.get("repeat")?.get("boundsPeriod")?;
            let low = json_str(bounds, "start").and_then(single).map_or(i64::MIN, |(low, _)| low);
            let high = json_str(bounds, "end").and_then(single).map_or(i64::MAX, |(_, high)| high);
            Some((low, high))
        }
        _ => None,
    }
}

fn number(item: &Item<'_>) -> Option<Decimal> {
    match item.value() {
        ItemValue::Json(Value::Number(number)) => Decimal::parse(&number.to_string()),
        ItemValue::Integer(value) => Decimal::parse(&value.to_string()),
        ItemValue::Decimal(value) => Decimal::parse(&value.to_string()),
        _ => None,
    }
}

fn quantity(item: &Item<'_>) -> Option<IndexValue> {
    let object = item.json().filter(|v| v.is_object())?;
    let number = object.get("value").and_then(|v| v.as_number()).and_then(|n| Decimal::parse(&n.to_string()))?;
    let (system, code) = match item.fhir_type() {
        Some("Money") => (Some("urn:iso:std:iso:4217".to_string()), json_str(object, "currency").map(String::from)),
        _ => (json_str(object, "system").map(String::from), json_str(object, "code").or_else(|| json_str(object, "unit")).map(String::from)),
    };
    Some(IndexValue::Quantity {
        value: number.value,
        low: number.low,
        high: number.high,
        system,
        code,
        unit: json_str(object, "unit").map(String::from),
    })
}

fn references(param: &str, item: &Item<'_>, forms: Forms, push: &mut impl FnMut(&str, IndexValue)) {
    // canonical and uri values are references by URL, possibly with `|version`.
    if let Some(text) = item.as_str() {
        let (url, version) = match text.split_once('|') {
            Some((url, version)) => (url, Some(version.to_string())),
            None => (text, None),
        };
        let (resource_type, id) = url_tail(url);
        return push(param, IndexValue::Reference { resource_type, id, version, url: Some(url.to_string()) });
    }
    let Some(object) = item.json().filter(|v| v.is_object()) else { return };
    if let Some(reference) = json_str(object, "reference") {
        if let Some(value) = parse_reference(reference) {
            push(param, value);
        }
    }
    if let Some(identifier) = object.get("identifier").filter(|_| forms == Forms::All) {
        if let Some(value) = json_str(identifier, "value") {
            push(
                &format!("{param}:identifier"),
                IndexValue::Token { system: json_str(identifier, "system").map(String::from), code: value.to_string() },
            );
        }
    }
}

/// A `Reference.reference`: relative (`Patient/1`, `Patient/1/_history/2`), absolute, or a
/// `urn:`; contained references (`#x`) are not indexed.
fn parse_reference(reference: &str) -> Option<IndexValue> {
    if reference.starts_with('#') {
        return None;
    }
    if reference.contains("://") || reference.starts_with("urn:") {
        let (resource_type, id) = url_tail(reference);
        return Some(IndexValue::Reference { resource_type, id, version: None, url: Some(reference.to_string()) });
    }
    let segments: Vec<&str> = reference.split('/').collect();
    let (resource_type, id, version) = match segments.as_slice() {
        [resource_type, id] => (*resource_type, *id, None),
        [resource_type, id, "_history", version] => (*resource_type, *id, Some((*version).to_string())),
        _ => return None,
    };
    Some(IndexValue::Reference { resource_type: Some(resource_type.to_string()), id: Some(id.to_string()), version, url: None })
}

/// The type and id at the end of an absolute URL that names a resource.
fn url_tail(url: &str) -> (Option<String>, Option<String>) {
    let trimmed = url.split("/_history/").next().unwrap_or(url);
    let mut segments = trimmed.rsplit('/');
    match (segments.next(), segments.next()) {
        (Some(id), Some(resource_type)) if r4().is_resource_type(resource_type) && !id.is_empty() => {
            (Some(resource_type.to_string()), Some(id.to_string()))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(resource: &Value, param: &str) -> Vec<IndexValue> {
        extract(resource).into_iter().filter(|e| e.param == param).map(|e| e.value).collect()
    }

    #[test]
    fn patient_strings_tokens_dates() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "http://mrn", "value": "7", "type": {"coding": [{"system": "http://t", "code": "MR"}]}}],
            "name": [{"family": "Müller", "given": ["Zoë", "Ann"]}],
            "gender": "female",
            "birthDate": "1990-02",
            "active": true,
            "telecom": [{"system": "phone", "value": "555", "use": "home"}],
            "managingOrganization": {"reference": "Organization/org1"}
        });
        let names = values(&patient, "name");
        assert!(names.contains(&IndexValue::String { normalized: "muller".into(), exact: "Müller".into() }));
        assert!(names.contains(&IndexValue::String { normalized: "zoe".into(), exact: "Zoë".into() }));
        assert_eq!(
            values(&patient, "gender"),
            vec![IndexValue::Token { system: Some("http://hl7.org/fhir/administrative-gender".into()), code: "female".into() }],
            "a code takes the system of its required binding"
        );
        assert_eq!(values(&patient, "active"), vec![IndexValue::Token { system: None, code: "true".into() }]);
        assert_eq!(values(&patient, "identifier")[0], IndexValue::Token { system: Some("http://mrn".into()), code: "7".into() });
        assert_eq!(
            values(&patient, "identifier:of-type"),
            vec![IndexValue::OfType { system: Some("http://t".into()), code: "MR".into(), value: "7".into() }]
        );
        let IndexValue::Date { low, high } = values(&patient, "birthdate")[0] else { panic!() };
        assert_eq!(high - low, 28 * 24 * 3600 * 1000, "1990-02 covers all of February");
        assert_eq!(
            values(&patient, "organization"),
            vec![IndexValue::Reference { resource_type: Some("Organization".into()), id: Some("org1".into()), version: None, url: None }]
        );
        assert_eq!(values(&patient, "phone"), vec![IndexValue::Token { system: Some("home".into()), code: "555".into() }]);
    }

    #[test]
    fn observation_quantity_reference_and_composite() {
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}], "text": "BP sys"},
            "subject": {"reference": "Patient/p1", "identifier": {"system": "http://mrn", "value": "7"}},
            "effectivePeriod": {"start": "2020-01-01T10:00:00Z"},
            "valueQuantity": {"value": 120.5, "system": "http://unitsofmeasure.org", "code": "mm[Hg]", "unit": "mmHg"}
        });
        let code = values(&observation, "code");
        assert!(code.contains(&IndexValue::Token { system: Some("http://loinc.org".into()), code: "8480-6".into() }));
        assert!(code.contains(&IndexValue::Text { normalized: "bp sys".into() }));
        let IndexValue::Quantity { value, code, .. } = &values(&observation, "value-quantity")[0] else { panic!() };
        assert_eq!((*value, code.as_deref()), (120.5, Some("mm[Hg]")));
        assert_eq!(values(&observation, "subject:identifier"), vec![IndexValue::Token { system: Some("http://mrn".into()), code: "7".into() }]);
        assert_eq!(values(&observation, "patient").len(), 1, "patient is subject where it resolves to a Patient");
        let IndexValue::Date { high, .. } = values(&observation, "date")[0] else { panic!() };
        assert_eq!(high, i64::MAX, "an open period runs forever");
        let composite = extract(&observation).into_iter().filter(|e| e.param.starts_with("code-value-quantity$")).collect::<Vec<_>>();
        assert!(composite.iter().any(|e| e.param == "code-value-quantity$0" && e.group == 1));
        assert!(composite.iter().any(|e| e.param == "code-value-quantity$1" && e.group == 1));
        assert!(composite.iter().all(|e| matches!(e.value, IndexValue::Token { .. } | IndexValue::Quantity { .. })), "no displays in composites");
        let all = extract(&observation);
        assert!(!all.iter().any(|e| e.param.starts_with("code-value-concept$")), "an occurrence without a value-concept is not stored");
        assert_eq!(all.iter().filter(|e| e.param == "code" && matches!(e.value, IndexValue::Text { .. })).count(), 2, "display and text");
    }

    #[test]
    fn fold_is_normalize() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for text in [every_ascii.as_str(), "  Hello   World ", "\tA\x0bB\x0cC\r\nD", "Zoë Müller", "", " ", "ABC-def_1"] {
            assert_eq!(fold(text), normalize(text), "{text:?}");
        }
    }

    /// The per-type plans only skip work: on every resource of the search corpus, extraction
    /// gives what the expressions as written give.
    #[test]
    fn plans_change_no_values() {
        let unplanned = compile_all(false);
        let directory = format!("{}/../testdata/search-corpus", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
        let mut checked = 0;
        for file in std::fs::read_dir(&directory).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let corpus: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for key in ["resources", "updates"] {
                for resource in corpus.get(key).and_then(Value::as_array).into_iter().flatten() {
                    // The core parameters only: a registry test may install custom ones meanwhile.
                    let planned = extract_with(&[&COMPILED], resource);
                    assert_eq!(planned, extract_with(&[&unplanned], resource), "{} in {}", resource["id"], path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} resources");
    }
}
