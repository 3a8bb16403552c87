use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::outcome::{IssueType, Severity};

/// The (path, code) of every issue, for compact assertions.
fn issues(resource: Value) -> Vec<(String, IssueType)> {
    validate_resource(&resource)
        .into_iter()
        .map(|issue| (issue.expression.first().cloned().unwrap_or_default(), issue.code))
        .collect()
}

fn only_issue(resource: Value) -> (String, IssueType) {
    let found = issues(resource);
    assert_eq!(found.len(), 1, "expected exactly one issue, got {found:?}");
    found[0].clone()
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "example",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05.678Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane</div>"},
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": true,
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "deceasedBoolean": false,
        "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999", "period": {"start": "1974-12-25"}}],
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}], "gender": "female"}],
        "managingOrganization": {"reference": "Organization/1"}
    })
}

#[test]
fn a_valid_patient_has_no_issues() {
    assert_eq!(issues(patient()), vec![]);
}

#[test]
fn resource_type_must_be_a_known_concrete_type() {
    assert_eq!(only_issue(json!({"id": "x"})), (String::new(), IssueType::Required));
    assert_eq!(only_issue(json!({"resourceType": 3})), (String::new(), IssueType::Structure));
    assert_eq!(only_issue(json!({"resourceType": "Patinet"})), (String::new(), IssueType::Invalid));
    assert_eq!(only_issue(json!({"resourceType": "DomainResource"})), (String::new(), IssueType::Invalid));
    assert_eq!(only_issue(json!({"resourceType": "HumanName"})), (String::new(), IssueType::Invalid));
    assert_eq!(only_issue(json!(["Patient"])), (String::new(), IssueType::Structure));
    assert_eq!(issues(json!({"resourceType": "Patient"})), vec![]);
}

#[test]
fn validate_as_checks_the_expected_type() {
    let found = validate_as(&patient(), "Observation");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, IssueType::Invalid);
    assert!(validate_as(&patient(), "Patient").is_empty());
    assert!(validate_as(&patient(), "Resource").is_empty());
    assert!(validate_as(&patient(), "DomainResource").is_empty());
    assert_eq!(validate_as(&json!({"resourceType": "Bundle", "type": "collection"}), "DomainResource").len(), 1);
}

#[test]
fn unknown_elements_are_reported_with_their_path() {
    let mut p = patient();
    p["foo"] = json!(1);
    p["name"][0]["nickname"] = json!("Pete");
    let found = issues(p);
    assert_eq!(
        found,
        vec![
            ("Patient.name[0].nickname".to_string(), IssueType::Structure),
            ("Patient.foo".to_string(), IssueType::Structure),
        ]
    );
}

#[test]
fn array_indexes_in_paths() {
    let mut p = patient();
    let mut names = vec![json!({"family": "ok"}); 120];
    names[107] = json!({"family": 7});
    p["name"] = Value::Array(names);
    assert_eq!(only_issue(p), ("Patient.name[107].family".into(), IssueType::Structure));
}

#[test]
fn unknown_element_names_are_shortened_in_paths() {
    let mut p = patient();
    p["x".repeat(1000)] = json!(1);
    let (path, _) = only_issue(p);
    assert_eq!(path.len(), "Patient.".len() + 64);
}

#[test]
fn primitive_extension_siblings() {
    // Allowed beside primitives, with id and extension only.
    let mut p = patient();
    p["_gender"] = json!({"id": "g1"});
    p["name"][0]["_given"] = json!([null, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]);
    assert_eq!(issues(p), vec![]);

    let mut p = patient();
    p["_birthDate"] = json!({"value": "1974"});
    assert_eq!(only_issue(p), ("Patient.birthDate.value".into(), IssueType::Structure));

    let mut p = patient();
    p["_name"] = json!({"id": "n"});
    assert_eq!(only_issue(p), ("Patient._name".into(), IssueType::Structure));

    let mut p = patient();
    p["_nothing"] = json!({"id": "n"});
    assert_eq!(only_issue(p), ("Patient._nothing".into(), IssueType::Structure));

    let mut p = patient();
    p["_birthDate"] = json!([{"id": "a"}]);
    assert_eq!(only_issue(p), ("Patient.birthDate".into(), IssueType::Structure));

    let mut p = patient();
    p["_birthDate"]["extension"][0]["valueDateTime"] = json!("yesterday");
    assert_eq!(only_issue(p), ("Patient.birthDate.extension[0].value.ofType(dateTime)".into(), IssueType::Value));
}

