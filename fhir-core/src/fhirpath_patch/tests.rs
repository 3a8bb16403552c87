use serde_json::{json, Value};

use super::parse::split_list_path;
use super::{apply, OperationError, OperationType, PatchError};
use crate::fhirpath::FhirPathError;
use crate::outcome::{Issue, IssueType};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "http://a", "value": "1"}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James", "Jim"], "_given": [null, {"id": "g2"}, null]}],
        "telecom": [
            {"system": "phone", "value": "555-1"},
            {"system": "email", "value": "p@example.org"}
        ],
        "gender": "male"
    })
}

/// A `Parameters` of one operation per list of parts.
fn patch(operations: Vec<Vec<Value>>) -> Value {
    let parameter: Vec<Value> =
        operations.into_iter().map(|parts| json!({"name": "operation", "part": parts})).collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

fn part(name: &str, key: &str, value: Value) -> Value {
    let mut part = json!({"name": name});
    part[key] = value;
    part
}

fn kind(code: &str) -> Value {
    part("type", "valueCode", json!(code))
}

fn path(text: &str) -> Value {
    part("path", "valueString", json!(text))
}

fn operation_error(result: Result<Value, PatchError>) -> (usize, OperationError) {
    match result {
        Err(PatchError::Operation { index, reason, .. }) => (index, reason),
        other => panic!("expected an operation error, got {other:?}"),
    }
}

#[test]
fn add_a_primitive_to_the_resource() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![
            kind("add"),
            path("Patient"),
            part("name", "valueString", json!("birthDate")),
            part("value", "valueDate", json!("1930-01-01")),
        ]]),
    )
    .unwrap();
    assert_eq!(patched["birthDate"], "1930-01-01");
    assert_eq!(patched["gender"], "male");
}

#[test]
fn add_a_single_element_that_is_present_fails() {
    let (index, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![
            kind("add"),
            path("Patient"),
            part("name", "valueString", json!("gender")),
            part("value", "valueCode", json!("female")),
        ]]),
    ));
    assert_eq!(index, 0);
    assert_eq!(reason, OperationError::AlreadyPresent { element: "Patient.gender".into() });
}

#[test]
fn add_appends_to_a_list() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![
            kind("add"),
            path("Patient"),
            part("name", "valueString", json!("identifier")),
            part("value", "valueIdentifier", json!({"system": "http://b", "value": "2"})),
        ]]),
    )
    .unwrap();
    assert_eq!(
        patched["identifier"],
        json!([{"system": "http://a", "value": "1"}, {"system": "http://b", "value": "2"}])
    );
}

#[test]
fn add_an_anonymous_type_as_nested_parts() {
    // The specification's example: a contact with a name, and here a repeating relationship.
    let value = json!({"name": "value", "part": [
        {"name": "name", "valueHumanName": {"text": "a name"}},
        {"name": "relationship", "valueCodeableConcept": {"text": "friend"}},
        {"name": "relationship", "valueCodeableConcept": {"text": "neighbour"}},
        {"name": "gender", "valueCode": "female"}
    ]});
    let patched = apply(
        &patient(),
        &patch(vec![vec![kind("add"), path("Patient"), part("name", "valueString", json!("contact")), value]]),
    )
    .unwrap();
    assert_eq!(
        patched["contact"],
        json!([{
            "name": {"text": "a name"},
            "relationship": [{"text": "friend"}, {"text": "neighbour"}],
            "gender": "female"
        }])
    );
}

#[test]
fn nested_parts_nest_further_and_reject_unknown_elements() {
    let nested = json!({"name": "value", "part": [
        {"name": "name", "part": [{"name": "family", "valueString": "Doe"}, {"name": "given", "valueString": "Jo"}]}
    ]});
    let patched = apply(
        &patient(),
        &patch(vec![vec![kind("add"), path("Patient"), part("name", "valueString", json!("contact")), nested]]),
    )
    .unwrap();
    assert_eq!(patched["contact"], json!([{"name": {"family": "Doe", "given": ["Jo"]}}]));

    let unknown = json!({"name": "value", "part": [{"name": "nickname", "valueString": "x"}]});
    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![kind("add"), path("Patient"), part("name", "valueString", json!("contact")), unknown]]),
    ));
    assert_eq!(reason, OperationError::UnknownElement { structure: "Patient.contact".into(), name: "nickname".into() });

    let twice = json!({"name": "value", "part": [
        {"name": "gender", "valueCode": "female"}, {"name": "gender", "valueCode": "male"}
    ]});
    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![kind("add"), path("Patient"), part("name", "valueString", json!("contact")), twice]]),
    ));
    assert_eq!(reason, OperationError::RepeatedSingle { element: "Patient.contact.gender".into() });
}

