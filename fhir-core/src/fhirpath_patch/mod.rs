//! FHIRPath Patch (R4 `fhirpatch.html`): a `Parameters` resource of `operation`s applied to a
//! resource, as one pure function, [`apply`].
//!
//! Each operation has a `type` (add | insert | delete | replace | move), a FHIRPath `path`, and
//! per type a `name`, a `value` (a `value[x]`, a `resource`, or nested parts for complex and
//! anonymous types), an `index`, or a `source` and `destination`. Operations run in order on a
//! copy of the resource; the first failure fails the whole patch and the copy is dropped.
//!
//! ```
//! let patient = serde_json::json!({"resourceType": "Patient", "id": "p1", "gender": "male"});
//! let patch = serde_json::json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
//!     {"name": "type", "valueCode": "replace"},
//!     {"name": "path", "valueString": "Patient.gender"},
//!     {"name": "value", "valueCode": "female"}]}]});
//! let patched = fhir_core::fhirpath_patch::apply(&patient, &patch).unwrap();
//! assert_eq!(patched["gender"], "female");
//! ```
//!
//! Rules the specification leaves open, decided here:
//! - `path` selects exactly one element (delete: at most one; none is a no-op). For insert and
//!   move it names the list (`Patient.name[0].given`): it must end in the list's element name,
//!   and what precedes it must select exactly one element.
//! - The value must fit the element: the type a `value[x]` names must be one of the element's
//!   types (a choice element gets the JSON name of that type: `value` + `valueQuantity` is
//!   `valueQuantity`); a single-typed primitive element also takes another primitive of the same
//!   JSON form (`valueString` for a `code`), the format being left to the validator the caller
//!   runs on the result.
//! - add writes an absent single element or appends to a list; a present single element is an
//!   error (replace is for that).
//! - replace replaces the whole element, so a primitive's id and extensions (`_birthDate`) go
//!   unless the value brings its own (`_valueDate`).
//! - delete removes the objects it leaves empty (`name: [{}]` is not FHIR JSON).
//! - A primitive's `_name` object moves, is inserted and deleted with its value in lists.
//! - Parts that do not belong to the operation's type are an error, not ignored.
//!
//! Errors name the operation (its index in `Parameters.parameter`) and the reason, never a
//! value of the patch or the resource; [`Issue`] is made from them for the OperationOutcome.
//!
//! Layout:
//! - `parse`: the `Parameters` into typed operations, FHIRPath compiled.
//! - `operation`: each operation on the resource.
//! - `location`: from the evaluator's borrowed nodes to owned paths in the JSON, and the edits.
//! - `value`: a part's value into FHIR JSON for the element it is written to.

mod location;
mod operation;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use crate::fhirpath::FhirPathError;
use crate::outcome::{Issue, IssueType};

/// Longest name from the patch repeated in an error message.
const MAX_NAME_IN_ERROR: usize = 64;

/// Applies a FHIRPath Patch to a resource and returns the patched resource; the input is left
/// as it is. The result still has to be validated by the caller.
pub fn apply(resource: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = parse::parse(patch)?;
    let mut patched = resource.clone();
    for operation in &operations {
        operation::execute(&operation.action, &mut patched).map_err(|reason| PatchError::Operation {
            index: operation.index,
            operation: Some(operation.kind),
            reason,
        })?;
    }
    Ok(patched)
}

/// The `type` of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationType {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl OperationType {
    pub const ALL: [OperationType; 5] =
        [OperationType::Add, OperationType::Insert, OperationType::Delete, OperationType::Replace, OperationType::Move];

    /// The code of `http://hl7.org/fhir/patch-operation`.
    pub fn code(self) -> &'static str {
        match self {
            OperationType::Add => "add",
            OperationType::Insert => "insert",
            OperationType::Delete => "delete",
            OperationType::Replace => "replace",
            OperationType::Move => "move",
        }
    }

    pub fn from_code(code: &str) -> Option<OperationType> {
        OperationType::ALL.into_iter().find(|t| t.code() == code)
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a patch cannot be applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("a FHIRPath Patch must be a Parameters resource")]
    NotParameters,
    /// A parameter not named `operation`, or without parts.
    #[error("patch parameter {index} is not an operation (a parameter named 'operation' with parts)")]
    NotAnOperation { index: usize },
    /// Operation `index` (of `Parameters.parameter`) is malformed or cannot be applied.
    #[error("patch operation {index}{}: {reason}", type_label(.operation))]
    Operation { index: usize, operation: Option<OperationType>, reason: OperationError },
}

fn type_label(operation: &Option<OperationType>) -> String {
    operation.map(|t| format!(" ({t})")).unwrap_or_default()
}

