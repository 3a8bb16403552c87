//! The codes of a ValueSet, as far as the loaded packages and the R4 definitions tell them.
//!
//! A ValueSet is expanded from its `compose`: included concept lists, whole CodeSystems that
//! are loaded with `content: complete`, and imported ValueSets, less the excluded concepts.
//! An include that needs a terminology server (a filter, or a whole system that is not loaded,
//! such as SNOMED CT or LOINC) makes the ValueSet uncheckable: its codes are then not judged,
//! since no answer would be better than a wrong one. A ValueSet with a stored `expansion` uses
//! that when its `compose` cannot be expanded. ValueSets of the R4 specification come from the
//! compiled-in definitions.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// How deep ValueSet imports are followed.
const MAX_IMPORT_DEPTH: usize = 8;

/// The codes of one ValueSet.
#[derive(Debug, Default)]
pub struct Expansion {
    /// `(system, code)` pairs.
    codes: HashSet<(String, String)>,
}

impl Expansion {
    pub fn contains(&self, system: &str, code: &str) -> bool {
        self.codes.contains(&(system.to_string(), code.to_string()))
    }

    pub fn contains_code(&self, code: &str) -> bool {
        self.codes.iter().any(|(_, c)| c == code)
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// Membership answers: `Some(true/false)`, or `None` when the ValueSet cannot be checked here.
pub trait Terminology {
    fn contains(&self, value_set: &str, system: Option<&str>, code: &str) -> Option<bool>;
}

/// Expands every ValueSet of the packages once. `value_sets` and `code_systems` are keyed by
/// canonical URL.
pub fn expand_all(value_sets: &HashMap<String, Value>, code_systems: &HashMap<String, Value>) -> HashMap<String, Expansion> {
    let mut expanded = HashMap::new();
    for url in value_sets.keys() {
        if let Some(expansion) = expand(url, value_sets, code_systems, 0) {
            expanded.insert(url.clone(), expansion);
        }
    }
    expanded
}

fn expand(url: &str, value_sets: &HashMap<String, Value>, code_systems: &HashMap<String, Value>, depth: usize) -> Option<Expansion> {
    if depth > MAX_IMPORT_DEPTH {
        return None;
    }
    let value_set = value_sets.get(canonical(url))?;
    match value_set.get("compose") {
        Some(compose) => expand_compose(compose, value_sets, code_systems, depth).or_else(|| stored_expansion(value_set)),
        None => stored_expansion(value_set),
    }
}

fn expand_compose(compose: &Value, value_sets: &HashMap<String, Value>, code_systems: &HashMap<String, Value>, depth: usize) -> Option<Expansion> {
    let mut codes = HashSet::new();
    for include in compose.get("include").and_then(Value::as_array)? {
        codes.extend(expand_include(include, value_sets, code_systems, depth)?);
    }
    for exclude in compose.get("exclude").and_then(Value::as_array).into_iter().flatten() {
        // Only concept lists can be taken out without a terminology server.
        let system = exclude.get("system").and_then(Value::as_str)?;
        let concepts = exclude.get("concept").and_then(Value::as_array)?;
        for concept in concepts {
            if let Some(code) = concept.get("code").and_then(Value::as_str) {
                codes.remove(&(system.to_string(), code.to_string()));
            }
        }
    }
    Some(Expansion { codes })
}

/// One include's codes; `None` when they cannot be known here.
fn expand_include(include: &Value, value_sets: &HashMap<String, Value>, code_systems: &HashMap<String, Value>, depth: usize) -> Option<HashSet<(String, String)>> {
    if include.get("filter").is_some() {
        return None;
    }
    let system = include.get("system").and_then(Value::as_str);
    let mut from_system: Option<HashSet<(String, String)>> = match (system, include.get("concept").and_then(Value::as_array)) {
        (Some(system), Some(concepts)) => Some(concepts.iter().filter_map(|c| c.get("code").and_then(Value::as_str)).map(|code| (system.to_string(), code.to_string())).collect()),
        (Some(system), None) => Some(whole_system(system, code_systems)?),
        (None, _) => None,
    };
    // Imported ValueSets intersect with each other and with the system part.
    for import in include.get("valueSet").and_then(Value::as_array).into_iter().flatten() {
        let url = import.as_str()?;
        let imported = match expand(url, value_sets, code_systems, depth + 1) {
            Some(expansion) => expansion.codes,
            None => core_codes(url)?,
        };
        from_system = Some(match from_system {
            Some(codes) => codes.intersection(&imported).cloned().collect(),
            None => imported,
        });
    }
    from_system
}

/// Every code of a loaded, complete CodeSystem (its concepts, nested ones included).
fn whole_system(system: &str, code_systems: &HashMap<String, Value>) -> Option<HashSet<(String, String)>> {
    let code_system = code_systems.get(canonical(system))?;
    if code_system.get("content").and_then(Value::as_str) != Some("complete") {
        return None;
    }
    let mut codes = HashSet::new();
    let mut pending: Vec<&Value> = code_system.get("concept").and_then(Value::as_array).into_iter().flatten().collect();
    while let Some(concept) = pending.pop() {
        if let Some(code) = concept.get("code").and_then(Value::as_str) {
            codes.insert((system.to_string(), code.to_string()));
        }
        pending.extend(concept.get("concept").and_then(Value::as_array).into_iter().flatten());
    }
    Some(codes)
}

fn stored_expansion(value_set: &Value) -> Option<Expansion> {
    let mut codes = HashSet::new();
    let mut pending: Vec<&Value> = value_set.pointer("/expansion/contains")?.as_array()?.iter().collect();
    while let Some(entry) = pending.pop() {
        if let (Some(system), Some(code)) = (entry.get("system").and_then(Value::as_str), entry.get("code").and_then(Value::as_str)) {
            codes.insert((system.to_string(), code.to_string()));
        }
        pending.extend(entry.get("contains").and_then(Value::as_array).into_iter().flatten());
    }
    Some(Expansion { codes })
}

/// The codes of an R4 ValueSet that the compiled-in definitions can expand.
fn core_codes(url: &str) -> Option<HashSet<(String, String)>> {
    let value_set = fhir_core::definitions::r4().value_set(url)?;
    value_set.is_checkable().then(|| value_set.codes().map(|(system, code)| (system.to_string(), code.to_string())).collect())
}

/// A canonical URL without its `|version`.
pub fn canonical(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}

/// Membership in an R4 ValueSet of the compiled-in definitions.
pub fn core_contains(value_set: &str, system: Option<&str>, code: &str) -> Option<bool> {
    let value_set = fhir_core::definitions::r4().value_set(canonical(value_set))?;
    if !value_set.is_checkable() {
        return None;
    }
    Some(match system {
        Some(system) => value_set.contains(system, code),
        None => value_set.contains_code(code),
    })
}
