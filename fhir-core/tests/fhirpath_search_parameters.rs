//! The FHIRPath engine against the R4 SearchParameters and the official R4 examples: every
//! expression compiles, every parameter evaluates without error on every example of its base
//! types (and on the resources inside example Bundles), and known values come out.
//!
//! The examples come from `scripts/fetch-examples` (run here if they are missing) into
//! `${FHIR_R4_EXAMPLES:-$HOME/.cache/fhir-r4-examples}`.

#[path = "support/r4_examples.rs"]
mod r4_examples;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use fhir_core::definitions::{r4, SearchParamType, SearchParameter};
use fhir_core::fhirpath::{compile, Expression, Item};
use serde_json::Value;


/// The examples by file name, parsed once per test binary.
fn examples() -> &'static Vec<(String, Value)> {
    static EXAMPLES: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    EXAMPLES.get_or_init(|| r4_examples::load(&[]))
}

fn example(name: &str) -> &'static Value {
    examples()
        .iter()
        .find(|(file, _)| file == name)
        .map(|(_, json)| json)
        .unwrap_or_else(|| panic!("no example {name}"))
}

/// Each example, and each resource inside an example Bundle, as (label, resource).
fn instances() -> Vec<(String, &'static Value)> {
    let mut instances = Vec::new();
    for (name, json) in examples() {
        instances.push((name.clone(), json));
        if let Some(entries) = json.get("entry").and_then(Value::as_array) {
            for (i, entry) in entries.iter().enumerate() {
                if let Some(resource) = entry.get("resource").filter(|r| r.get("resourceType").is_some()) {
                    instances.push((format!("{name} entry[{i}]"), resource));
                }
            }
        }
    }
    instances
}

fn applies_to(parameter: &SearchParameter, resource_type: &str) -> bool {
    let is_domain_resource = r4().is_domain_resource(resource_type);
    parameter
        .base
        .iter()
        .any(|base| base == resource_type || base == "Resource" || (base == "DomainResource" && is_domain_resource))
}

struct Compiled {
    parameter: &'static SearchParameter,
    expression: Expression,
    components: Vec<Expression>,
}

fn compiled_parameters() -> Vec<Compiled> {
    r4().search_parameters()
        .iter()
        .filter_map(|parameter| {
            let source = parameter.expression.as_deref()?;
            let expression = compile(source).unwrap_or_else(|e| panic!("{} ({}): {e}", parameter.url, source));
            let components = parameter
                .component
                .iter()
                .map(|c| {
                    compile(&c.expression)
                        .unwrap_or_else(|e| panic!("{} component {}: {e}", parameter.url, c.expression))
                })
                .collect();
            Some(Compiled { parameter, expression, components })
        })
        .collect()
}

fn by_code<'a>(resource: &'a Value, resource_type: &str, code: &str) -> Vec<Item<'a>> {
    let parameter = r4().search_parameter(resource_type, code).unwrap_or_else(|| panic!("{resource_type}.{code}"));
    let source = parameter.expression.as_deref().expect("an expression");
    compile(source).expect("compiles").evaluate(resource).unwrap_or_else(|e| panic!("{source}: {e}"))
}

#[test]
fn every_search_parameter_expression_compiles() {
    let parameters = r4().search_parameters();
    let with_expression = parameters.iter().filter(|p| p.expression.is_some()).count();
    let compiled = compiled_parameters();
    assert_eq!(compiled.len(), with_expression);
    assert!(compiled.len() >= 1380, "only {} expressions", compiled.len());
    let components: usize = compiled.iter().map(|c| c.components.len()).sum();
    let expected: usize = parameters.iter().filter(|p| p.expression.is_some()).map(|p| p.component.len()).sum();
    assert_eq!(components, expected, "every composite component compiles too");
    assert!(components >= 90, "only {components} components");
}

