//! What a parameter's expression needs on one resource type, worked out once from its text:
//! only the union terms rooted at that type can give values (`AllergyIntolerance.patient |
//! CarePlan.subject.where(...) | ...`: on a CarePlan every other term starts with a type test
//! that fails), and a term that only navigates from a top-level element gives nothing when the
//! resource lacks that element. Extraction then evaluates the terms that apply, and skips the
//! parameter when none of the elements it needs is present.

use std::sync::LazyLock;

use regex::Regex;

use crate::definitions::r4;

/// The expression to evaluate on one resource type, and when it can be skipped.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// The terms that apply to the type, joined by `|`.
    pub expression: String,
    /// If every term navigates from a top-level element: those elements (a resource with none of
    /// them gets nothing from the expression). `None`: always evaluate.
    pub needs: Option<Vec<String>>,
}

/// `Type.element` at the start of a term, after any opening parentheses, and the rest.
static ROOT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\(*([A-Z][A-Za-z]*)\.([a-z][A-Za-z0-9]*)(.*)$").expect("regex"));

/// What may follow the root for the term to give nothing when the root element is absent:
/// navigation, filters and type casts (each gives nothing from nothing). `where(...)` bodies are
/// removed before the check.
static NAVIGATION_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:\.[a-zA-Z][a-zA-Z0-9]*|\.where\(\)|\.(?:ofType|as)\([A-Za-z]+\)|\.resolve\(\)|\.first\(\)|\s+as\s+[A-Za-z]+|\[\d+\]|\s*\))*\s*$",
    )
    .expect("regex")
});

/// The expression as written, always evaluated.
pub(super) fn unplanned(expression: &str) -> Plan {
    Plan { expression: expression.to_string(), needs: None }
}

pub(super) fn plan(resource_type: &str, expression: &str) -> Plan {
    let mut kept = Vec::new();
    let mut needs = Some(Vec::new());
    for term in split_union(expression) {
        let Some(root) = ROOT.captures(term) else {
            kept.push(term);
            needs = None;
            continue;
        };
        let (root_type, element, rest) = (&root[1], &root[2], &root[3]);
        // A term rooted at another concrete resource type tests the focus's type first.
        if root_type != resource_type && r4().is_resource_type(root_type) {
            continue;
        }
        kept.push(term);
        match (&mut needs, NAVIGATION_ONLY.is_match(&without_where_bodies(rest))) {
            (Some(needs), true) => {
                if !needs.iter().any(|need| need == element) {
                    needs.push(element.to_string());
                }
            }
            _ => needs = None,
        }
    }
    if kept.is_empty() {
        // Nothing names this type: keep the expression as it is rather than guess.
        return Plan { expression: expression.to_string(), needs: None };
    }
    Plan { expression: kept.join(" | "), needs }
}

/// The terms of a top-level union (`|` outside parentheses and string literals).
fn split_union(expression: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i32, false, false, 0);
    for (index, character) in expression.char_indices() {
        if in_string {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => in_string = false,
                _ => {}
            }
            continue;
        }
        match character {
            '\'' => in_string = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth == 0 => {
                terms.push(expression[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(expression[start..].trim());
    terms
}

/// `x.where(...).y` as `x.where().y`. Unbalanced text is returned whole (it then fails the
/// navigation check).
fn without_where_bodies(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find(".where(") {
        out.push_str(&rest[..found + ".where(".len()]);
        let body = &rest[found + ".where(".len()..];
        let mut depth = 1;
        let Some(end) = body.char_indices().find_map(|(index, character)| {
            match character {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(index)
        }) else {
            return text.to_string();
        };
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `resource` has `element`, under any of its JSON names (`value` as `valueQuantity`,
/// a primitive's `_birthDate`).
pub(super) fn has_element(resource: &serde_json::Map<String, serde_json::Value>, element: &str) -> bool {
    if resource.contains_key(element) {
        return true;
    }
    resource.keys().any(|key| {
        let key = key.strip_prefix('_').unwrap_or(key);
        key.strip_prefix(element).is_some_and(|suffix| suffix.is_empty() || suffix.starts_with(|c: char| c.is_ascii_uppercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_terms_of_the_type() {
        let expression = "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | Observation.subject.where(resolve() is Patient)";
        let plan = plan("Observation", expression);
        assert_eq!(plan.expression, "Observation.subject.where(resolve() is Patient)");
        assert_eq!(plan.needs, Some(vec!["subject".to_string()]));
    }

    #[test]
    fn casts_and_choices_need_their_element() {
        let plan = plan("Observation", "(Observation.value as Quantity) | (Observation.value as SampledData)");
        assert_eq!(plan.needs, Some(vec!["value".to_string()]));
        assert_eq!(super::plan("Condition", "Condition.onset.as(Age) | Condition.onset.as(Range)").needs, Some(vec!["onset".to_string()]));
        let resource = serde_json::json!({"valueQuantity": {"value": 1}, "_birthDate": {}, "dataAbsentReason": {}});
        let object = resource.as_object().unwrap();
        assert!(has_element(object, "value"));
        assert!(has_element(object, "birthDate"));
        assert!(has_element(object, "dataAbsentReason"));
        assert!(!has_element(object, "valueQuantityX"));
        assert!(!has_element(object, "effective"));
    }

    #[test]
    fn anything_but_navigation_is_always_evaluated() {
        // `exists()` gives `false` from nothing: a living patient has deceased=false.
        let plan = plan("Patient", "Patient.deceased.exists() and Patient.deceased != false");
        assert_eq!(plan.needs, None);
        assert_eq!(super::plan("Observation", "Observation").needs, None);
        assert_eq!(super::plan("Observation", "Observation.extension('http://x|y')").needs, None);
        assert_eq!(super::plan("Resource", "Resource.meta.tag").needs, Some(vec!["meta".to_string()]));
    }

    #[test]
    fn splits_only_top_level_unions() {
        assert_eq!(split_union("a.where(b | c) | d.extension('x|y') | e"), vec!["a.where(b | c)", "d.extension('x|y')", "e"]);
        assert_eq!(without_where_bodies(".where(resolve() is Patient).x"), ".where().x");
    }
}
