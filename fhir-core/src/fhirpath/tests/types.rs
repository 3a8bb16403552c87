//! `is`, `as` and `ofType`, as operators and functions.

use serde_json::{json, Value};

use super::*;

const NONE: [Value; 0] = [];

#[test]
fn is_tests_the_type_and_its_subtypes() {
    let observation = observation();
    assert_all_true(
        &observation,
        &[
            "Observation.value is Quantity",
            "Observation.value.is(Quantity)",
            "Observation.value is FHIR.Quantity",
            "(Observation.value is string) = false",
            "(Observation.value is Age) = false",
            "Observation.effective is dateTime",
            "Observation.effective is DateTime",
            "Observation.effective is System.DateTime",
            "(Observation.effective is date) = false",
            "Observation is Observation",
            "Observation is DomainResource",
            "Observation is Resource",
            "Observation.status is code",
            "Observation.status is string",
            "Observation.status is String",
            "(Observation.status is Integer) = false",
            "Observation.code is CodeableConcept",
            "Observation.code is Element",
            "Observation.component.first() is BackboneElement",
            "1 is Integer",
            "1 is System.Integer",
            "(1 is Decimal) = false",
            "1.5 is Decimal",
            "'a' is String",
            "('a' is string) = false",
            "true is Boolean",
            "@2020 is Date",
            "@2020-01-01T10:00Z is DateTime",
            "@T10:00 is Time",
            "4 'mg' is System.Quantity",
        ],
    );
    assert_eq!(truth("Observation.foo is Quantity", &observation), None);
    assert!(matches!(
        error("Observation.component.value is Quantity", &observation),
        FhirPathError::NotSingleton { operation: "is", count: 3 }
    ));
}

#[test]
fn as_and_of_type_keep_the_items_of_the_type() {
    let observation = observation();
    for expression in [
        "Observation.value as Quantity",
        "Observation.value.as(Quantity)",
        "Observation.value.ofType(Quantity)",
        "(Observation.value as Quantity) | (Observation.value as SampledData)",
    ] {
        assert_eq!(types_of(expression, &observation), [Some("Quantity")], "{expression}");
    }
    assert_eq!(eval("(Observation.value as Quantity).value", &observation), [json!(185)]);
    assert_eq!(eval("Observation.value as string", &observation), NONE);
    assert_eq!(eval("Observation.value as CodeableConcept", &observation), NONE);
    // On several items `as` filters, as R4 search parameters expect.
    assert_eq!(eval("(Observation.component.value as Quantity).value", &observation), [json!(107)]);
    assert_eq!(eval("Observation.component.value.ofType(string)", &observation).len(), 2);
    assert_eq!(eval("Observation.effective.as(DateTime)", &observation), [json!("2016-03-28")]);
    assert_eq!(eval("(1 | 'a' | 2.5).ofType(Integer)", &observation), [json!(1)]);
    assert_eq!(eval("(1 | 'a' | 2.5).ofType(String)", &observation), [json!("a")]);
}

#[test]
fn quantity_subtypes_are_quantities() {
    let condition = json!({"resourceType": "Condition",
        "onsetAge": {"value": 52, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementRange": {"low": {"value": 54}}});
    assert_eq!(types_of("Condition.onset", &condition), [Some("Age")]);
    assert_eq!(types_of("Condition.onset.as(Age) | Condition.onset.as(Range)", &condition), [Some("Age")]);
    assert_eq!(types_of("Condition.onset as Quantity", &condition), [Some("Age")]);
    assert_eq!(eval("Condition.onset.as(Duration)", &condition), NONE);
    assert_eq!(types_of("Condition.abatement.as(Age) | Condition.abatement.as(Range)", &condition), [Some("Range")]);
    assert_eq!(eval("Condition.abatement.as(Range).low.value", &condition), [json!(54)]);
    assert_eq!(eval("Condition.onset = 52 'a'", &condition), [json!(true)]);
}

#[test]
fn primitive_subtypes_follow_the_definitions() {
    let map = json!({"resourceType": "ConceptMap", "sourceCanonical": "http://example.org/vs", "targetUri": "urn:x"});
    assert_eq!(eval("ConceptMap.source as canonical", &map), [json!("http://example.org/vs")]);
    assert_eq!(eval("ConceptMap.target as uri", &map), [json!("urn:x")]);
    assert_eq!(eval("ConceptMap.target as canonical", &map), NONE);
    // canonical derives from uri in R4, so `as uri` also keeps a canonical.
    assert_eq!(eval("ConceptMap.source as uri", &map), [json!("http://example.org/vs")]);
}
