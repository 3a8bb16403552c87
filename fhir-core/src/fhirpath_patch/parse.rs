//! From the `Parameters` resource to typed operations, each checked for the parts its type
//! needs and with its FHIRPath compiled, so that a malformed operation anywhere fails the patch
//! before any is applied.

use serde_json::{Map, Value};

use super::value::{read_value, PatchValue};
use super::{OperationError, OperationType, PatchError};
use crate::fhirpath::{compile, Expression};

/// The part names of an operation, in the order of the specification's table.
const PART_NAMES: [&str; 7] = ["type", "path", "name", "value", "index", "source", "destination"];
const TYPE: usize = 0;
const PATH: usize = 1;
const NAME: usize = 2;
const VALUE: usize = 3;
const INDEX: usize = 4;
const SOURCE: usize = 5;
const DESTINATION: usize = 6;

/// One operation of the patch: its index in `Parameters.parameter`, its type and what it does.
pub(super) struct Operation<'p> {
    pub index: usize,
    pub kind: OperationType,
    pub action: Action<'p>,
}

pub(super) enum Action<'p> {
    Add { path: Expression, name: &'p str, value: PatchValue<'p> },
    Insert { list: ListPath, index: usize, value: PatchValue<'p> },
    Delete { path: Expression },
    Replace { path: Expression, value: PatchValue<'p> },
    Move { list: ListPath, source: usize, destination: usize },
}

/// The path of a list, split: `holder` selects the element holding the list (`None`: the
/// resource), `name` is the list's element name.
pub(super) struct ListPath {
    pub holder: Option<Expression>,
    pub name: String,
}

pub(super) fn parse(patch: &Value) -> Result<Vec<Operation<'_>>, PatchError> {
    if patch.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(PatchError::NotParameters);
    }
    let parameters = match patch.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(parameters)) => parameters,
        Some(_) => return Err(PatchError::NotParameters),
    };
    parameters.iter().enumerate().map(|(index, parameter)| parse_operation(index, parameter)).collect()
}

fn parse_operation(index: usize, parameter: &Value) -> Result<Operation<'_>, PatchError> {
    let not_an_operation = PatchError::NotAnOperation { index };
    if parameter.get("name").and_then(Value::as_str) != Some("operation") {
        return Err(not_an_operation);
    }
    let Some(Value::Array(parts)) = parameter.get("part") else {
        return Err(not_an_operation);
    };
    let fail = |operation, reason| PatchError::Operation { index, operation, reason };

    let mut found: [Option<&Map<String, Value>>; PART_NAMES.len()] = [None; PART_NAMES.len()];
    for (position, part) in parts.iter().enumerate() {
        let unknown = || fail(None, OperationError::UnknownPart { position });
        let part = part.as_object().ok_or_else(unknown)?;
        let name = part.get("name").and_then(Value::as_str).ok_or_else(unknown)?;
        let slot = PART_NAMES.iter().position(|known| *known == name).ok_or_else(unknown)?;
        if found[slot].replace(part).is_some() {
            return Err(fail(None, OperationError::DuplicatePart { part: PART_NAMES[slot] }));
        }
    }

    let type_part = found[TYPE].ok_or_else(|| fail(None, OperationError::MissingPart { part: "type" }))?;
    let kind = string_part(type_part, "type")
        .and_then(|code| OperationType::from_code(code).ok_or(OperationError::UnknownType))
        .map_err(|reason| fail(None, reason))?;
    let fail = |reason| PatchError::Operation { index, operation: Some(kind), reason };

    let allowed: &[usize] = match kind {
        OperationType::Add => &[PATH, NAME, VALUE],
        OperationType::Insert => &[PATH, VALUE, INDEX],
        OperationType::Delete => &[PATH],
        OperationType::Replace => &[PATH, VALUE],
        OperationType::Move => &[PATH, SOURCE, DESTINATION],
    };
    for slot in PATH..PART_NAMES.len() {
        let part = PART_NAMES[slot];
        match (found[slot].is_some(), allowed.contains(&slot)) {
            (true, false) => return Err(fail(OperationError::UnexpectedPart { part, operation: kind })),
            (false, true) => return Err(fail(OperationError::MissingPart { part })),
            _ => {}
        }
    }
    // Every part the type needs is present from here on.
    let part = |slot: usize| found[slot].ok_or(OperationError::MissingPart { part: PART_NAMES[slot] });

    let action = (|| {
        let path_text = string_part(part(PATH)?, "path")?;
        let path = compile(path_text).map_err(OperationError::InvalidPath)?;
        Ok(match kind {
            OperationType::Add => {
                Action::Add { path, name: string_part(part(NAME)?, "name")?, value: value_part(part(VALUE)?)? }
            }
            OperationType::Insert => Action::Insert {
                list: list_path(path_text)?,
                index: index_part(part(INDEX)?, "index")?,
                value: value_part(part(VALUE)?)?,
            },
            OperationType::Delete => Action::Delete { path },
            OperationType::Replace => Action::Replace { path, value: value_part(part(VALUE)?)? },
            OperationType::Move => Action::Move {
                list: list_path(path_text)?,
                source: index_part(part(SOURCE)?, "source")?,
                destination: index_part(part(DESTINATION)?, "destination")?,
            },
        })
    })()
    .map_err(fail)?;
    Ok(Operation { index, kind, action })
}

