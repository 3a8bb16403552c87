//! Profile validation with the test packages of `testdata/ig`: a blood pressure profile (a
//! differential: slicing by pattern, closed slicing, fixed values, a required binding to a
//! package ValueSet, an invariant), a patient profile (a snapshot: an extension slice checked
//! against its definition, a binding to a ValueSet that imports and excludes), and a profile
//! in a second package that derives from the first.

use std::path::PathBuf;

use implementation_guide::package::pack_dir;
use implementation_guide::{resolve, Conformance, Package, PackageStore};
use serde_json::{json, Value};

const BASE: &str = "http://fhir-server.dev/ig/test";

fn package(name: &str) -> Package {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../testdata/ig").join(name);
    Package::from_tgz(&pack_dir(&dir).unwrap()).unwrap()
}

fn conformance() -> Conformance {
    Conformance::new(&[package("fhir-server.test.vitals"), package("fhir-server.test.clinic")])
}

fn bp_url() -> String {
    format!("{BASE}/StructureDefinition/test-blood-pressure")
}

/// The valid blood pressure of `testdata/ig/examples`, with these pressures.
fn blood_pressure(systolic: f64, diastolic: f64) -> Value {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../testdata/ig/examples/blood-pressure.json");
    let mut resource: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    resource["component"][0]["valueQuantity"]["value"] = json!(systolic);
    resource["component"][1]["valueQuantity"]["value"] = json!(diastolic);
    resource
}

fn errors(conformance: &Conformance, resource: &Value, profile: &str) -> Vec<String> {
    conformance.validate(resource, profile).into_iter().filter(|i| i.is_error()).map(|i| format!("{} @ {}", i.diagnostics, i.expression.join(","))).collect()
}

fn assert_error(errors: &[String], fragment: &str) {
    assert!(errors.iter().any(|e| e.contains(fragment)), "expected an error containing {fragment:?}, got {errors:#?}");
}

#[test]
fn a_valid_blood_pressure_passes() {
    let conformance = conformance();
    assert_eq!(errors(&conformance, &blood_pressure(120.0, 80.0), &bp_url()), Vec::<String>::new());
}

#[test]
fn cardinality_fixed_values_and_types() {
    let conformance = conformance();
    let mut resource = blood_pressure(120.0, 80.0);
    resource.as_object_mut().unwrap().remove("subject");
    resource["component"][0]["valueQuantity"]["code"] = json!("mmHg");
    resource["valueString"] = json!("high");
    let found = errors(&conformance, &resource, &bp_url());
    assert_error(&found, "Observation.subject needs at least 1");
    assert_error(&found, "Observation.component.value[x].code must have the profile's fixed value");
    assert_error(&found, "Observation.value[x] allows at most 0");
    let mut resource = blood_pressure(120.0, 80.0);
    resource.as_object_mut().unwrap().remove("effectiveDateTime");
    resource["effectivePeriod"] = json!({"start": "2026-11-20"});
    assert_error(&errors(&conformance, &resource, &bp_url()), "type Period is not allowed at Observation.effective[x]");
}

#[test]
fn patterns_and_slices() {
    let conformance = conformance();
    let mut resource = blood_pressure(120.0, 80.0);
    resource["code"]["coding"][0]["code"] = json!("8867-4");
    assert_error(&errors(&conformance, &resource, &bp_url()), "Observation.code must match the profile's pattern");

    // The category slice needs its coding; other categories may come beside it (open slicing).
    let mut resource = blood_pressure(120.0, 80.0);
    resource["category"][0]["coding"][0]["code"] = json!("laboratory");
    assert_error(&errors(&conformance, &resource, &bp_url()), "slice vitals of Observation.category needs at least 1");
    let mut resource = blood_pressure(120.0, 80.0);
    resource["category"].as_array_mut().unwrap().push(json!({"text": "extra"}));
    assert_eq!(errors(&conformance, &resource, &bp_url()), Vec::<String>::new());

    // Components: closed slicing, one of each.
    let mut resource = blood_pressure(120.0, 80.0);
    resource["component"].as_array_mut().unwrap().push(json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8478-0"}]}, "valueQuantity": {"value": 90}}));
    assert_error(&errors(&conformance, &resource, &bp_url()), "in none of the slices of a closed slicing");
    let mut resource = blood_pressure(120.0, 80.0);
    resource["component"].as_array_mut().unwrap().remove(1);
    let found = errors(&conformance, &resource, &bp_url());
    assert_error(&found, "slice diastolic of Observation.component needs at least 1");
    assert_error(&found, "Observation.component needs at least 2");
    // A slice's own constraints apply to the values in it.
    let mut resource = blood_pressure(120.0, 80.0);
    resource["component"][1]["valueQuantity"].as_object_mut().unwrap().remove("system");
    assert_error(&errors(&conformance, &resource, &bp_url()), "slice diastolic: Observation.component.value[x].system needs at least 1");
}

#[test]
fn ordered_slices() {
    let conformance = conformance();
    // The components' slicing is ordered: systolic, then diastolic.
    let mut resource = blood_pressure(120.0, 80.0);
    resource["component"].as_array_mut().unwrap().reverse();
    assert_error(&errors(&conformance, &resource, &bp_url()), "must list its slices in order: slice systolic comes after slice diastolic");
}

#[test]
fn required_binding_to_a_package_value_set() {
    let conformance = conformance();
    let mut resource = blood_pressure(120.0, 80.0);
    resource["status"] = json!("preliminary");
    assert_error(&errors(&conformance, &resource, &bp_url()), "outside the required value set");
    resource["status"] = json!("amended");
    assert_eq!(errors(&conformance, &resource, &bp_url()), Vec::<String>::new());
}

#[test]
fn invariant() {
    let conformance = conformance();
    let found = errors(&conformance, &blood_pressure(70.0, 90.0), &bp_url());
    assert_error(&found, "invariant tbp-1 failed");
}

#[test]
fn invariant_of_a_slice_holds_for_its_values_only() {
    let conformance = conformance();
    // tbp-2 (below 300) is on the systolic slice: a diastolic of 300 is not its business.
    assert_eq!(errors(&conformance, &blood_pressure(310.0, 300.0), &bp_url()), vec![
        "slice systolic: invariant tbp-2 failed: A systolic pressure is below 300 mmHg (profile http://fhir-server.dev/ig/test/StructureDefinition/test-blood-pressure) @ Observation.component[0]".to_string()
    ]);
    assert_eq!(errors(&conformance, &blood_pressure(299.0, 290.0), &bp_url()), Vec::<String>::new());
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "meta": {"profile": [format!("{BASE}/StructureDefinition/test-patient")]},
        "extension": [{"url": format!("{BASE}/StructureDefinition/eye-colour"), "valueCode": "hazel"}],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "42"}],
        "name": [{"family": "Chalmers"}],
        "gender": "female"
    })
}