impl PatchError {
    /// The index in `Parameters.parameter` the error is about.
    pub fn parameter_index(&self) -> Option<usize> {
        match self {
            PatchError::NotParameters => None,
            PatchError::NotAnOperation { index } | PatchError::Operation { index, .. } => Some(*index),
        }
    }

    pub fn issue_type(&self) -> IssueType {
        match self {
            PatchError::NotParameters | PatchError::NotAnOperation { .. } => IssueType::Invalid,
            PatchError::Operation { reason, .. } => reason.issue_type(),
        }
    }
}

impl From<&PatchError> for Issue {
    fn from(error: &PatchError) -> Self {
        let issue = Issue::error(error.issue_type(), error.to_string());
        match error.parameter_index() {
            Some(index) => issue.at(format!("Parameters.parameter[{index}]")),
            None => issue,
        }
    }
}

impl From<PatchError> for Issue {
    fn from(error: PatchError) -> Self {
        Issue::from(&error)
    }
}

/// What is wrong with one operation. Element paths are those of the definitions
/// (`Patient.contact.name`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OperationError {
    #[error("the '{part}' part is missing")]
    MissingPart { part: &'static str },
    #[error("the '{part}' part is given more than once")]
    DuplicatePart { part: &'static str },
    /// `position` is the index in the operation's `part` list.
    #[error("part {position} is not one of type, path, name, value, index, source, destination")]
    UnknownPart { position: usize },
    #[error("the '{part}' part does not apply to {operation}")]
    UnexpectedPart { part: &'static str, operation: OperationType },
    #[error("the '{part}' part {reason}")]
    MalformedPart { part: &'static str, reason: &'static str },
    #[error("the type is not one of add, insert, delete, replace, move")]
    UnknownType,
    #[error("the path is not valid FHIRPath: {0}")]
    InvalidPath(FhirPathError),
    #[error("the path cannot be evaluated: {0}")]
    PathFailed(FhirPathError),
    #[error("insert and move need the path of a list, ending in the list's element name (e.g. Patient.identifier)")]
    NotAListPath,
    #[error("the path selects no element")]
    NoMatch,
    #[error("the path selects {count} elements, where exactly one is required")]
    MultipleMatches { count: usize },
    #[error("the path selects a computed value or content outside this resource, not one of its elements")]
    NotAnElement,
    #[error("the path selects the resource itself, which cannot be replaced or deleted")]
    RootSelected,
    #[error("the path leads to content the R4 definitions do not describe")]
    Undescribed,
    #[error("{structure} has no element '{name}'")]
    UnknownElement { structure: String, name: String },
    #[error("{element} is not a list")]
    NotAList { element: String },
    #[error("{element} already has a value; add only adds absent single elements and list items (use replace)")]
    AlreadyPresent { element: String },
    #[error("the '{part}' {index} is out of range for a list of {length}")]
    IndexOutOfRange { part: &'static str, index: usize, length: usize },
    #[error("{element} cannot take a value of type {given} (it takes {expected})")]
    WrongType { element: String, given: String, expected: String },
    #[error("the value for {element} {reason}")]
    MalformedValue { element: String, reason: &'static str },
    #[error("{element} is given more than once in the value, but is a single element")]
    RepeatedSingle { element: String },
}

impl OperationError {
    pub fn issue_type(&self) -> IssueType {
        match self {
            OperationError::MissingPart { .. } => IssueType::Required,
            OperationError::UnknownType => IssueType::CodeInvalid,
            OperationError::DuplicatePart { .. }
            | OperationError::UnknownPart { .. }
            | OperationError::UnexpectedPart { .. }
            | OperationError::MalformedPart { .. }
            | OperationError::InvalidPath(_)
            | OperationError::NotAListPath
            | OperationError::MalformedValue { .. }
            | OperationError::RepeatedSingle { .. } => IssueType::Invalid,
            OperationError::UnknownElement { .. } | OperationError::WrongType { .. } => IssueType::Structure,
            OperationError::Undescribed => IssueType::NotSupported,
            OperationError::PathFailed(_)
            | OperationError::NoMatch
            | OperationError::MultipleMatches { .. }
            | OperationError::NotAnElement
            | OperationError::RootSelected
            | OperationError::NotAList { .. }
            | OperationError::AlreadyPresent { .. }
            | OperationError::IndexOutOfRange { .. } => IssueType::Processing,
        }
    }
}

/// A name from the patch, shortened for an error message.
fn clip(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_IN_ERROR) {
        Some((end, _)) => format!("{}...", &name[..end]),
        None => name.to_string(),
    }
}