#[test]
fn add_to_a_choice_element_takes_the_json_name_of_the_type() {
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"}});
    let patched = apply(
        &observation,
        &patch(vec![vec![
            kind("add"),
            path("Observation"),
            part("name", "valueString", json!("value")),
            part("value", "valueQuantity", json!({"value": 70, "unit": "kg"})),
        ]]),
    )
    .unwrap();
    assert_eq!(patched["valueQuantity"], json!({"value": 70, "unit": "kg"}));

    // A second value of another type is still the same element.
    let (_, reason) = operation_error(apply(
        &patched,
        &patch(vec![vec![
            kind("add"),
            path("Observation"),
            part("name", "valueString", json!("value")),
            part("value", "valueString", json!("heavy")),
        ]]),
    ));
    assert_eq!(reason, OperationError::AlreadyPresent { element: "Observation.value[x]".into() });

    let (_, reason) = operation_error(apply(
        &observation,
        &patch(vec![vec![
            kind("add"),
            path("Observation"),
            part("name", "valueString", json!("value")),
            part("value", "valueAddress", json!({"city": "x"})),
        ]]),
    ));
    assert!(matches!(reason, OperationError::WrongType { ref given, .. } if given == "Address"), "{reason:?}");
}

#[test]
fn add_an_extension_as_parts_and_to_a_primitive() {
    let extension = json!({"name": "value", "part": [
        {"name": "url", "valueUri": "http://example.org/ext"},
        {"name": "value", "valueString": "x"}
    ]});
    let patched = apply(
        &patient(),
        &patch(vec![
            vec![kind("add"), path("Patient"), part("name", "valueString", json!("extension")), extension.clone()],
            vec![
                kind("add"),
                path("Patient.name[0].given[0]"),
                part("name", "valueString", json!("extension")),
                extension,
            ],
        ]),
    )
    .unwrap();
    assert_eq!(patched["extension"], json!([{"url": "http://example.org/ext", "valueString": "x"}]));
    assert_eq!(
        patched["name"][0]["_given"],
        json!([{"extension": [{"url": "http://example.org/ext", "valueString": "x"}]}, {"id": "g2"}, null])
    );
}

#[test]
fn insert_at_the_start_of_a_list() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![
            kind("insert"),
            path("Patient.identifier"),
            part("index", "valueInteger", json!(0)),
            part("value", "valueIdentifier", json!({"system": "http://b", "value": "2"})),
        ]]),
    )
    .unwrap();
    assert_eq!(
        patched["identifier"],
        json!([{"system": "http://b", "value": "2"}, {"system": "http://a", "value": "1"}])
    );
}

#[test]
fn insert_into_a_primitive_list_keeps_ids_aligned() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![
            kind("insert"),
            path("Patient.name[0].given"),
            part("index", "valueInteger", json!(1)),
            part("value", "valueString", json!("P.")),
        ]]),
    )
    .unwrap();
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "P.", "James", "Jim"]));
    assert_eq!(patched["name"][0]["_given"], json!([null, null, {"id": "g2"}, null]));
}

#[test]
fn insert_past_the_end_or_into_a_single_element_fails() {
    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![
            kind("insert"),
            path("Patient.identifier"),
            part("index", "valueInteger", json!(2)),
            part("value", "valueIdentifier", json!({"value": "2"})),
        ]]),
    ));
    assert_eq!(reason, OperationError::IndexOutOfRange { part: "index", index: 2, length: 1 });

    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![
            kind("insert"),
            path("Patient.gender"),
            part("index", "valueInteger", json!(0)),
            part("value", "valueCode", json!("female")),
        ]]),
    ));
    assert_eq!(reason, OperationError::NotAList { element: "Patient.gender".into() });

    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![
            kind("insert"),
            path("Patient.identifier.where(system = 'http://a')"),
            part("index", "valueInteger", json!(0)),
            part("value", "valueIdentifier", json!({"value": "2"})),
        ]]),
    ));
    assert_eq!(reason, OperationError::NotAListPath);
}

#[test]
fn delete_selected_by_where() {
    let patched =
        apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient.telecom.where(system = 'phone')")]])).unwrap();
    assert_eq!(patched["telecom"], json!([{"system": "email", "value": "p@example.org"}]));
}