#[test]
fn primitive_arrays_may_hold_null_only_against_an_extension() {
    let mut p = patient();
    p["name"][0]["given"] = json!(["Peter", null]);
    assert_eq!(only_issue(p), ("Patient.name[0].given[1]".into(), IssueType::Structure));

    let mut p = patient();
    p["name"][0]["given"] = json!(["Peter", null]);
    p["name"][0]["_given"] = json!([null, {"id": "x"}]);
    assert_eq!(issues(p), vec![]);

    // Null on both sides at the same index.
    let mut p = patient();
    p["name"][0]["_given"] = json!([null, null]);
    p["name"][0]["given"] = json!(["Peter", null]);
    assert_eq!(only_issue(p), ("Patient.name[0].given[1]".into(), IssueType::Structure));

    // The two arrays must be aligned.
    let mut p = patient();
    p["name"][0]["_given"] = json!([{"id": "x"}]);
    assert_eq!(only_issue(p), ("Patient.name[0].given".into(), IssueType::Structure));
}

#[test]
fn json_types_must_match_the_element_type() {
    let cases = [
        ("active", json!("true"), "Patient.active"),
        ("birthDate", json!(19741225), "Patient.birthDate"),
        ("gender", json!({"code": "male"}), "Patient.gender"),
        ("managingOrganization", json!("Organization/1"), "Patient.managingOrganization"),
        ("multipleBirthInteger", json!("2"), "Patient.multipleBirth.ofType(integer)"),
        ("multipleBirthInteger", json!(true), "Patient.multipleBirth.ofType(integer)"),
    ];
    for (key, value, path) in cases {
        let mut p = patient();
        p[key] = value;
        assert_eq!(only_issue(p), (path.to_string(), IssueType::Structure), "{key}");
    }
}

#[test]
fn arrays_exactly_where_the_element_repeats() {
    let mut p = patient();
    p["name"] = json!({"family": "Chalmers"});
    assert_eq!(only_issue(p), ("Patient.name".into(), IssueType::Structure));

    let mut p = patient();
    p["birthDate"] = json!(["1974-12-25"]);
    assert_eq!(only_issue(p), ("Patient.birthDate".into(), IssueType::Structure));

    let mut p = patient();
    p["name"][0]["given"] = json!("Peter");
    assert_eq!(only_issue(p), ("Patient.name[0].given".into(), IssueType::Structure));
}

#[test]
fn null_and_empty_values_are_not_allowed() {
    let cases = [
        ("birthDate", json!(null), "Patient.birthDate"),
        ("name", json!([]), "Patient.name"),
        ("name", json!([{}]), "Patient.name[0]"),
        ("name", json!([null]), "Patient.name[0]"),
        ("managingOrganization", json!({}), "Patient.managingOrganization"),
        ("birthDate", json!(""), "Patient.birthDate"),
    ];
    for (key, value, path) in cases {
        let mut p = patient();
        p[key] = value;
        let (found_path, _) = only_issue(p);
        assert_eq!(found_path, path, "{key}");
    }
    let mut p = patient();
    p["name"][0]["family"] = json!("");
    assert_eq!(only_issue(p), ("Patient.name[0].family".into(), IssueType::Value));
}

#[test]
fn primitive_formats_are_checked() {
    let cases = [
        ("birthDate", json!("25/12/1974"), "Patient.birthDate"),
        ("birthDate", json!("1974-02-30"), "Patient.birthDate"),
        ("id", json!("has space"), "Patient.id"),
        ("implicitRules", json!("http://example.org/ rules"), "Patient.implicitRules"),
        ("deceasedDateTime", json!("2020-01-01T10:00"), "Patient.deceased.ofType(dateTime)"),
        ("multipleBirthInteger", json!(1.5), "Patient.multipleBirth.ofType(integer)"),
        ("multipleBirthInteger", json!(3_000_000_000u64), "Patient.multipleBirth.ofType(integer)"),
        ("language", json!(" en"), "Patient.language"),
    ];
    for (key, value, path) in cases {
        let mut p = patient();
        if key.starts_with("deceased") {
            p.as_object_mut().map(|m| m.remove("deceasedBoolean"));
        }
        p[key] = value;
        assert_eq!(only_issue(p), (path.to_string(), IssueType::Value), "{key}");
    }
    let mut p = patient();
    p["telecom"][0]["rank"] = json!(0);
    assert_eq!(only_issue(p), ("Patient.telecom[0].rank".into(), IssueType::Value));
    let mut p = patient();
    p["meta"]["lastUpdated"] = json!("2024-01-02");
    assert_eq!(only_issue(p), ("Patient.meta.lastUpdated".into(), IssueType::Value));
    let mut p = patient();
    p["text"]["div"] = json!("plain text");
    assert_eq!(only_issue(p), ("Patient.text.div".into(), IssueType::Value));
}

