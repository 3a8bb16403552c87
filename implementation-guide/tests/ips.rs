//! A published Implementation Guide: the International Patient Summary 2.0.0
//! (`hl7.fhir.uv.ips`, from the npm registry; US Core is not published there). `scripts/test`
//! fetches it and sets `FHIR_IPS_PACKAGE` to its tarball. Its three dependencies are not on the
//! registry in the versions it names, so it installs only with missing dependencies allowed.
//! Every example of the package conforms to the profiles it claims, and broken copies do not.

use std::io::Read;

use implementation_guide::{Conformance, Package, PackageStore};
use serde_json::{json, Value};

fn tarball() -> Vec<u8> {
    let path = std::env::var("FHIR_IPS_PACKAGE").expect("FHIR_IPS_PACKAGE is not set: run the tests with scripts/test (scripts/fetch-package fetches it)");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The examples in `package/example/`, by file name.
fn examples(tarball: &[u8]) -> Vec<(String, Value)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(name) = path.strip_prefix("package/example/").filter(|n| n.ends_with(".json")) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found.push((name.to_string(), serde_json::from_str(&text).unwrap()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn errors(conformance: &Conformance, resource: &Value) -> Vec<String> {
    conformance.validate_claimed(resource, &[]).into_iter().filter(|i| i.is_error()).map(|i| format!("{} @ {:?}", i.diagnostics, i.expression)).collect()
}

#[test]
fn ips_installs_with_its_missing_dependencies_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackageStore::new(dir.path());
    let refused = store.install(&tarball(), false, &[]).unwrap_err().to_string();
    for missing in ["hl7.terminology.r4#6.5.0", "hl7.fhir.uv.extensions.r4#5.2.0", "hl7.fhir.uv.ipa#1.1.0"] {
        assert!(refused.contains(missing), "{refused}");
    }
    let (_, installed) = store.install(&tarball(), true, &[]).unwrap();
    assert_eq!(installed.missing.len(), 3);
    assert_eq!(store.load().unwrap()[0].manifest.id(), "hl7.fhir.uv.ips#2.0.0");
}

#[test]
fn ips_examples_conform_and_broken_ones_do_not() {
    let tarball = tarball();
    let conformance = Conformance::new(&[Package::from_tgz(&tarball).unwrap()]);
    assert!(conformance.unusable().is_empty(), "{:?}", conformance.unusable());
    assert!(conformance.resource_profiles().len() >= 25, "{:?}", conformance.resource_profiles());
    let examples = examples(&tarball);
    assert!(examples.len() >= 40, "{} examples", examples.len());
    let mut checked = 0;
    for (name, example) in &examples {
        let claims_known = example.pointer("/meta/profile").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).any(|url| conformance.profile(url).is_some());
        if claims_known {
            checked += 1;
            assert_eq!(errors(&conformance, example), Vec::<String>::new(), "{name}");
        }
    }
    assert!(checked >= 40, "{checked} examples claim an IPS profile");

    let example = |name: &str| examples.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1.clone();
    // The IPS Patient needs a name.
    let mut patient = example("Patient-66033.json");
    patient.as_object_mut().unwrap().remove("name");
    assert!(errors(&conformance, &patient).iter().any(|e| e.contains("Patient.name needs at least 1")), "{:?}", errors(&conformance, &patient));
    // An IPS document needs its Composition entry.
    let mut bundle = example("Bundle-bundle-minimal.json");
    bundle["entry"].as_array_mut().unwrap().retain(|e| e["resource"]["resourceType"] != "Composition");
    assert!(errors(&conformance, &bundle).iter().any(|e| e.contains("slice composition of Bundle.entry needs at least 1")), "{:?}", errors(&conformance, &bundle));
    // A Composition without its subject fails the IPS Composition, alone or in a document,
    // where it then is in no slice.
    let mut composition = example("Composition-composition-minimal.json");
    composition.as_object_mut().unwrap().remove("subject");
    assert!(errors(&conformance, &composition).iter().any(|e| e.contains("Composition.subject needs at least 1")), "{:?}", errors(&conformance, &composition));
    let mut bundle = example("Bundle-bundle-minimal.json");
    for entry in bundle["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "Composition" {
            entry["resource"].as_object_mut().unwrap().remove("subject");
        }
    }
    assert!(errors(&conformance, &bundle).iter().any(|e| e.contains("slice composition of Bundle.entry needs at least 1")), "{:?}", errors(&conformance, &bundle));
    // Section entries are sliced by the profile of what they refer to: found in the document,
    // a lone Composition's references cannot be followed (a warning says so).
    let unplaced = |resource: &Value| {
        let issues = conformance.validate_claimed(resource, &[]);
        issues.iter().any(|i| i.diagnostics.contains("some values of Composition.section.entry could not be placed"))
    };
    assert!(unplaced(&example("Composition-composition-minimal.json")));
    assert!(!unplaced(&example("Bundle-bundle-minimal.json")));
    // A required binding to a ValueSet of the guide: the code of an estimated delivery date.
    let mut edd = example("Observation-pregnancy-edd-example.json");
    edd["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "8302-2"}]});
    assert!(errors(&conformance, &edd).iter().any(|e| e.contains("outside the required value set http://hl7.org/fhir/uv/ips/ValueSet/edd-method-uv-ips")), "{:?}", errors(&conformance, &edd));
}
