//! Validation of a resource (or a datatype value) against one profile: a walk of the profile's
//! element tree beside the JSON, checking at each element its cardinality, allowed types, fixed
//! and pattern values, required binding, and slices (see `slicing`); then the profile's FHIRPath
//! invariants over the whole resource.
//!
//! Diagnostics name the profile and the element, never a value of the resource.

use serde_json::{Map, Value};

use fhir_core::definitions::Primitive;
use fhir_core::{Issue, IssueType};

use super::model::{Node, Profile};
use super::{invariants, slicing};
use crate::Conformance;

/// How deep profiles may refer to profiles (extension definitions, slices by profile, bases).
pub(crate) const MAX_PROFILE_DEPTH: usize = 8;

/// One value found at an element: the JSON, its FHIR type when the JSON name tells it (a choice
/// element's suffix), and its FHIRPath location.
#[derive(Clone)]
pub(crate) struct Item<'v> {
    pub value: &'v Value,
    pub type_code: Option<String>,
    pub path: String,
}

/// What a validation works within: the loaded packages, the Bundle that references resolve in
/// (the document or collection being validated, for `resolve()` discriminators), and how deep
/// profiles have nested.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'c> {
    pub conformance: &'c Conformance,
    pub bundle: Option<&'c Value>,
    pub depth: usize,
}

impl<'c> Scope<'c> {
    pub fn new(conformance: &'c Conformance) -> Self {
        Scope { conformance, bundle: None, depth: 0 }
    }

    pub fn deeper(self) -> Self {
        Scope { depth: self.depth + 1, ..self }
    }
}

pub(crate) struct Walker<'c> {
    pub scope: Scope<'c>,
    pub profile: &'c Profile,
    /// What is validated (a resource, or a datatype value), and its location.
    pub root: &'c Value,
    pub root_path: &'c str,
    pub issues: Vec<Issue>,
}

/// Validates `value` (a resource, or a datatype for profiles on datatypes) against `profile`,
/// following its base profile when it was given as a differential.
pub(crate) fn validate<'c>(scope: Scope<'c>, profile: &'c Profile, value: &'c Value, path: &'c str) -> Vec<Issue> {
    if scope.depth > MAX_PROFILE_DEPTH {
        return vec![Issue::error(IssueType::TooCostly, format!("profiles nest more than {MAX_PROFILE_DEPTH} deep at {}", profile.url)).at(path)];
    }
    let bundle = match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => Some(value),
        _ => scope.bundle,
    };
    let scope = Scope { bundle, ..scope };
    let mut walker = Walker { scope, profile, root: value, root_path: path, issues: Vec::new() };
    if profile.is_resource && value.get("resourceType").and_then(Value::as_str) != Some(profile.type_name.as_str()) {
        walker.error(IssueType::Invalid, path, format!("is not a {}", profile.type_name));
        return walker.issues;
    }
    let item = Item { value, type_code: Some(profile.type_name.clone()), path: path.to_string() };
    walker.check(&profile.root, std::slice::from_ref(&item), path);
    if profile.is_resource {
        walker.issues.extend(invariants::evaluate(profile, value));
    }
    if !profile.from_snapshot {
        if let Some(base) = profile.base_definition.as_deref().and_then(|url| scope.conformance.profile(url)) {
            walker.issues.extend(validate(scope.deeper(), base, value, path));
        }
    }
    walker.issues
}