#[test]
fn every_search_parameter_evaluates_on_every_example_of_its_base() {
    let compiled = compiled_parameters();
    let mut by_type: HashMap<&str, Vec<&Compiled>> = HashMap::new();
    let resource_types: Vec<&str> = r4().resource_types().collect();
    for resource_type in &resource_types {
        by_type.insert(resource_type, compiled.iter().filter(|c| applies_to(c.parameter, resource_type)).collect());
    }

    let mut errors = Vec::new();
    let (mut pairs, mut pairs_with_values, mut values, mut component_values) = (0usize, 0usize, 0usize, 0usize);
    // The same counts for the example files alone, without the resources inside Bundles.
    let (mut file_pairs, mut file_pairs_with_values) = (0usize, 0usize);
    let mut untyped = Vec::new();
    let started = Instant::now();
    for (label, resource) in instances() {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let Some(parameters) = by_type.get(resource_type) else {
            errors.push(format!("{label}: unknown resourceType {resource_type}"));
            continue;
        };
        for compiled in parameters {
            pairs += 1;
            let items = match compiled.expression.evaluate(resource) {
                Ok(items) => items,
                Err(error) => {
                    errors.push(format!("{label} {}: {error}", compiled.parameter.url));
                    continue;
                }
            };
            let is_file = !label.contains(" entry[");
            file_pairs += usize::from(is_file);
            if !items.is_empty() {
                pairs_with_values += 1;
                file_pairs_with_values += usize::from(is_file);
                values += items.len();
            }
            for item in &items {
                // Values a search index would store are typed, except Bundle.entry[0].resource of
                // an unknown type, which cannot occur in the examples.
                if item.type_name().is_none() && compiled.parameter.kind != SearchParamType::Special {
                    untyped.push(format!("{label} {}", compiled.parameter.url));
                }
                for component in &compiled.components {
                    match component.evaluate_on(resource, item) {
                        Ok(found) => component_values += found.len(),
                        Err(error) => {
                            errors.push(format!("{label} {} component {component}: {error}", compiled.parameter.url))
                        }
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "example files: {file_pairs} (parameter, example) pairs, {file_pairs_with_values} with at least one value; \
         with Bundle entries: {pairs} pairs, {pairs_with_values} with values, {values} values, \
         {component_values} composite component values; in {elapsed:?}"
    );
    assert!(errors.is_empty(), "{} evaluation errors:\n{}", errors.len(), errors.join("\n"));
    assert!(untyped.is_empty(), "untyped values:\n{}", untyped.join("\n"));
    assert!(pairs > 30_000, "only {pairs} pairs evaluated");
    assert!(pairs_with_values > 8_000, "only {pairs_with_values} pairs yielded values");
    assert!(file_pairs_with_values > 5_000, "only {file_pairs_with_values} example pairs yielded values");
    assert!(component_values > 100, "only {component_values} composite component values");
}

#[test]
fn patient_name_and_family() {
    let patient = example("Patient-example.json");
    let names = by_code(patient, "Patient", "name");
    assert!(names.iter().all(|n| n.fhir_type() == Some("HumanName")));
    assert!(names.iter().any(|n| n.json().and_then(|j| j.get("family")) == Some(&Value::from("Chalmers"))));
    let families = by_code(patient, "Patient", "family");
    let families: Vec<&str> = families.iter().filter_map(|f| f.as_str()).collect();
    assert!(families.contains(&"Chalmers"), "{families:?}");
    let birth_date = by_code(patient, "Patient", "birthdate");
    assert_eq!(birth_date.len(), 1);
    assert_eq!(birth_date[0].as_str(), Some("1974-12-25"));
    assert_eq!(birth_date[0].fhir_type(), Some("date"));
    let ids = by_code(patient, "Patient", "_id");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].as_str(), Some("example"));
}

#[test]
fn patient_deceased_is_a_boolean_expression() {
    let alive = by_code(example("Patient-example.json"), "Patient", "deceased");
    assert_eq!(alive.len(), 1);
    assert_eq!(alive[0].as_bool(), Some(false));
    let deceased = by_code(example("Patient-pat4.json"), "Patient", "deceased");
    assert_eq!(deceased[0].as_bool(), Some(true));
}

#[test]
fn observation_value_as_quantity() {
    let observation = example("Observation-example.json");
    let values = by_code(observation, "Observation", "value-quantity");
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].fhir_type(), Some("Quantity"));
    let json = values[0].json().expect("a node");
    assert_eq!(json.get("value"), Some(&Value::from(185)));
    assert_eq!(json.get("code"), Some(&Value::from("[lb_av]")));
    assert!(by_code(observation, "Observation", "value-concept").is_empty());
    assert!(by_code(observation, "Observation", "value-string").is_empty());
}

