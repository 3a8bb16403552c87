//! One pass over the JSON, object by object, against the precomputed element tables.
//!
//! The walker keeps the FHIRPath of where it is in one growing `String` (pushed on the way
//! down, truncated on the way back), so that a valid resource costs no allocation per element.
//! Paths name choice elements the FHIRPath way (`Observation.value.ofType(Quantity)`), array
//! items by index (`Patient.name[0].given[1]`), and resources inside others by their position
//! (`Bundle.entry[2].resource.birthDate`, `Patient.contained[0].name[0]`). A primitive's `_x`
//! sibling has the primitive's own path (`Patient.birthDate.extension[0]`).

use serde_json::{Map, Value};

use crate::definitions::{Definitions, ElementDef, ElementType, Primitive, Structure, TypeTarget};
use crate::outcome::{Issue, IssueType};

use super::primitives::{self, PrimitiveProblem};

/// Past this many issues the walk stops: the client has enough to fix, and a hostile body
/// cannot make the report (or the time spent) grow without bound.
pub(crate) const MAX_ISSUES: usize = 500;
/// Deeper than this, an object is reported rather than walked.
const MAX_DEPTH: u32 = 100;
/// Unknown property names are cut to this many characters in paths.
const MAX_KEY_CHARS: usize = 64;

pub(crate) struct Walker<'d> {
    defs: &'d Definitions,
    path: String,
    depth: u32,
    pub(crate) issues: Vec<Issue>,
}

impl<'d> Walker<'d> {
    pub(crate) fn new(defs: &'d Definitions, path: &str) -> Self {
        Walker { defs, path: path.to_string(), depth: 0, issues: Vec::new() }
    }

    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    fn report(&mut self, code: IssueType, diagnostics: String) {
        if self.full() {
            return;
        }
        let mut issue = Issue::error(code, diagnostics);
        if !self.path.is_empty() {
            issue = issue.at(self.path.clone());
        }
        self.issues.push(issue);
        if self.full() {
            self.issues
                .push(Issue::warning(IssueType::TooCostly, format!("validation stopped after {MAX_ISSUES} issues")));
        }
    }

    /// Reports an issue about a child of the current path, e.g. a missing element.
    fn report_child(&mut self, child: &str, code: IssueType, diagnostics: String) {
        let mark = self.path.len();
        self.push_name(child);
        self.report(code, diagnostics);
        self.path.truncate(mark);
    }

    fn push_name(&mut self, name: &str) {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
    }

    fn push_element(&mut self, element: &ElementDef, ty: &ElementType) {
        self.push_name(element.base_name());
        if element.is_choice() {
            self.path.push_str(".ofType(");
            self.path.push_str(&ty.code);
            self.path.push(')');
        }
    }