#[test]
fn snapshot_profile_with_extension_slice_and_imported_value_set() {
    let conformance = conformance();
    let url = format!("{BASE}/StructureDefinition/test-patient");
    assert_eq!(errors(&conformance, &patient(), &url), Vec::<String>::new());

    let mut resource = patient();
    resource["gender"] = json!("other");
    assert_error(&errors(&conformance, &resource, &url), "Patient.gender has a code outside the required value set");

    let mut resource = patient();
    resource["extension"][0]["valueCode"] = json!("violet");
    assert_error(&errors(&conformance, &resource, &url), "Extension.value[x] has a code outside the required value set");

    let mut resource = patient();
    resource["extension"].as_array_mut().unwrap().push(json!({"url": format!("{BASE}/StructureDefinition/eye-colour"), "valueCode": "blue"}));
    assert_error(&errors(&conformance, &resource, &url), "slice eyeColour of Patient.extension allows at most 1");

    let mut resource = patient();
    resource["identifier"][0].as_object_mut().unwrap().remove("system");
    resource["name"] = json!([{"text": "no parts"}]);
    let found = errors(&conformance, &resource, &url);
    assert_error(&found, "Patient.identifier.system needs at least 1");
    assert_error(&found, "invariant tpt-1 failed");
    // What the snapshot repeats from R4 (dom-2, base cardinalities) is left to the base validator.
    assert!(!found.iter().any(|e| e.contains("dom-2")), "{found:#?}");
}

#[test]
fn derived_differential_profile_adds_to_its_base() {
    let conformance = conformance();
    let url = format!("{BASE}/clinic/StructureDefinition/clinic-blood-pressure");
    let mut resource = blood_pressure(120.0, 80.0);
    assert_error(&errors(&conformance, &resource, &url), "Observation.performer needs at least 1");
    resource["performer"] = json!([{"reference": "Practitioner/1"}]);
    assert_eq!(errors(&conformance, &resource, &url), Vec::<String>::new());
    resource["status"] = json!("preliminary");
    assert_error(&errors(&conformance, &resource, &url), "outside the required value set");
}

#[test]
fn claimed_and_required_profiles() {
    let conformance = conformance();
    let mut resource = blood_pressure(120.0, 80.0);
    resource["status"] = json!("preliminary");
    assert!(conformance.validate_claimed(&resource, &[]).iter().any(|i| i.is_error()));
    // An unknown claimed profile is not checked; a required one is.
    resource["meta"]["profile"] = json!(["http://example.org/unknown"]);
    assert!(!conformance.validate_claimed(&resource, &[]).iter().any(|i| i.is_error()));
    assert!(conformance.validate_claimed(&resource, &[bp_url()]).iter().any(|i| i.is_error()));
    // An unknown profile asked for by name is an error.
    assert_error(&errors(&conformance, &resource, "http://example.org/unknown"), "is not known to this server");
}

#[test]
fn the_wrong_type_is_refused() {
    let conformance = conformance();
    assert_error(&errors(&conformance, &patient(), &bp_url()), "is not a Observation");
}

#[test]
fn dependencies_are_resolved_from_what_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackageStore::new(dir.path());
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../testdata/ig");
    let clinic = pack_dir(&root.join("fhir-server.test.clinic")).unwrap();
    let refused = store.install(&clinic, false, &[]).unwrap_err().to_string();
    assert!(refused.contains("fhir-server.test.clinic#0.2.0 needs fhir-server.test.vitals#1.0.x (none is installed)"), "{refused}");
    assert!(store.load().unwrap().is_empty());
    // Allowed explicitly, the missing one is reported.
    let (_, installed) = store.install(&clinic, true, &[]).unwrap();
    assert_eq!(installed.missing.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let store = PackageStore::new(dir.path());
    store.install(&pack_dir(&root.join("fhir-server.test.vitals")).unwrap(), false, &[]).unwrap();
    store.install(&clinic, false, &[]).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(resolve(&loaded, false).unwrap().is_empty());
    assert!(resolve(&loaded[..1], false).is_err());

    // Not removed while needed; removed in the other order.
    let refused = store.remove("fhir-server.test.vitals").unwrap_err().to_string();
    assert!(refused.contains("fhir-server.test.clinic#0.2.0 needs fhir-server.test.vitals#1.0.0"), "{refused}");
    assert_eq!(store.remove("fhir-server.test.clinic").unwrap().id(), "fhir-server.test.clinic#0.2.0");
    store.remove("fhir-server.test.vitals").unwrap();
    assert!(store.load().unwrap().is_empty());
    assert!(store.remove("fhir-server.test.vitals").unwrap_err().to_string().contains("is not installed"));
}