#[test]
fn required_elements_must_be_present() {
    let mut p = patient();
    p["link"] = json!([{"type": "seealso"}]);
    assert_eq!(only_issue(p), ("Patient.link[0].other".into(), IssueType::Required));

    let mut p = patient();
    p["communication"] = json!([{"preferred": true}]);
    assert_eq!(only_issue(p), ("Patient.communication[0].language".into(), IssueType::Required));

    // A required choice element is named without its type.
    let request = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"}});
    assert_eq!(only_issue(request), ("MedicationRequest.medication".into(), IssueType::Required));

    // A required primitive present only through its extension counts as present.
    let observation = json!({
        "resourceType": "Observation",
        "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]},
        "code": {"text": "weight"}
    });
    assert_eq!(issues(observation), vec![]);

    let extension = json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [{"valueString": "no url"}]});
    assert_eq!(only_issue(extension), ("Basic.extension[0].url".into(), IssueType::Required));
}

#[test]
fn elements_with_max_zero_are_rejected() {
    // Range.low is a SimpleQuantity, which has no comparator.
    let observation = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueRange": {"low": {"value": 1, "comparator": "<"}}
    });
    assert_eq!(
        only_issue(observation),
        ("Observation.value.ofType(Range).low.comparator".into(), IssueType::Structure)
    );
    let observation = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 1, "comparator": "<"}
    });
    assert_eq!(issues(observation), vec![]);
}

#[test]
fn choice_types() {
    let base = || json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});

    let mut o = base();
    o["valueQuantity"] =
        json!({"value": 5.4, "unit": "mmol/l", "system": "http://unitsofmeasure.org", "code": "mmol/L"});
    assert_eq!(issues(o), vec![]);

    let mut o = base();
    o["valueQuantity"] = json!({"value": "5.4"});
    assert_eq!(only_issue(o), ("Observation.value.ofType(Quantity).value".into(), IssueType::Structure));

    let mut o = base();
    o["valueString"] = json!("a");
    o["valueBoolean"] = json!(true);
    assert_eq!(only_issue(o), ("Observation.value".into(), IssueType::Structure));

    let mut o = base();
    o["valueFoo"] = json!("a");
    assert_eq!(only_issue(o), ("Observation.valueFoo".into(), IssueType::Structure));

    let mut o = base();
    o["value"] = json!("a");
    assert_eq!(only_issue(o), ("Observation.value".into(), IssueType::Structure));

    let mut o = base();
    o["valueString"] = json!("a");
    o["_valueString"] = json!({"id": "v"});
    assert_eq!(issues(o), vec![]);

    let mut o = base();
    o["valueInteger"] = json!(1);
    o["_valueString"] = json!({"id": "v"});
    assert_eq!(only_issue(o), ("Observation.value".into(), IssueType::Structure));
}

#[test]
fn contained_resources_are_validated_as_resources() {
    let mut p = patient();
    p["contained"] = json!([
        {"resourceType": "Organization", "id": "org", "name": "Acme"},
        {"resourceType": "Organization", "id": "org2", "nmae": "Typo"},
        {"id": "no-type"}
    ]);
    assert_eq!(
        issues(p),
        vec![
            ("Patient.contained[1].nmae".into(), IssueType::Structure),
            ("Patient.contained[2]".into(), IssueType::Required),
        ]
    );
}

#[test]
fn bundle_and_parameters_resources_are_validated() {
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:a76d9bbf-f293-4fb7-ad4c-2851cac77162", "resource": patient()},
            {"resource": {"resourceType": "Patient", "birthDate": "soon"}}
        ]
    });
    assert_eq!(only_issue(bundle), ("Bundle.entry[1].resource.birthDate".into(), IssueType::Value));

    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "gender": "unknown-ish"}}]
    });
    assert_eq!(only_issue(parameters), ("Parameters.parameter[0].resource.gender".into(), IssueType::CodeInvalid));

    let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": "Patient/1"}]});
    assert_eq!(only_issue(parameters), ("Parameters.parameter[0].resource".into(), IssueType::Structure));
}

#[test]
fn content_references_are_followed() {
    let questionnaire = json!({
        "resourceType": "Questionnaire", "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}, {"type": "string"}]}]
    });
    assert_eq!(only_issue(questionnaire), ("Questionnaire.item[0].item[1].linkId".into(), IssueType::Required));
    let questionnaire = json!({
        "resourceType": "Questionnaire", "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "nonsense"}]}]
    });
    assert_eq!(only_issue(questionnaire), ("Questionnaire.item[0].item[0].type".into(), IssueType::CodeInvalid));
}