impl Walker<'_> {
    pub fn error(&mut self, code: IssueType, path: &str, what: String) {
        let diagnostics = format!("{what} (profile {})", self.profile.url);
        self.issues.push(Issue::error(code, diagnostics).at(path));
    }

    /// Checks the values found at one element: how many, then each, then its slices.
    pub fn check(&mut self, node: &Node, items: &[Item<'_>], path: &str) {
        let element = &node.element;
        if let Some(min) = element.min {
            if (items.len() as u32) < min {
                self.error(IssueType::Required, path, format!("{} needs at least {min} value(s), found {}", element.path, items.len()));
            }
        }
        if let Some(max) = element.max {
            if !max.allows(items.len()) {
                self.error(IssueType::Structure, path, format!("{} allows at most {max} value(s), found {}", element.path, items.len()));
            }
        }
        for item in items {
            self.check_item(node, item);
        }
        if !node.slices.is_empty() && !items.is_empty() {
            slicing::check(self, node, items);
        }
    }

    /// Checks one value against an element's own constraints and its children.
    pub fn check_item(&mut self, node: &Node, item: &Item<'_>) {
        let element = &node.element;
        if let (Some(type_code), false) = (&item.type_code, element.types.is_empty()) {
            if !element.types.iter().any(|t| same_type(&t.code, type_code)) {
                self.error(IssueType::Structure, &item.path, format!("type {type_code} is not allowed at {}", element.path));
            }
        }
        if let Some(fixed) = &element.fixed {
            if item.value != fixed {
                self.error(IssueType::Value, &item.path, format!("{} must have the profile's fixed value", element.path));
            }
        }
        if let Some(pattern) = &element.pattern {
            if !matches_pattern(item.value, pattern) {
                self.error(IssueType::Value, &item.path, format!("{} must match the profile's pattern", element.path));
            }
        }
        if let Some(value_set) = &element.required_value_set {
            if self.scope.conformance.value_in(value_set, item.value) == Some(false) {
                self.error(IssueType::CodeInvalid, &item.path, format!("{} has a code outside the required value set {value_set}", element.path));
            }
        }
        self.check_type_profile(node, item);
        let Some(object) = item.value.as_object() else { return };
        for (name, child) in &node.children {
            let found = children(object, name, &item.path);
            self.check(child, &found, &format!("{}.{}", item.path, name.trim_end_matches("[x]")));
        }
    }

    /// A value whose only type names loaded profiles (an extension's definition, a datatype
    /// profile) must conform to one of them.
    fn check_type_profile(&mut self, node: &Node, item: &Item<'_>) {
        let [only] = node.element.types.as_slice() else { return };
        let loaded: Vec<&Profile> = only.profiles.iter().filter_map(|url| self.scope.conformance.profile(url)).filter(|p| !std::ptr::eq(*p, self.profile)).collect();
        if loaded.is_empty() || only.profiles.len() != loaded.len() {
            return;
        }
        // The issues of the first profile it conforms to (warnings only), else of the first.
        let mut results: Vec<Vec<Issue>> = loaded.iter().map(|profile| validate(self.scope.deeper(), profile, item.value, &item.path)).collect();
        let chosen = results.iter().position(|issues| !issues.iter().any(Issue::is_error)).unwrap_or(0);
        self.issues.append(&mut results[chosen]);
    }
}

/// The values of the child element `name` of an object: a choice element (`value[x]`) by each
/// JSON name it may take (`valueQuantity`), typed by the suffix. A primitive that has only its
/// `_name` sibling (an extension such as data-absent-reason instead of a value) is present, as
/// that sibling.
pub(crate) fn children<'v>(object: &'v Map<String, Value>, name: &str, parent: &str) -> Vec<Item<'v>> {
    let mut items = Vec::new();
    match name.strip_suffix("[x]") {
        Some(base) => {
            for (key, value) in object {
                let plain = key.strip_prefix('_').filter(|plain| !object.contains_key(*plain)).unwrap_or(key);
                let Some(suffix) = plain.strip_prefix(base).filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase())) else { continue };
                push_items(&mut items, value, Some(type_of_suffix(suffix)), &format!("{parent}.{plain}"));
            }
        }
        None => {
            if let Some(value) = object.get(name).or_else(|| object.get(&format!("_{name}"))) {
                push_items(&mut items, value, None, &format!("{parent}.{name}"));
            }
        }
    }
    items
}

fn push_items<'v>(items: &mut Vec<Item<'v>>, value: &'v Value, type_code: Option<String>, path: &str) {
    match value {
        Value::Array(values) => items.extend(values.iter().enumerate().map(|(i, value)| Item { value, type_code: type_code.clone(), path: format!("{path}[{i}]") })),
        value => items.push(Item { value, type_code, path: path.to_string() }),
    }
}

/// The type a choice suffix names: `Quantity`, or `dateTime` for `DateTime`.
fn type_of_suffix(suffix: &str) -> String {
    let mut lower = suffix.to_string();
    if let Some(first) = lower.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    if Primitive::from_name(&lower).is_some() {
        lower
    } else {
        suffix.to_string()
    }
}

/// Type codes compare as written; a profile's element may also name a constrained type
/// (`SimpleQuantity`) where the JSON is the general one.
pub(crate) fn same_type(allowed: &str, found: &str) -> bool {
    allowed == found || (found == "Quantity" && matches!(allowed, "SimpleQuantity" | "MoneyQuantity")) || allowed == "*"
}

/// Whether `value` has everything `pattern` has: objects key by key, arrays item by item (each
/// pattern item matched by some value item), primitives equal (numbers by value).
pub(crate) fn matches_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(value), Value::Object(pattern)) => pattern.iter().all(|(key, wanted)| value.get(key).is_some_and(|found| matches_pattern(found, wanted))),
        (Value::Array(values), Value::Array(wanted)) => wanted.iter().all(|w| values.iter().any(|v| matches_pattern(v, w))),
        // A repeating element's pattern is one item's.
        (Value::Array(values), wanted) => values.iter().any(|v| matches_pattern(v, wanted)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}
