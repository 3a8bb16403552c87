//! Unit tests of the FHIRPath engine, with small hand-written resources.

mod conversions;
mod functions;
mod invariants;
mod navigation;
mod operators;
mod parsing;
mod properties;
mod types;

use serde_json::{json, Value};

use super::{compile, FhirPathError};

pub(super) fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2020-01-01T00:00:00Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "contained": [
            {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Careful"}]},
            {"resourceType": "Organization", "id": "org", "name": "Acme"}
        ],
        "extension": [
            {"url": "http://example.org/eye-colour", "valueCode": "blue"},
            {"url": "http://example.org/nickname-count", "valueInteger": 2}
        ],
        "active": true,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"],
             "_given": [null, {"extension": [{"url": "http://example.org/given-kind", "valueString": "middle"}]}]},
            {"use": "usual", "given": ["Jim"]},
            {"use": "maiden", "family": "Windsor", "_family": {"id": "f1"}}
        ],
        "telecom": [
            {"system": "phone", "value": "(03) 5555 6473", "use": "work"},
            {"system": "email", "value": "jim@example.org"}
        ],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "deceasedBoolean": false,
        "contact": [{"name": {"family": "du Marché", "given": ["Bénédicte"]}, "gender": "female"}],
        "generalPractitioner": [
            {"reference": "#doc"},
            {"reference": "Practitioner/123/_history/2"},
            {"reference": "http://example.org/fhir/Organization/9"},
            {"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
            {"type": "Organization", "identifier": {"value": "x"}}
        ],
        "managingOrganization": {"reference": "#org"}
    })
}

pub(super) fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body Weight"},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2016-03-28",
        "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 107, "unit": "mmHg"}},
            {"code": {"text": "note"}, "valueString": "fine"},
            {"code": {"text": "absent"}, "_valueString": {"extension": [{"url": "http://example.org/why", "valueCode": "asked"}]}}
        ]
    })
}

/// The values of an expression as JSON; panics if it does not compile or evaluate.
pub(super) fn eval(expression: &str, resource: &Value) -> Vec<Value> {
    let compiled = compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let items = compiled.evaluate(resource).unwrap_or_else(|e| panic!("{expression}: {e}"));
    items.iter().map(|i| i.to_json()).collect()
}

/// The type names of an expression's values.
pub(super) fn types_of(expression: &str, resource: &Value) -> Vec<Option<&'static str>> {
    let compiled = compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let items = compiled.evaluate(resource).unwrap_or_else(|e| panic!("{expression}: {e}"));
    items.iter().map(|i| i.type_name()).collect()
}

/// A boolean expression's value: `None` for empty; panics for anything else.
pub(super) fn truth(expression: &str, resource: &Value) -> Option<bool> {
    match eval(expression, resource).as_slice() {
        [] => None,
        [Value::Bool(value)] => Some(*value),
        other => panic!("{expression}: expected a boolean or empty, got {other:?}"),
    }
}

/// Asserts that every expression is true on the resource.
pub(super) fn assert_all_true(resource: &Value, expressions: &[&str]) {
    for expression in expressions {
        assert_eq!(truth(expression, resource), Some(true), "{expression}");
    }
}

/// The error evaluating (or compiling) an expression; panics if there is none.
pub(super) fn error(expression: &str, resource: &Value) -> FhirPathError {
    match compile(expression) {
        Err(error) => error,
        Ok(compiled) => match compiled.evaluate(resource) {
            Err(error) => error,
            Ok(items) => panic!("{expression}: expected an error, got {items:?}"),
        },
    }
}

pub(super) fn empty() -> Value {
    json!({"resourceType": "Basic"})
}
