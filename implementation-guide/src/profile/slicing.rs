//! Slicing: each value of a sliced element is given to the first slice whose discriminators it
//! meets, checked against that slice's constraints, and counted; each slice's cardinality is
//! then checked, and with `rules: closed` a value in no slice is an error.
//!
//! Discriminators supported, on a dotted path of element names (or `$this`):
//! - `value` and `pattern`: the value at the path equals the slice's fixed value there, or
//!   contains its pattern, or (with neither) has a code in the slice's required binding there.
//!   An extension slice's `url` is its type's profile URL.
//! - `exists`: the path has a value when the slice requires one there, none when it forbids it.
//! - `type`: the value's type (a choice suffix, or a resource's `resourceType`) is the slice's.
//! - `profile`: the value conforms to the profile the slice's type names.
//!
//! `resolve()` at the end of a path (`type` and `profile` discriminators on what a Reference
//! points to) finds the resource in the Bundle being validated (by `fullUrl`, or `Type/id`).
//!
//! A discriminator this cannot evaluate (a reference outside the Bundle, other functions in the
//! path, a profile that is not loaded, an unknown type) leaves the value unplaced with a warning,
//! and the minimum of the slices it might be in is not judged: no value is judged by a guess.
//! Without a `slicing` (a differential slicing the base's slices), extensions are sliced by url.
//! With `ordered`, the values placed in slices must come in the slices' order.

use serde_json::Value;

use fhir_core::{Issue, IssueType};

use super::model::{Discriminator, Node, Slicing};
use super::invariants;
use super::validate::{matches_pattern, same_type, validate, Item, Walker};

pub(crate) fn check(walker: &mut Walker<'_>, node: &Node, items: &[Item<'_>]) {
    let by_url = Slicing { discriminators: vec![Discriminator { kind: "value".into(), path: "url".into() }], closed: false, ordered: false };
    let slicing = match &node.element.slicing {
        Some(slicing) => slicing,
        None if node.element.path.ends_with("xtension") || node.slices.iter().all(|(_, slice)| is_extension_slice(slice)) => &by_url,
        None => return,
    };
    let mut counts = vec![0u32; node.slices.len()];
    // Slices that a value might be in, though it could not be told: their minimum is not judged.
    let mut uncertain = vec![false; node.slices.len()];
    let mut warned = false;
    // The slice of the previous value placed, for `ordered`.
    let mut last_slice = 0;
    for item in items {
        let mut found = None;
        let mut unsure = false;
        for (index, (_, slice)) in node.slices.iter().enumerate() {
            // In order, stopping at the first unmet one (a `profile` one is costly).
            let mut met = Some(true);
            for discriminator in &slicing.discriminators {
                met = meets(walker, slice, discriminator, item);
                if met != Some(true) {
                    break;
                }
            }
            match met {
                Some(true) => {
                    found = Some(index);
                    break;
                }
                Some(false) => {}
                None => {
                    uncertain[index] = true;
                    unsure = true;
                }
            }
        }
        match found {
            Some(index) => {
                if slicing.ordered && index < last_slice {
                    walker.error(IssueType::Structure, &item.path, format!("{} must list its slices in order: slice {} comes after slice {}", node.element.path, node.slices[index].0, node.slices[last_slice].0));
                }
                last_slice = last_slice.max(index);
                counts[index] += 1;
                let (name, slice) = &node.slices[index];
                let before = walker.issues.len();
                walker.check_item(slice, item);
                invariants::evaluate_in_slice(walker, slice, item);
                for issue in &mut walker.issues[before..] {
                    issue.diagnostics = format!("slice {name}: {}", issue.diagnostics);
                }
            }
            None if unsure && !warned => {
                warned = true;
                let diagnostics = format!("some values of {} could not be placed in its slices here; they were not checked against them (profile {})", node.element.path, walker.profile.url);
                walker.issues.push(Issue::warning(IssueType::NotSupported, diagnostics).at(item.path.clone()));
            }
            None if unsure => {}
            None if slicing.closed => walker.error(IssueType::Structure, &item.path, format!("{} is in none of the slices of a closed slicing", node.element.path)),
            None => {}
        }
    }
    let path = items.first().map(|item| item.path.split('[').next().unwrap_or_default().to_string()).unwrap_or_default();
    for (((name, slice), count), uncertain) in node.slices.iter().zip(counts).zip(uncertain) {
        if !uncertain && slice.element.min.is_some_and(|min| count < min) {
            walker.error(IssueType::Required, &path, format!("slice {name} of {} needs at least {} value(s), found {count}", node.element.path, slice.element.min.unwrap_or(0)));
        }
        if slice.element.max.is_some_and(|max| !max.allows(count as usize)) {
            walker.error(IssueType::Structure, &path, format!("slice {name} of {} allows at most {} value(s), found {count}", node.element.path, slice.element.max.map(|m| m.to_string()).unwrap_or_default()));
        }
    }
}

fn is_extension_slice(slice: &Node) -> bool {
    slice.element.types.iter().any(|t| t.code == "Extension" && !t.profiles.is_empty())
}

