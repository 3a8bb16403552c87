//! A profile's FHIRPath invariants (`constraint.expression`), evaluated over the resource.
//!
//! An invariant at an element path must hold for every value there, each evaluated with itself
//! as `%context` ([`fhirpath::Invariant`]). Invariants inside slices are not evaluated (they hold
//! only for the slice's values, which a path cannot select). An invariant the engine cannot
//! compile or evaluate is a warning saying so, never a pass or an error: the validator does not
//! guess.

use std::collections::HashSet;

use serde_json::Value;

use fhir_core::{Issue, IssueType};

use super::model::Profile;

pub(crate) fn evaluate(profile: &Profile, resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut seen = HashSet::new();
    for node in profile.root.unsliced() {
        for constraint in &node.element.constraints {
            if !seen.insert((&node.element.path, &constraint.key)) {
                continue;
            }
            let path = node.element.path.replace("[x]", "");
            let outcome = constraint.invariant.as_ref().map_err(String::clone).and_then(|invariant| invariant.holds(resource).map_err(|e| e.to_string()));
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    let diagnostics = format!("invariant {} failed: {} (profile {})", constraint.key, constraint.human, profile.url);
                    let issue = if constraint.error { Issue::error(IssueType::Invariant, diagnostics) } else { Issue::warning(IssueType::Invariant, diagnostics) };
                    issues.push(issue.at(path));
                }
                Err(why) => {
                    let diagnostics = format!("invariant {} could not be evaluated ({why}); it was not checked (profile {})", constraint.key, profile.url);
                    issues.push(Issue::warning(IssueType::NotSupported, diagnostics).at(path));
                }
            }
        }
    }
    issues
}