    /// `[index]`, without the formatting machinery: this runs for every array item.
    fn push_index(&mut self, index: usize) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = index;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.path.push('[');
        for digit in &digits[start..] {
            self.path.push(char::from(*digit));
        }
        self.path.push(']');
    }

    /// Validates a resource: an object whose `resourceType` names a concrete resource type.
    pub(crate) fn resource(&mut self, value: &Value, expected: Option<&str>) {
        match value.as_object() {
            Some(map) => self.resource_object(map, expected),
            None => self.report(IssueType::Structure, "a resource must be a JSON object".into()),
        }
    }

    /// [`Self::resource`] for one already known to be an object.
    pub(crate) fn resource_object(&mut self, map: &Map<String, Value>, expected: Option<&str>) {
        let resource_type = match map.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            Some(_) => {
                self.report(IssueType::Structure, "resourceType must be a JSON string".into());
                return;
            }
            None => {
                self.report(IssueType::Required, "resourceType is missing".into());
                return;
            }
        };
        if !self.defs.is_resource_type(resource_type) {
            self.report(IssueType::Invalid, "resourceType is not an R4 resource type".into());
            return;
        }
        if let Some(expected) = expected {
            let acceptable = match expected {
                "Resource" => true,
                "DomainResource" => self.defs.is_domain_resource(resource_type),
                _ => expected == resource_type,
            };
            if !acceptable {
                self.report(IssueType::Invalid, format!("expected a {expected} resource"));
            }
        }
        let Some(structure) = self.defs.structure_of_type(resource_type) else {
            return;
        };
        let at_root = self.path.is_empty();
        if at_root {
            self.path.push_str(resource_type);
        }
        self.object(map, structure, true);
        if at_root {
            self.path.clear();
        }
    }

    /// Validates one JSON object against a structure: every property, then the required ones.
    pub(crate) fn object(&mut self, map: &Map<String, Value>, structure: &Structure, is_resource: bool) {
        if self.full() {
            return;
        }
        if map.is_empty() {
            self.report(IssueType::Structure, "empty object: FHIR JSON objects must have content".into());
            return;
        }
        if self.depth >= MAX_DEPTH {
            self.report(IssueType::TooCostly, format!("nested more than {MAX_DEPTH} levels deep"));
            return;
        }
        self.depth += 1;
        let mut choices_seen: Vec<u32> = Vec::new();
        for (key, value) in map {
            if is_resource && key == "resourceType" {
                continue;
            }
            if let Some(base) = key.strip_prefix('_') {
                self.primitive_extension(map, structure, base, value, &mut choices_seen);
                continue;
            }
            let Some(child) = structure.child_ref(key) else {
                self.unknown(structure, key);
                continue;
            };
            let element = &structure.elements[child.element as usize];
            let ty = &element.types[child.type_index as usize];
            if element.is_choice() && !self.first_choice(&mut choices_seen, child.element, element) {
                continue;
            }
            self.element(map, key, value, element, ty);
        }
        self.required(map, structure);
        self.depth -= 1;
    }

    /// Records a choice element as present; false (and an issue) if another type of it was.
    fn first_choice(&mut self, seen: &mut Vec<u32>, index: u32, element: &ElementDef) -> bool {
        if seen.contains(&index) {
            self.report_child(
                element.base_name(),
                IssueType::Structure,
                format!("{} may have only one type, but several are present", element.name),
            );
            return false;
        }
        seen.push(index);
        true
    }

    fn unknown(&mut self, structure: &Structure, key: &str) {
        let shown = shorten(key);
        let choice = structure.elements.iter().find(|e| {
            e.is_choice()
                && key
                    .strip_prefix(e.base_name())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
        });
        let diagnostics = match choice {
            Some(element) if key == element.base_name() => {
                format!(
                    "unknown element '{shown}': {} needs a type in its name, e.g. {}",
                    element.name,
                    element.json_name(0)
                )
            }
            Some(element) => format!("unknown element '{shown}': not one of the types {} allows", element.name),
            None => format!("unknown element '{shown}'"),
        };
        self.report_child(shown, IssueType::Structure, diagnostics);
    }

    fn element(&mut self, map: &Map<String, Value>, key: &str, value: &Value, element: &ElementDef, ty: &ElementType) {
        let mark = self.path.len();
        self.push_element(element, ty);
        if element.max == crate::definitions::Max::Bounded(0) {
            self.report(IssueType::Structure, format!("{} is not allowed here (max cardinality 0)", element.name));
        } else if element.max.is_repeating() {
            match value {
                Value::Array(items) => self.array(map, key, items, element, ty),
                _ => self.report(
                    IssueType::Structure,
                    format!("{} must be a JSON array (max cardinality {})", element.name, element.max),
                ),
            }
        } else if value.is_array() {
            self.report(
                IssueType::Structure,
                format!("{} must be a single value, not an array (max cardinality 1)", element.name),
            );
        } else {
            self.single(value, element, ty);
        }
        self.path.truncate(mark);
    }

    fn array(&mut self, map: &Map<String, Value>, key: &str, items: &[Value], element: &ElementDef, ty: &ElementType) {
        if items.is_empty() {
            self.report(IssueType::Structure, "empty array: FHIR JSON arrays must have items".into());
            return;
        }
        if !element.max.allows(items.len()) {
            self.report(
                IssueType::Structure,
                format!("too many items: {} allows at most {}", element.name, element.max),
            );
        }
        let is_primitive = matches!(ty.target, TypeTarget::Primitive(_));
        for (index, item) in items.iter().enumerate() {
            if self.full() {
                return;
            }
            let mark = self.path.len();
            self.push_index(index);
            if item.is_null() && is_primitive {
                if !shadow_item_present(map, key, index) {
                    self.report(
                        IssueType::Structure,
                        format!("null in a primitive array needs id or extension at the same index of _{key}"),
                    );
                }
            } else {
                self.single(item, element, ty);
            }
            self.path.truncate(mark);
        }
    }

    fn single(&mut self, value: &Value, element: &ElementDef, ty: &ElementType) {
        if value.is_null() {
            self.report(IssueType::Structure, "null is not allowed here".into());
            return;
        }
        match ty.target {
            TypeTarget::Primitive(primitive) => match primitives::check(value, primitive) {
                Ok(()) => {
                    if primitive == Primitive::Code {
                        self.code_binding(value, element);
                    }
                }
                Err(problem) => {
                    let code = match problem {
                        PrimitiveProblem::WrongJsonType(_) => IssueType::Structure,
                        _ => IssueType::Value,
                    };
                    self.report(code, problem.describe(primitive));
                }
            },
            TypeTarget::Complex(id) => match value.as_object() {
                Some(map) => {
                    self.object(map, self.defs.structure(id), false);
                    if ty.code == "CodeableConcept" {
                        self.codeable_concept_binding(map, element);
                    }
                }
                None => self.report(IssueType::Structure, format!("a {} must be a JSON object", ty.code)),
            },
            TypeTarget::Resource => self.resource(value, None),
        }
    }

    /// `_name`: the id and extensions of a primitive element (or of each item of a primitive
    /// array, aligned by index with the values).
    fn primitive_extension(
        &mut self,
        map: &Map<String, Value>,
        structure: &Structure,
        base: &str,
        value: &Value,
        choices_seen: &mut Vec<u32>,
    ) {
        let child = structure.child_ref(base);
        let Some(child) = child.filter(|c| {
            let element = &structure.elements[c.element as usize];
            matches!(element.types[c.type_index as usize].target, TypeTarget::Primitive(_))
        }) else {
            let shown = shorten(base);
            let diagnostics = if child.is_some() {
                format!("unknown element '_{shown}': '_' properties are only allowed beside primitive elements")
            } else {
                format!("unknown element '_{shown}'")
            };
            self.report_child(&format!("_{shown}"), IssueType::Structure, diagnostics);
            return;
        };
        let element = &structure.elements[child.element as usize];
        let ty = &element.types[child.type_index as usize];
        let values = map.get(base);
        if element.is_choice() && values.is_none() && !self.first_choice(choices_seen, child.element, element) {
            return;
        }
        let mark = self.path.len();
        self.push_element(element, ty);
        let extension_structure = self.defs.primitive_extension_structure();
        if element.max == crate::definitions::Max::Bounded(0) {
            if values.is_none() {
                self.report(IssueType::Structure, format!("{} is not allowed here (max cardinality 0)", element.name));
            }
        } else if element.max.is_repeating() {
            match value {
                Value::Array(items) if items.is_empty() => {
                    self.report(IssueType::Structure, "empty array: FHIR JSON arrays must have items".into())
                }
                Value::Array(items) => {
                    let value_items = values.and_then(Value::as_array);
                    match value_items {
                        Some(value_items) if value_items.len() != items.len() => {
                            self.report(IssueType::Structure, format!("_{base} must have as many items as {base}"))
                        }
                        None if !element.max.allows(items.len()) => self.report(
                            IssueType::Structure,
                            format!("too many items: {} allows at most {}", element.name, element.max),
                        ),
                        _ => {}
                    }
                    for (index, item) in items.iter().enumerate() {
                        if self.full() {
                            break;
                        }
                        let item_mark = self.path.len();
                        self.push_index(index);
                        match item {
                            Value::Null => {
                                // A null on both sides is reported once, with the values.
                                if value_items.and_then(|v| v.get(index)).is_none() {
                                    self.report(
                                        IssueType::Structure,
                                        format!("null in _{base} needs a value at the same index of {base}"),
                                    );
                                }
                            }
                            Value::Object(object) => self.object(object, extension_structure, false),
                            _ => self
                                .report(IssueType::Structure, format!("items of _{base} must be JSON objects or null")),
                        }
                        self.path.truncate(item_mark);
                    }
                }
                _ => self.report(IssueType::Structure, format!("_{base} must be a JSON array, like {base}")),
            }
        } else {
            match value {
                Value::Object(object) => self.object(object, extension_structure, false),
                _ => self.report(IssueType::Structure, format!("_{base} must be a JSON object with id or extension")),
            }
        }
        self.path.truncate(mark);
    }

    fn required(&mut self, map: &Map<String, Value>, structure: &Structure) {
        for element in structure.required_elements() {
            let count = if element.is_choice() {
                let present = map.keys().any(|key| {
                    let name = key.strip_prefix('_').unwrap_or(key);
                    structure.child(name).is_some_and(|(e, _)| std::ptr::eq(e, element))
                });
                usize::from(present)
            } else {
                let count = count_values(map.get(&element.name));
                if count >= element.min as usize {
                    count
                } else {
                    // Present with only id or extensions: still present (e.g. data-absent-reason).
                    count.max(count_values(map.get(&format!("_{}", element.name))))
                }
            };
            if count == 0 {
                self.report_child(
                    element.base_name(),
                    IssueType::Required,
                    format!("missing required element {} (min cardinality {})", element.name, element.min),
                );
            } else if count < element.min as usize {
                self.report_child(
                    element.base_name(),
                    IssueType::Required,
                    format!("too few items: {} needs at least {}", element.name, element.min),
                );
            }
        }
    }

    fn code_binding(&mut self, value: &Value, element: &ElementDef) {
        let (Some(binding), Some(code)) = (&element.binding, value.as_str()) else {
            return;
        };
        let Some(value_set) = self.defs.binding_value_set(binding) else {
            return;
        };
        if value_set.is_checkable() && !value_set.contains_code(code) {
            self.report(IssueType::CodeInvalid, format!("code is not in the required value set {}", binding.value_set));
        }
    }

    fn codeable_concept_binding(&mut self, map: &Map<String, Value>, element: &ElementDef) {
        let Some(binding) = &element.binding else {
            return;
        };
        let Some(value_set) = self.defs.binding_value_set(binding).filter(|vs| vs.is_checkable()) else {
            return;
        };
        let codings = map.get("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let found = codings.iter().any(|coding| {
            match (coding.get("system").and_then(Value::as_str), coding.get("code").and_then(Value::as_str)) {
                (Some(system), Some(code)) => value_set.contains(system, code),
                _ => false,
            }
        });
        if !found {
            self.report(
                IssueType::CodeInvalid,
                format!("no coding is from the required value set {}", binding.value_set),
            );
        }
    }
}

/// How many values a property holds (an array counts its non-null items).
fn count_values(value: Option<&Value>) -> usize {
    match value {
        None | Some(Value::Null) => 0,
        Some(Value::Array(items)) => items.iter().filter(|v| !v.is_null()).count(),
        Some(_) => 1,
    }
}

/// Whether `_key[index]` holds an object (so that `key[index]` may be null).
fn shadow_item_present(map: &Map<String, Value>, key: &str, index: usize) -> bool {
    map.get(&format!("_{key}"))
        .and_then(Value::as_array)
        .and_then(|items| items.get(index))
        .is_some_and(Value::is_object)
}

fn shorten(key: &str) -> &str {
    match key.char_indices().nth(MAX_KEY_CHARS) {
        Some((cut, _)) => &key[..cut],
        None => key,
    }
}
