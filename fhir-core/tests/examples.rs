//! Validates every example instance of the R4 spec (the 719 non-conformance resources of
//! `hl7.fhir.r4.examples@4.0.1`) and expects no error, except for the few listed in
//! [`KNOWN_INVALID`] with the reason each is invalid.
//!
//! The examples live outside the repository: in `$FHIR_R4_EXAMPLES`, or else in
//! `$HOME/.cache/fhir-r4-examples`, where `scripts/fetch-examples` (run by this test when they
//! are missing) puts them. Missing examples fail the test; they never skip it.

use std::path::{Path, PathBuf};
use std::process::Command;

use fhir_core::validation::validate_resource;

const EXPECTED_EXAMPLES: usize = 719;

/// Examples the spec ships although they break its own rules: (file, what every error in it
/// says, why). Each listed file must still fail, and only in that way, so the list cannot go
/// stale or hide a new problem.
const KNOWN_INVALID: &[(&str, &str, &str)] = &[(
    "Questionnaire-qs1.json",
    "missing required element linkId",
    "its display items have no linkId, which Questionnaire.item requires (min 1)",
)];

fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FHIR_R4_EXAMPLES") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set and FHIR_R4_EXAMPLES is not either");
    PathBuf::from(home).join(".cache/fhir-r4-examples")
}

fn ensure_examples(dir: &Path) {
    if dir.join(".complete").exists() {
        return;
    }
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../scripts/fetch-examples");
    let status = Command::new("bash")
        .arg(&script)
        .env("FHIR_R4_EXAMPLES", dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed; the R4 examples are required", script.display());
    assert!(dir.join(".complete").exists(), "{} did not provide the examples", script.display());
}

#[test]
fn every_r4_example_is_valid() {
    let dir = examples_dir();
    ensure_examples(&dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), EXPECTED_EXAMPLES, "wrong number of examples in {}", dir.display());

    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        let resource: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let errors: Vec<_> = validate_resource(&resource).into_iter().filter(|i| i.is_error()).collect();
        let known = KNOWN_INVALID.iter().find(|(file, _, _)| *file == name);
        if let Some((_, _, reason)) = known {
            if errors.is_empty() {
                failures.push(format!("{name} is listed as invalid ({reason}) but has no error"));
            }
        }
        for issue in errors {
            if !known.is_some_and(|(_, what, _)| issue.diagnostics.contains(what)) {
                failures.push(format!("{name}: {} at {:?}", issue.diagnostics, issue.expression));
            }
        }
    }
    for (file, _, _) in KNOWN_INVALID {
        assert!(files.iter().any(|f| f.ends_with(file)), "{file} is listed as invalid but is not an example");
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