#[test]
fn delete_of_nothing_is_a_no_op_and_of_two_an_error() {
    let patched =
        apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient.telecom.where(system = 'fax')")]])).unwrap();
    assert_eq!(patched, patient());

    let (_, reason) = operation_error(apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient.telecom")]])));
    assert_eq!(reason, OperationError::MultipleMatches { count: 2 });
}

#[test]
fn delete_removes_what_it_leaves_empty() {
    let patched = apply(
        &patient(),
        &patch(vec![
            vec![kind("delete"), path("Patient.identifier")],
            vec![kind("delete"), path("Patient.name.given[1]")],
            vec![kind("delete"), path("Patient.gender")],
        ]),
    )
    .unwrap();
    assert!(patched.get("identifier").is_none());
    assert!(patched.get("gender").is_none());
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "Jim"]));
    // The only `_given` entry went with its value.
    assert!(patched["name"][0].get("_given").is_none());

    let single_name = json!({"resourceType": "Patient", "name": [{"family": "Doe"}], "active": true});
    let patched = apply(&single_name, &patch(vec![vec![kind("delete"), path("Patient.name.family")]])).unwrap();
    assert_eq!(patched, json!({"resourceType": "Patient", "active": true}));
}

#[test]
fn delete_of_the_resource_fails() {
    let (_, reason) = operation_error(apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient")]])));
    assert_eq!(reason, OperationError::RootSelected);
}

#[test]
fn replace_a_primitive() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.gender"), part("value", "valueCode", json!("female"))]]),
    )
    .unwrap();
    assert_eq!(patched["gender"], "female");
    // Elsewhere unchanged, property order kept.
    let keys: Vec<&String> = patched.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceType", "id", "identifier", "name", "telecom", "gender"]);
}

#[test]
fn replace_a_list_item_and_a_primitive_with_its_extension() {
    let value = json!({"name": "value", "valueString": "Jimmy", "_valueString": {"id": "nick"}});
    let patched = apply(
        &patient(),
        &patch(vec![
            vec![kind("replace"), path("Patient.name[0].given[1]"), part("value", "valueString", json!("J."))],
            vec![kind("replace"), path("Patient.name[0].given[2]"), value],
        ]),
    )
    .unwrap();
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "J.", "Jimmy"]));
    assert_eq!(patched["name"][0]["_given"], json!([null, null, {"id": "nick"}]));
}

#[test]
fn replace_a_choice_value_with_another_type_in_place() {
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 1}, "note": [{"text": "n"}]});
    let patched = apply(
        &observation,
        &patch(vec![vec![kind("replace"), path("Observation.value"), part("value", "valueString", json!("one"))]]),
    )
    .unwrap();
    let keys: Vec<&String> = patched.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceType", "status", "code", "valueString", "note"]);
    assert_eq!(patched["valueString"], "one");
}

#[test]
fn replace_needs_exactly_one_element() {
    let (index, reason) = operation_error(apply(
        &patient(),
        &patch(vec![
            vec![kind("replace"), path("Patient.gender"), part("value", "valueCode", json!("female"))],
            vec![kind("replace"), path("Patient.telecom.system"), part("value", "valueCode", json!("fax"))],
        ]),
    ));
    assert_eq!((index, reason), (1, OperationError::MultipleMatches { count: 2 }));

    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.birthDate"), part("value", "valueDate", json!("2000"))]]),
    ));
    assert_eq!(reason, OperationError::NoMatch);
}

#[test]
fn replace_with_the_wrong_type_fails() {
    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.gender"), part("value", "valueBoolean", json!(true))]]),
    ));
    assert_eq!(
        reason,
        OperationError::WrongType {
            element: "Patient.gender".into(),
            given: "Boolean".into(),
            expected: "code".into()
        }
    );
}

#[test]
fn replace_through_an_unresolvable_reference_fails() {
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"}});
    let (_, reason) = operation_error(apply(
        &observation,
        &patch(vec![vec![
            kind("replace"),
            path("Observation.subject.resolve()"),
            part("value", "valueReference", json!({"reference": "Patient/p2"})),
        ]]),
    ));
    assert_eq!(reason, OperationError::NotAnElement);
}

