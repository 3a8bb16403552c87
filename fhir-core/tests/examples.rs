//! Validates every example instance of the R4 spec (the 719 non-conformance resources of
//! `hl7.fhir.r4.examples@4.0.1`) and expects no error, except for the few listed in
//! [`KNOWN_INVALID`] with the reason each is invalid.
//!
//! The examples come from `support/r4_examples.rs`: missing ones fail the test, never skip it.

#[path = "support/r4_examples.rs"]
mod r4_examples;

use fhir_core::validation::validate_resource;

/// Examples the spec ships although they break its own rules: (file, what every error in it
/// says, why). Each listed file must still fail, and only in that way, so the list cannot go
/// stale or hide a new problem.
const KNOWN_INVALID: &[(&str, &str, &str)] = &[(
    "Questionnaire-qs1.json",
    "missing required element linkId",
    "its display items have no linkId, which Questionnaire.item requires (min 1)",
)];

#[test]
fn every_r4_example_is_valid() {
    let examples = r4_examples::load(&[]);

    let mut failures = Vec::new();
    for (name, resource) in &examples {
        let errors: Vec<_> = validate_resource(resource).into_iter().filter(|i| i.is_error()).collect();
        let known = KNOWN_INVALID.iter().find(|(file, _, _)| file == name);
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
        assert!(examples.iter().any(|(name, _)| name == file), "{file} is listed as invalid but is not an example");
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
