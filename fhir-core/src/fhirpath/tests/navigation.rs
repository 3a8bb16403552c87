//! Path navigation: type-name first steps, arrays, choice elements, typing from the
//! definitions, primitive extensions, and JSON the definitions do not describe.

use serde_json::{json, Value};

use super::*;
use crate::fhirpath::{compile, Item, ItemType, ItemValue};

const NONE: [Value; 0] = [];

#[test]
fn a_type_name_first_step_matches_the_root() {
    let patient = patient();
    assert_eq!(eval("Patient.gender", &patient), [json!("male")]);
    assert_eq!(eval("Resource.id", &patient), [json!("p1")]);
    assert_eq!(eval("DomainResource.text.status", &patient), [json!("generated")]);
    assert_eq!(eval("id", &patient), [json!("p1")]);
    assert_eq!(eval("Observation.id", &patient), NONE, "another type's name matches nothing");
    assert_eq!(eval("Patient.Patient.gender", &patient), NONE, "only the first step may be a type name");
    assert_eq!(eval("Bundle.id", &json!({"resourceType": "Bundle", "id": "b"})), [json!("b")]);
    assert_eq!(
        eval("DomainResource.id", &json!({"resourceType": "Bundle", "id": "b"})),
        NONE,
        "a Bundle is no DomainResource"
    );
}

#[test]
fn arrays_flatten_in_document_order() {
    let patient = patient();
    assert_eq!(eval("Patient.name.given", &patient), [json!("Peter"), json!("James"), json!("Jim")]);
    assert_eq!(eval("Patient.name.family", &patient), [json!("Chalmers"), json!("Windsor")]);
    assert_eq!(eval("Patient.telecom.system", &patient), [json!("phone"), json!("email")]);
    assert_eq!(eval("Patient.contact.name.given", &patient), [json!("Bénédicte")]);
    assert_eq!(eval("Patient.nothing.here", &patient), NONE);
    assert_eq!(eval("Patient.gender.nothing", &patient), NONE);
}

#[test]
fn elements_are_typed_by_their_definitions() {
    let patient = patient();
    assert_eq!(types_of("Patient", &patient), [Some("Patient")]);
    assert_eq!(types_of("Patient.name", &patient), [Some("HumanName"); 3]);
    assert_eq!(types_of("Patient.name.given", &patient), [Some("string"); 3]);
    assert_eq!(types_of("Patient.gender", &patient), [Some("code")]);
    assert_eq!(types_of("Patient.birthDate", &patient), [Some("date")]);
    assert_eq!(types_of("Patient.active", &patient), [Some("boolean")]);
    assert_eq!(types_of("Patient.contact", &patient), [Some("BackboneElement")]);
    assert_eq!(types_of("Patient.contact.name", &patient), [Some("HumanName")]);
    assert_eq!(types_of("Patient.contact.gender", &patient), [Some("code")]);
    assert_eq!(types_of("Patient.meta.lastUpdated", &patient), [Some("instant")]);
    assert_eq!(types_of("Patient.contained", &patient), [Some("Practitioner"), Some("Organization")]);
    assert_eq!(types_of("Patient.contained.name", &patient), [Some("HumanName"), Some("string")]);
    assert_eq!(eval("Patient.contained.ofType(Organization).name", &patient), [json!("Acme")]);
    assert_eq!(types_of("Patient.generalPractitioner", &patient), [Some("Reference"); 5]);
    assert_eq!(types_of("Patient.extension.value", &patient), [Some("code"), Some("integer")]);
}

#[test]
fn choice_elements_are_found_and_typed_by_their_key() {
    let observation = observation();
    assert_eq!(types_of("Observation.value", &observation), [Some("Quantity")]);
    assert_eq!(eval("Observation.value.unit", &observation), [json!("lbs")]);
    assert_eq!(eval("Observation.effective", &observation), [json!("2016-03-28")]);
    assert_eq!(types_of("Observation.effective", &observation), [Some("dateTime")]);
    assert_eq!(
        types_of("Observation.component.value", &observation),
        [Some("Quantity"), Some("string"), Some("string")]
    );
    assert_eq!(eval("Observation.component.value.value", &observation), [json!(107)]);
    // The JSON name works too, and names nothing else.
    assert_eq!(eval("Observation.valueQuantity.value", &observation), [json!(185)]);
    assert_eq!(eval("Observation.valueString", &observation), NONE);
    assert_eq!(eval("Observation.val", &observation), NONE);
    // A choice primitive with only extensions is an item without a value.
    assert_eq!(eval("Observation.component[2].value.hasValue()", &observation), [json!(false)]);
    assert_eq!(eval("Observation.component[2].value.extension.value", &observation), [json!("asked")]);
    assert_eq!(eval("Observation.component.value.ofType(string)", &observation), [json!("fine"), Value::Null]);
}

