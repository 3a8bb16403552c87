//! Validation of FHIR JSON against the R4 StructureDefinitions.
//!
//! What is checked, in one walk over the JSON:
//! - `resourceType` names a concrete R4 resource type; resources inside others (`contained`,
//!   `Bundle.entry.resource`, `Parameters.parameter.resource`) are validated the same way;
//! - every property is an element of its object's type (choice elements with one of their
//!   allowed type suffixes, `_name` only beside primitives, holding `id` and `extension`);
//! - JSON shapes: arrays exactly where the element repeats, objects for complex types, the right
//!   JSON type for primitives, and no null, empty object, empty array or empty string (nulls are
//!   allowed only in primitive arrays, aligned with an object in the `_name` array);
//! - primitive formats with the spec's regexes, 32-bit integer ranges, real calendar days;
//! - cardinality: required elements present, no more items than allowed, one type per choice;
//! - codes of required bindings, where the value set could be expanded from the package.
//!
//! Not checked: FHIRPath invariants (constraints), profiles, references, bindings weaker than
//! required. Diagnostics never quote a value (they may hold patient data): they say what was
//! expected.
//!
//! Every issue's expression is the FHIRPath of the element at fault: choice elements the FHIRPath
//! way (`Observation.value.ofType(Quantity)`), array items by index (`Patient.name[0].given[1]`),
//! resources inside others by position (`Bundle.entry[2].resource.birthDate`,
//! `Patient.contained[0].name[0]`), a primitive's `_name` sibling at the primitive's own path
//! (`Patient.birthDate.extension[0]`), a missing element at the path it should have
//! (`Patient.link[0].other`). Issues about the resource as a whole (no or unknown
//! `resourceType`) have no expression at the top level.
//!
//! Layout: `walk` does the walk, `primitives` the checks of primitive values.

mod primitives;
mod walk;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::definitions::{r4, TypeKind};
use crate::outcome::{Issue, IssueType};

/// Validates a resource of any type. Returns every issue found (errors only, plus a warning if
/// the walk stopped early); an empty list means the resource is valid.
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut walker = walk::Walker::new(r4(), "");
    walker.resource(resource, None);
    walker.issues
}

/// [`validate_resource`] for a resource held as a JSON object.
pub fn validate_object(resource: &Map<String, Value>) -> Vec<Issue> {
    let mut walker = walk::Walker::new(r4(), "");
    walker.resource_object(resource, None);
    walker.issues
}

/// Validates a resource that must be of `expected_type` (e.g. the type in a request's URL).
/// `Resource` accepts any type, `DomainResource` any but Bundle, Binary and Parameters.
pub fn validate_as(resource: &Value, expected_type: &str) -> Vec<Issue> {
    let mut walker = walk::Walker::new(r4(), "");
    walker.resource(resource, Some(expected_type));
    walker.issues
}

/// Validates a value of a complex datatype (`HumanName`, `Quantity`, ...), with paths starting
/// at the type name.
pub fn validate_datatype(value: &Value, type_name: &str) -> Vec<Issue> {
    let definitions = r4();
    let structure = match definitions.type_def(type_name) {
        Some(t) if t.kind == TypeKind::ComplexType => definitions.structure_of_type(type_name),
        _ => None,
    };
    let Some(structure) = structure else {
        return vec![Issue::error(IssueType::NotSupported, format!("{type_name} is not an R4 complex datatype"))];
    };
    let mut walker = walk::Walker::new(definitions, type_name);
    match value.as_object() {
        Some(map) => walker.object(map, structure, false),
        None => walker
            .issues
            .push(Issue::error(IssueType::Structure, format!("a {type_name} must be a JSON object")).at(type_name)),
    }
    walker.issues
}

/// Whether any issue is an error (as opposed to a warning).
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(Issue::is_error)
}