/// Whether `item` meets one discriminator of `slice`; `None` when that cannot be told.
fn meets(walker: &Walker<'_>, slice: &Node, discriminator: &Discriminator, item: &Item<'_>) -> Option<bool> {
    let path = discriminator.path.strip_prefix("$this").map(|rest| rest.trim_start_matches('.')).unwrap_or(&discriminator.path);
    if let Some(before) = path.strip_suffix("resolve()") {
        return meets_resolved(walker, slice, discriminator, item, &steps(before.trim_end_matches('.')));
    }
    let segments = steps(path);
    if segments.iter().any(|s| s.contains(['(', ')', ':'])) {
        return None;
    }
    let target = descend(slice, &segments);
    let values = values_at(item.value, &segments);
    match discriminator.kind.as_str() {
        "value" | "pattern" => {
            if let Some(fixed) = target.and_then(|t| t.element.fixed.as_ref()) {
                return Some(values.contains(&fixed));
            }
            if let Some(pattern) = target.and_then(|t| t.element.pattern.as_ref()) {
                return Some(values.iter().any(|v| matches_pattern(v, pattern)));
            }
            if segments == ["url"] && is_extension_slice(slice) {
                let urls: Vec<&str> = slice.element.types.iter().flat_map(|t| &t.profiles).map(String::as_str).collect();
                return Some(values.iter().any(|v| v.as_str().is_some_and(|url| urls.contains(&url))));
            }
            let value_set = target.and_then(|t| t.element.required_value_set.as_deref())?;
            Some(values.iter().any(|v| walker.scope.conformance.value_in(value_set, v) == Some(true)))
        }
        "exists" => {
            let target = target?;
            match (target.element.min, target.element.max) {
                (Some(min), _) if min > 0 => Some(!values.is_empty()),
                (_, Some(max)) if !max.allows(1) => Some(values.is_empty()),
                _ => None,
            }
        }
        "type" => {
            let target = target?;
            let found = if segments.is_empty() { item.type_code.clone().or_else(|| resource_type(item.value)) } else { values.first().and_then(|v| resource_type(v)) };
            let found = found?;
            Some(target.element.types.iter().any(|t| same_type(&t.code, &found)))
        }
        "profile" => {
            // A slice that names no profile there does not narrow by profile.
            let urls: Vec<&String> = target?.element.types.iter().flat_map(|t| &t.profiles).collect();
            if urls.is_empty() {
                return Some(true);
            }
            conforms(walker, &urls, &values, &item.path)
        }
        _ => None,
    }
}

/// The steps of a discriminator path (none for the value itself).
fn steps(path: &str) -> Vec<&str> {
    match path {
        "" => Vec::new(),
        path => path.split('.').collect(),
    }
}

/// Whether some of `values` conforms to one of the profiles `urls` names; `None` when one is not
/// loaded.
fn conforms(walker: &Walker<'_>, urls: &[&String], values: &[&Value], path: &str) -> Option<bool> {
    let profiles: Vec<_> = urls.iter().map(|url| walker.scope.conformance.profile(url)).collect::<Option<Vec<_>>>()?;
    Some(values.iter().any(|v| profiles.iter().any(|p| !validate(walker.scope.deeper(), p, v, path).iter().any(Issue::is_error))))
}

/// A `type` or `profile` discriminator on what the references at `before` point to, found in
/// the Bundle being validated; `None` when one cannot be found there.
fn meets_resolved(walker: &Walker<'_>, slice: &Node, discriminator: &Discriminator, item: &Item<'_>, before: &[&str]) -> Option<bool> {
    let target = descend(slice, before)?;
    let resolved: Vec<&Value> = values_at(item.value, before).into_iter().map(|reference| resolve(walker.scope.bundle, reference)).collect::<Option<_>>()?;
    let urls: Vec<&String> = target.element.types.iter().flat_map(|t| &t.target_profiles).collect();
    if urls.is_empty() {
        return Some(true);
    }
    match discriminator.kind.as_str() {
        "type" => {
            let types: Vec<String> = urls.iter().filter_map(|url| walker.scope.conformance.profile(url).map(|p| p.type_name.clone()).or_else(|| core_type(url))).collect();
            Some(resolved.iter().any(|r| resource_type(r).is_some_and(|t| types.contains(&t))))
        }
        "profile" => conforms(walker, &urls, &resolved, &item.path),
        _ => None,
    }
}

/// The type an R4 StructureDefinition URL names (`.../StructureDefinition/Patient`).
fn core_type(url: &str) -> Option<String> {
    url.strip_prefix("http://hl7.org/fhir/StructureDefinition/").filter(|t| fhir_core::r4().is_resource_type(t)).map(String::from)
}

/// The entry resource of `bundle` a Reference points to: by `fullUrl`, or for a relative
/// `Type/id` by the entry's type and id.
fn resolve<'b>(bundle: Option<&'b Value>, reference: &Value) -> Option<&'b Value> {
    let reference = reference.get("reference")?.as_str()?;
    let relative = reference.split_once('/').filter(|_| !reference.contains(':'));
    bundle?.get("entry")?.as_array()?.iter().find_map(|entry| {
        let resource = entry.get("resource")?;
        let by_url = entry.get("fullUrl").and_then(Value::as_str) == Some(reference);
        let by_id = relative.is_some_and(|(kind, id)| resource_type(resource).as_deref() == Some(kind) && resource.get("id").and_then(Value::as_str) == Some(id));
        (by_url || by_id).then_some(resource)
    })
}

fn resource_type(value: &Value) -> Option<String> {
    value.get("resourceType").and_then(Value::as_str).map(String::from)
}

/// The node at a path below a slice (`None` if the slice says nothing there).
fn descend<'n>(slice: &'n Node, segments: &[&str]) -> Option<&'n Node> {
    let mut node = slice;
    for segment in segments {
        node = node.child(segment).or_else(|| node.child(&format!("{segment}[x]")))?;
    }
    Some(node)
}

/// The JSON values at a path below a value, arrays flattened.
fn values_at<'v>(value: &'v Value, segments: &[&str]) -> Vec<&'v Value> {
    let mut current = vec![value];
    for segment in segments {
        let mut next = Vec::new();
        for value in current {
            match value.get(segment) {
                Some(Value::Array(items)) => next.extend(items),
                Some(found) => next.push(found),
                None => {}
            }
        }
        current = next;
    }
    current
}