#[test]
fn primitive_extensions_travel_with_their_values() {
    let patient = patient();
    let expression = compile("Patient.name.given").expect("compiles");
    let given = expression.evaluate(&patient).expect("evaluates");
    assert!(given[0].primitive_element().is_none());
    assert!(given[1].primitive_element().is_some());
    let extension_only = json!({"resourceType": "Patient", "_birthDate": {"extension": [{"url": "u", "valueCode": "unknown"}]},
        "name": [{"given": ["A"], "_given": [null, {"id": "second"}]}]});
    assert_eq!(eval("Patient.birthDate.exists()", &extension_only), [json!(true)]);
    assert_eq!(eval("Patient.birthDate.hasValue()", &extension_only), [json!(false)]);
    assert_eq!(eval("Patient.birthDate.extension('u').value", &extension_only), [json!("unknown")]);
    assert_eq!(eval("Patient.birthDate = @2000", &extension_only), NONE);
    assert_eq!(eval("Patient.name.given.count()", &extension_only), [json!(2)]);
    assert_eq!(eval("Patient.name.given.id", &extension_only), [json!("second")]);
}

#[test]
fn bundle_entries_and_indexers() {
    let bundle = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Composition", "id": "c", "title": "Summary"}},
        {"resource": {"resourceType": "Patient", "id": "p"}}]});
    assert_eq!(types_of("Bundle.entry.resource", &bundle), [Some("Composition"), Some("Patient")]);
    assert_eq!(eval("Bundle.entry[0].resource.id", &bundle), [json!("c")]);
    assert_eq!(eval("(Bundle.entry[0].resource as Composition).title", &bundle), [json!("Summary")]);
    assert_eq!(eval("Bundle.entry[1].resource as Composition", &bundle), NONE);
    assert_eq!(eval("Bundle.entry.resource.ofType(Patient).id", &bundle), [json!("p")]);
    assert_eq!(eval("Bundle.entry.resource.where($this is Patient).id", &bundle), [json!("p")]);
}

#[test]
fn json_the_definitions_do_not_describe_is_navigated_plainly() {
    let unknown = json!({"resourceType": "Foo", "a": [{"b": 1}, {"b": 2}], "valueQuantity": {"value": 3},
        "inner": {"resourceType": "Patient", "gender": "other"}});
    assert_eq!(eval("a.b", &unknown), [json!(1), json!(2)]);
    assert_eq!(types_of("a.b", &unknown), [None, None]);
    assert_eq!(types_of("value", &unknown), [Some("Quantity")]);
    assert_eq!(eval("inner.gender", &unknown), [json!("other")]);
    assert_eq!(types_of("inner.gender", &unknown), [Some("code")]);
    // Elements R4 does not define are absent, even if present in the JSON.
    assert_eq!(eval("Patient.favouriteColour", &json!({"resourceType": "Patient", "favouriteColour": "red"})), NONE);
}

#[test]
fn odd_roots_never_panic() {
    for root in [json!(null), json!(1), json!("text"), json!([1, 2]), json!({}), json!({"resourceType": 5})] {
        for expression in ["Patient.name", "a.b", "children()", "descendants()", "resolve()", "$this", "%resource.id"] {
            let compiled = compile(expression).expect("compiles");
            assert!(compiled.evaluate(&root).is_ok(), "{expression} on {root}");
        }
    }
}

#[test]
fn evaluate_on_an_item_keeps_the_resource() {
    let observation = observation();
    let component = compile("Observation.component").expect("compiles");
    let components = component.evaluate(&observation).expect("evaluates");
    let relative = compile("code.text | %resource.id | %context.code.text").expect("compiles");
    let found = relative.evaluate_on(&observation, &components[0]).expect("evaluates");
    let values: Vec<Value> = found.iter().map(Item::to_json).collect();
    assert_eq!(values, [json!("systolic"), json!("o1")]);
    let root = Item::resource(&observation);
    assert_eq!(root.fhir_type(), Some("Observation"));
    assert!(matches!(root.value(), ItemValue::Json(_)));
    assert!(matches!(root.item_type(), ItemType::Fhir(_)));
}
