//! A profile's FHIRPath invariants (`constraint.expression`), evaluated over the resource.
//!
//! An invariant at an element path must hold for every value there, each evaluated with itself
//! as `%context` ([`fhir_core::fhirpath::Invariant`]). An invariant inside a slice holds for the
//! values placed in that slice: it is evaluated from each of them ([`evaluate_in_slice`]). An
//! invariant the engine cannot compile or evaluate is a warning saying so, never a pass or an
//! error: the validator does not guess.

use std::collections::HashSet;

use serde_json::Value;

use fhir_core::{Issue, IssueType};

use fhir_core::fhirpath;

use super::model::{Constraint, Node, Profile};
use super::validate::{Item, Walker};

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
            issues.extend(judge(profile, constraint, outcome, &path));
        }
    }
    issues
}

/// The invariants of a slice (and of the elements below it) on one value placed in it. Only in
/// resources: the value is found again by its location from the resource, to be typed.
pub(crate) fn evaluate_in_slice(walker: &mut Walker<'_>, slice: &Node, item: &Item<'_>) {
    let constraints: Vec<&Constraint> = slice.unsliced().into_iter().flat_map(|node| &node.element.constraints).collect();
    if constraints.is_empty() || !walker.profile.is_resource {
        return;
    }
    let relative = item.path.strip_prefix(walker.root_path).and_then(|rest| rest.strip_prefix('.'));
    let location = relative.ok_or_else(|| "the value's location is not known".to_string()).and_then(|location| fhirpath::compile(location).map_err(|e| e.to_string()));
    let found = location.and_then(|location| location.evaluate(walker.root).map_err(|e| e.to_string()));
    for constraint in constraints {
        let outcome = match (&found, &constraint.invariant) {
            (Ok(items), Ok(invariant)) if items.len() == 1 => invariant.violations(walker.root, walker.root, &items[0]).map(|failed| failed.is_empty()).map_err(|e| e.to_string()),
            (Ok(_), Ok(_)) => Err("the value's location is not a single element".to_string()),
            (Err(why), _) | (_, Err(why)) => Err(why.clone()),
        };
        let issues = judge(walker.profile, constraint, outcome, &item.path);
        walker.issues.extend(issues);
    }
}

/// The issue of one invariant's outcome: none when it held, an error (or a warning, by its
/// severity) when not, and a warning when it could not be evaluated.
fn judge(profile: &Profile, constraint: &Constraint, outcome: Result<bool, String>, path: &str) -> Option<Issue> {
    match outcome {
        Ok(true) => None,
        Ok(false) => {
            let diagnostics = format!("invariant {} failed: {} (profile {})", constraint.key, constraint.human, profile.url);
            let issue = if constraint.error { Issue::error(IssueType::Invariant, diagnostics) } else { Issue::warning(IssueType::Invariant, diagnostics) };
            Some(issue.at(path))
        }
        Err(why) => {
            let diagnostics = format!("invariant {} could not be evaluated ({why}); it was not checked (profile {})", constraint.key, profile.url);
            Some(Issue::warning(IssueType::NotSupported, diagnostics).at(path))
        }
    }
}