/// The text of a part given as any string `value[x]` (`valueCode`, `valueString`).
fn string_part<'p>(part: &'p Map<String, Value>, name: &'static str) -> Result<&'p str, OperationError> {
    match read_value(part) {
        Ok(Some(PatchValue::Typed { value: Value::String(text), primitive_element: None, .. })) => Ok(text),
        _ => Err(OperationError::MalformedPart { part: name, reason: "must have a string value (valueString)" }),
    }
}

/// A list position given as an integer `value[x]` (`valueInteger`).
fn index_part(part: &Map<String, Value>, name: &'static str) -> Result<usize, OperationError> {
    match read_value(part) {
        Ok(Some(PatchValue::Typed { value: Value::Number(number), primitive_element: None, .. })) => {
            number.as_u64().and_then(|n| usize::try_from(n).ok())
        }
        _ => None,
    }
    .ok_or(OperationError::MalformedPart {
        part: name,
        reason: "must have a non-negative integer value (valueInteger)",
    })
}

fn value_part(part: &Map<String, Value>) -> Result<PatchValue<'_>, OperationError> {
    let malformed = |reason| OperationError::MalformedPart { part: "value", reason };
    read_value(part).map_err(malformed)?.ok_or_else(|| malformed("has no value (value[x], resource or part)"))
}

fn list_path(path: &str) -> Result<ListPath, OperationError> {
    let (holder, name) = split_list_path(path).ok_or(OperationError::NotAListPath)?;
    let holder = holder.map(compile).transpose().map_err(OperationError::InvalidPath)?;
    Ok(ListPath { holder, name })
}

/// Splits `Patient.name[0].given` into the path of the element holding the list
/// (`Patient.name[0]`) and the list's name (`given`); `identifier` alone is a list of the
/// resource. `None` unless the path is a chain of steps (no top-level operator) ending in a
/// name, since only then is that split the meaning of the path.
pub(super) fn split_list_path(path: &str) -> Option<(Option<&str>, String)> {
    let path = path.trim();
    let mut depth = 0usize;
    let mut last_dot = None;
    let mut chars = path.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' | '`' => loop {
                match chars.next()? {
                    (_, '\\') => {
                        chars.next()?;
                    }
                    (_, closing) if closing == c => break,
                    _ => {}
                }
            },
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.checked_sub(1)?,
            _ if depth > 0 => {}
            '.' => last_dot = Some(at),
            c if c.is_alphanumeric() || matches!(c, '_' | '%' | '$') => {}
            _ => return None,
        }
    }
    if depth != 0 {
        return None;
    }
    let (holder, last) = match last_dot {
        Some(at) => (Some(&path[..at]), &path[at + 1..]),
        None => (None, path),
    };
    if holder.is_some_and(str::is_empty) {
        return None;
    }
    Some((holder, identifier(last)?))
}

/// The name of an identifier, plain (`given`) or delimited (`` `given` ``).
fn identifier(text: &str) -> Option<String> {
    if let Some(inner) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
        let plain = !inner.is_empty() && !inner.contains(['`', '\\']);
        return plain.then(|| inner.to_string());
    }
    let mut chars = text.chars();
    let first = chars.next()?;
    let valid = (first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| text.to_string())
}