#[test]
fn move_a_given_name() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![
            kind("move"),
            path("Patient.name[0].given"),
            part("source", "valueInteger", json!(1)),
            part("destination", "valueInteger", json!(0)),
        ]]),
    )
    .unwrap();
    assert_eq!(patched["name"][0]["given"], json!(["James", "Peter", "Jim"]));
    assert_eq!(patched["name"][0]["_given"], json!([{"id": "g2"}, null, null]));

    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![
            kind("move"),
            path("Patient.name[0].given"),
            part("source", "valueInteger", json!(0)),
            part("destination", "valueInteger", json!(3)),
        ]]),
    ));
    assert_eq!(reason, OperationError::IndexOutOfRange { part: "destination", index: 3, length: 3 });
}

#[test]
fn operations_apply_in_order_and_see_each_other() {
    let patched = apply(
        &patient(),
        &patch(vec![
            vec![
                kind("add"),
                path("Patient"),
                part("name", "valueString", json!("birthDate")),
                part("value", "valueDate", json!("1930-01-01")),
            ],
            vec![kind("replace"), path("Patient.birthDate"), part("value", "valueDate", json!("1931-01-01"))],
        ]),
    )
    .unwrap();
    assert_eq!(patched["birthDate"], "1931-01-01");
}

#[test]
fn malformed_operations_fail_before_any_is_applied() {
    // Operation 0 is fine, operation 1 is not: nothing is applied, and the error names 1.
    let result = apply(
        &patient(),
        &patch(vec![vec![kind("delete"), path("Patient.gender")], vec![kind("upsert"), path("Patient.gender")]]),
    );
    assert_eq!(result, Err(PatchError::Operation { index: 1, operation: None, reason: OperationError::UnknownType }));
}

#[test]
fn missing_unexpected_and_duplicate_parts() {
    let cases = [
        (vec![kind("replace"), path("Patient.gender")], OperationError::MissingPart { part: "value" }),
        (vec![kind("delete")], OperationError::MissingPart { part: "path" }),
        (vec![path("Patient.gender")], OperationError::MissingPart { part: "type" }),
        (
            vec![kind("delete"), path("Patient.gender"), part("index", "valueInteger", json!(0))],
            OperationError::UnexpectedPart { part: "index", operation: OperationType::Delete },
        ),
        (
            vec![kind("delete"), path("Patient.gender"), path("Patient.id")],
            OperationError::DuplicatePart { part: "path" },
        ),
        (vec![kind("delete"), part("where", "valueString", json!("x"))], OperationError::UnknownPart { position: 1 }),
        (
            vec![kind("delete"), part("path", "valueInteger", json!(1))],
            OperationError::MalformedPart { part: "path", reason: "must have a string value (valueString)" },
        ),
        (
            vec![
                kind("move"),
                path("Patient.name"),
                part("source", "valueInteger", json!(-1)),
                part("destination", "valueInteger", json!(0)),
            ],
            OperationError::MalformedPart {
                part: "source",
                reason: "must have a non-negative integer value (valueInteger)",
            },
        ),
        (
            vec![
                kind("replace"),
                path("Patient.gender"),
                json!({"name": "value", "valueCode": "a", "valueString": "b"}),
            ],
            OperationError::MalformedPart {
                part: "value",
                reason: "has more than one value (value[x], resource or part)",
            },
        ),
    ];
    for (parts, expected) in cases {
        let (_, reason) = operation_error(apply(&patient(), &patch(vec![parts])));
        assert_eq!(reason, expected);
    }
}

