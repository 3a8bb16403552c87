//! The 719 example instances of the R4 spec (the non-conformance resources of
//! `hl7.fhir.r4.examples@4.0.1`), for the tests that run over them. They live outside the
//! repository: in `$FHIR_R4_EXAMPLES`, or else in `$HOME/.cache/fhir-r4-examples`, where
//! `scripts/fetch-examples` (run here when they are missing) puts them. Missing examples fail
//! the test; they never skip it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const EXPECTED_EXAMPLES: usize = 719;

/// The directory of the examples, fetched first if they are not there.
pub fn dir() -> PathBuf {
    let dir = match std::env::var_os("FHIR_R4_EXAMPLES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set and FHIR_R4_EXAMPLES is not either")).join(".cache/fhir-r4-examples"),
    };
    if !dir.join(".complete").exists() {
        let script = fetch_script();
        let status = Command::new("bash")
            .arg(&script)
            .env("FHIR_R4_EXAMPLES", &dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed; the R4 examples are required", script.display());
        assert!(dir.join(".complete").exists(), "{} did not provide the examples", script.display());
    }
    dir
}

/// `scripts/fetch-examples`.
pub fn fetch_script() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../scripts/fetch-examples")
}

/// Every example as (file name, JSON), sorted by name, except the files `skip` names.
pub fn load(skip: &[&str]) -> Vec<(String, Value)> {
    let dir = dir();
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !name.ends_with(".json") || skip.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        let json: Value = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        examples.push((name, json));
    }
    examples.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(examples.len() + skip.len(), EXPECTED_EXAMPLES, "wrong number of examples in {}", dir.display());
    examples
}