#[test]
fn required_bindings_are_checked() {
    let mut p = patient();
    p["gender"] = json!("M");
    assert_eq!(only_issue(p), ("Patient.gender".into(), IssueType::CodeInvalid));
    let mut p = patient();
    p["contact"][0]["gender"] = json!("F");
    assert_eq!(only_issue(p), ("Patient.contact[0].gender".into(), IssueType::CodeInvalid));

    let condition = |status: Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": status});
    let good = json!({"coding": [{"system": "http://example.org", "code": "x"}, {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    assert_eq!(issues(condition(good)), vec![]);
    let wrong_code =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "cured"}]});
    assert_eq!(only_issue(condition(wrong_code)), ("Condition.clinicalStatus".into(), IssueType::CodeInvalid));
    let text_only = json!({"text": "active"});
    assert_eq!(only_issue(condition(text_only)), ("Condition.clinicalStatus".into(), IssueType::CodeInvalid));

    // Value sets from outside the package are not checked.
    let media = json!({"resourceType": "Media", "status": "completed", "content": {"contentType": "made/up"}});
    assert_eq!(issues(media), vec![]);
}

#[test]
fn datatypes_can_be_validated_alone() {
    assert!(validate_datatype(&json!({"family": "Doe", "given": ["J"]}), "HumanName").is_empty());
    let found = validate_datatype(&json!({"family": ["Doe"]}), "HumanName");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expression, vec!["HumanName.family".to_string()]);
    assert_eq!(validate_datatype(&json!({}), "Patient")[0].code, IssueType::NotSupported);
    assert_eq!(validate_datatype(&json!("x"), "HumanName")[0].code, IssueType::Structure);
}

#[test]
fn diagnostics_never_quote_values() {
    let secret = "SECRET-7c1d";
    let p = json!({
        "resourceType": "Patient",
        "id": secret,
        "birthDate": secret,
        "gender": secret,
        "active": secret,
        "name": [{"given": secret, "family": [secret]}],
        "telecom": [{"rank": secret}],
        "managingOrganization": secret,
        "deceasedDateTime": secret,
        "multipleBirthInteger": secret,
        "_birthDate": {"id": secret, "extension": secret},
        "contained": [{"resourceType": secret}],
    });
    let found = validate_resource(&p);
    assert!(found.len() >= 10, "{found:?}");
    for issue in &found {
        assert!(!issue.diagnostics.contains(secret), "{}", issue.diagnostics);
        assert!(issue.expression.iter().all(|e| !e.contains(secret)), "{:?}", issue.expression);
    }
}

#[test]
fn issue_count_is_bounded() {
    let mut p = serde_json::Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    for i in 0..2000 {
        p.insert(format!("unknown{i}"), json!(1));
    }
    let found = validate_resource(&Value::Object(p));
    assert_eq!(found.len(), walk::MAX_ISSUES + 1);
    assert_eq!(found.last().map(|i| i.severity), Some(Severity::Warning));
    assert!(has_errors(&found));
}

#[test]
fn deep_nesting_is_reported_not_recursed() {
    let mut item = json!({"linkId": "leaf", "type": "display"});
    for _ in 0..300 {
        item = json!({"linkId": "x", "type": "group", "item": [item]});
    }
    let questionnaire = json!({"resourceType": "Questionnaire", "status": "active", "item": [item]});
    let found = validate_resource(&questionnaire);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, IssueType::TooCostly);
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            "[a-zA-Z_]{0,12}",
            "(Patient|Observation|Bundle|HumanName|value|_given|given|name|resource|contained|entry|extension|url|valueString|_birthDate|birthDate)",
            "[0-9T:Z.+-]{0,25}",
            ".{0,8}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "(resourceType|id|name|given|_given|family|contained|entry|resource|extension|url|valueString|valueQuantity|value|_value|birthDate|_birthDate|gender|item|linkId|coding|code|system)",
                        "[a-zA-Z_]{0,10}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json(), resource_type in "(Patient|Bundle|Questionnaire|Parameters|Observation)") {
        let _ = validate_resource(&value);
        if let Value::Object(mut map) = value {
            map.insert("resourceType".into(), Value::String(resource_type.clone()));
            for issue in validate_as(&Value::Object(map), &resource_type) {
                prop_assert!(!issue.diagnostics.is_empty());
                if issue.is_error() {
                    prop_assert!(issue.expression.iter().all(|e| e.starts_with(&resource_type)), "{:?}", issue);
                }
            }
        }
    }
}