#[test]
fn bad_fhirpath_is_invalid() {
    let (_, reason) = operation_error(apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient.name.(")]])));
    assert!(matches!(reason, OperationError::InvalidPath(FhirPathError::Syntax { .. })), "{reason:?}");

    let (_, reason) =
        operation_error(apply(&patient(), &patch(vec![vec![kind("delete"), path("Patient.name.frobnicate()")]])));
    assert!(matches!(reason, OperationError::InvalidPath(FhirPathError::UnknownFunction { .. })), "{reason:?}");
}

#[test]
fn the_patch_must_be_parameters_of_operations() {
    assert_eq!(apply(&patient(), &json!({"resourceType": "Patient"})), Err(PatchError::NotParameters));
    let other = json!({"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]});
    assert_eq!(apply(&patient(), &other), Err(PatchError::NotAnOperation { index: 0 }));
    let empty = json!({"resourceType": "Parameters"});
    assert_eq!(apply(&patient(), &empty), Ok(patient()));
}

#[test]
fn errors_become_issues_that_name_the_operation_and_not_the_value() {
    let error = apply(
        &patient(),
        &patch(vec![
            vec![kind("delete"), path("Patient.birthDate")],
            vec![kind("replace"), path("Patient.gender"), part("value", "valueBoolean", json!(true))],
        ]),
    )
    .unwrap_err();
    let issue = Issue::from(&error);
    assert_eq!(issue.code, IssueType::Structure);
    assert_eq!(issue.expression, ["Parameters.parameter[1]"]);
    assert!(issue.diagnostics.starts_with("patch operation 1 (replace): "), "{}", issue.diagnostics);

    let secret = "555-0000-secret";
    let error = apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.telecom.value"), part("value", "valueString", json!(secret))]]),
    )
    .unwrap_err();
    let issue = Issue::from(error);
    assert_eq!(issue.code, IssueType::Processing);
    assert!(!issue.diagnostics.contains(secret));
    assert_eq!(Issue::from(PatchError::NotParameters).code, IssueType::Invalid);
}

#[test]
fn list_paths_split_at_the_last_step() {
    assert_eq!(split_list_path("Patient.identifier"), Some((Some("Patient"), "identifier".to_string())));
    assert_eq!(
        split_list_path("Patient.name.where(use = 'a.b').given"),
        Some((Some("Patient.name.where(use = 'a.b')"), "given".to_string()))
    );
    assert_eq!(split_list_path("identifier"), Some((None, "identifier".to_string())));
    assert_eq!(split_list_path("Patient.`name`"), Some((Some("Patient"), "name".to_string())));
    assert_eq!(split_list_path("Patient.name[0]"), None);
    assert_eq!(split_list_path("Patient.name | Patient.contact.name"), None);
    assert_eq!(split_list_path("Patient.name.first()"), None);
    assert_eq!(split_list_path(".name"), None);
}

#[test]
fn a_primitive_with_only_extensions_is_found_through_its_twin() {
    let resource = json!({"resourceType": "Patient", "_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}});
    let patched = apply(
        &resource,
        &patch(vec![vec![kind("replace"), path("Patient.birthDate"), part("value", "valueDate", json!("1970"))]]),
    )
    .unwrap();
    assert_eq!(patched, json!({"resourceType": "Patient", "birthDate": "1970"}));
    let patched = apply(&resource, &patch(vec![vec![kind("delete"), path("Patient.birthDate")]])).unwrap();
    assert_eq!(patched, json!({"resourceType": "Patient"}));
}

#[test]
fn a_contained_resource_is_reached_through_resolve() {
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "c1", "gender": "male"}],
        "subject": {"reference": "#c1"}});
    let patched = apply(
        &observation,
        &patch(vec![vec![
            kind("replace"),
            path("Observation.subject.resolve().gender"),
            part("value", "valueCode", json!("female")),
        ]]),
    )
    .unwrap();
    assert_eq!(patched["contained"][0]["gender"], "female");
}

#[test]
fn a_primitive_element_takes_a_primitive_of_the_same_json_form() {
    let patched = apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.gender"), part("value", "valueString", json!("other"))]]),
    )
    .unwrap();
    assert_eq!(patched["gender"], "other");
    let (_, reason) = operation_error(apply(
        &patient(),
        &patch(vec![vec![kind("replace"), path("Patient.gender"), part("value", "valueInteger", json!(1))]]),
    ));
    assert!(matches!(reason, OperationError::WrongType { .. }), "{reason:?}");
}

#[test]
fn the_specification_examples_give_valid_resources() {
    let contact = json!({"name": "value", "part": [{"name": "name", "valueHumanName": {"text": "a name"}}]});
    let patched = apply(
        &patient(),
        &patch(vec![
            vec![
                kind("add"),
                path("Patient"),
                part("name", "valueString", json!("birthDate")),
                part("value", "valueDate", json!("1930-01-01")),
            ],
            vec![kind("add"), path("Patient"), part("name", "valueString", json!("contact")), contact],
            vec![
                kind("insert"),
                path("Patient.identifier"),
                part("index", "valueInteger", json!(0)),
                part("value", "valueIdentifier", json!({"system": "http://b", "value": "2"})),
            ],
            vec![kind("delete"), path("Patient.telecom.where(system = 'phone')")],
            vec![kind("replace"), path("Patient.gender"), part("value", "valueCode", json!("female"))],
            vec![
                kind("move"),
                path("Patient.name.given"),
                part("source", "valueInteger", json!(2)),
                part("destination", "valueInteger", json!(0)),
            ],
        ]),
    )
    .unwrap();
    let errors: Vec<Issue> = crate::validate_resource(&patched).into_iter().filter(Issue::is_error).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(patched["name"][0]["given"], json!(["Jim", "Peter", "James"]));
}