#[test]
fn observation_subject_where_resolve_is_patient() {
    let observation = example("Observation-example.json");
    let patients = by_code(observation, "Observation", "patient");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0].fhir_type(), Some("Reference"));
    assert_eq!(patients[0].json().and_then(|r| r.get("reference")), Some(&Value::from("Patient/example")));
    let not_group = compile("Observation.subject.where(resolve() is Group)").expect("compiles");
    assert!(not_group.evaluate(observation).expect("evaluates").is_empty());
}

#[test]
fn condition_onset_and_abatement_age() {
    let condition = example("Condition-f202.json");
    let abatement = by_code(condition, "Condition", "abatement-age");
    assert_eq!(abatement.len(), 1);
    assert_eq!(abatement[0].fhir_type(), Some("Age"));
    assert_eq!(abatement[0].json().and_then(|a| a.get("value")), Some(&Value::from(54)));
    let onset = by_code(condition, "Condition", "onset-age");
    assert_eq!(onset[0].json().and_then(|a| a.get("value")), Some(&Value::from(52)));
    assert!(by_code(condition, "Condition", "onset-date").is_empty());
    let as_quantity = compile("Condition.abatement as Quantity").expect("compiles");
    assert_eq!(as_quantity.evaluate(condition).expect("evaluates").len(), 1, "an Age is a Quantity");
}

#[test]
fn extension_by_url_and_in_where() {
    let patient = example("Patient-newborn.json");
    let url = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";
    for source in [
        format!("Patient.extension('{url}').value"),
        format!("Patient.extension.where(url = '{url}').value"),
        format!("Patient.where(hasExtension('{url}')).extension('{url}').valueString"),
    ] {
        let values = compile(&source).expect("compiles").evaluate(patient).expect("evaluates");
        assert_eq!(values.len(), 1, "{source}");
        assert_eq!(values[0].as_str(), Some("Everywoman"), "{source}");
        assert_eq!(values[0].fhir_type(), Some("string"), "{source}");
    }
    let none = compile("Patient.extension('http://example.org/none')").expect("compiles");
    assert!(none.evaluate(patient).expect("evaluates").is_empty());
}

#[test]
fn bundle_first_entry_is_the_composition() {
    let bundle = example("Bundle-father.json");
    let compositions = by_code(bundle, "Bundle", "composition");
    assert_eq!(compositions.len(), 1);
    assert_eq!(compositions[0].fhir_type(), Some("Composition"));
    let typed = compile("Bundle.entry[0].resource as Composition").expect("compiles");
    let found = typed.evaluate(bundle).expect("evaluates");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].json().and_then(|c| c.get("id")), Some(&Value::from("180f219f-97a8-486d-99d9-ed631fe4fc57")));
    let title = compile("(Bundle.entry[0].resource as Composition).title").expect("compiles");
    assert_eq!(title.evaluate(bundle).expect("evaluates").len(), 1);
}

#[test]
fn composite_components_evaluate_on_the_composite_values() {
    let observation = example("Observation-example.json");
    let parameter = r4().search_parameter("Observation", "code-value-quantity").expect("composite");
    let values = by_code(observation, "Observation", "code-value-quantity");
    assert_eq!(values.len(), 1, "the composite's expression selects the Observation itself");
    let mut found = Vec::new();
    for component in &parameter.component {
        let expression = compile(&component.expression).expect("compiles");
        let items = expression.evaluate_on(observation, &values[0]).expect("evaluates");
        found.push(items.iter().filter_map(|i| i.fhir_type()).collect::<Vec<_>>().join(","));
    }
    assert_eq!(found, ["CodeableConcept", "Quantity"]);
}
