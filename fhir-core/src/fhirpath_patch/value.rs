//! The content an operation writes: a part's `value[x]`, its `resource`, or nested parts for
//! complex and anonymous types (`Patient.contact`), turned into FHIR JSON for one element.
//!
//! The element decides the JSON name (a choice element `value[x]` given a `valueQuantity`
//! becomes `valueQuantity`), whether nested parts repeat (`given` twice is a list) and which
//! types fit. A primitive element also takes a primitive of another type with the same JSON
//! form (`valueString` for a `code`): the caller validates the result, formats included.

use serde_json::{Map, Value};

use super::location::{put_list, put_single, take_list};
use super::{clip, OperationError};
use crate::definitions::{ElementDef, ElementType, JsonType, Primitive, Structure, TypeTarget};

/// The value of a primitive that has only `_valueX` (an id or extensions).
static NO_VALUE: Value = Value::Null;

/// A choice element with more types than this is described by their number in errors.
const MAX_TYPES_LISTED: usize = 8;

/// What a part holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum PatchValue<'p> {
    /// `valueQuantity`: the type name from the JSON name, the value (`null` when there is only
    /// `_valueX`) and the `_valueX` object of a primitive.
    Typed {
        type_name: &'p str,
        value: &'p Value,
        primitive_element: Option<&'p Value>,
    },
    Resource(&'p Value),
    Parts(&'p [Value]),
}

/// Reads the value of a `Parameters.parameter.part`; `None` when it has none. The error says
/// what is wrong with it.
pub(super) fn read_value(part: &Map<String, Value>) -> Result<Option<PatchValue<'_>>, &'static str> {
    let mut found = None;
    let mut twin = None;
    for (key, value) in part {
        let next = match key.as_str() {
            "name" | "id" | "extension" | "modifierExtension" => continue,
            "resource" => PatchValue::Resource(value),
            "part" => PatchValue::Parts(value.as_array().ok_or("has a 'part' that is not a list")?),
            _ => {
                if let Some(type_name) = choice_suffix(key, "_value") {
                    twin = Some((type_name, value));
                    continue;
                }
                let type_name = choice_suffix(key, "value").ok_or("has a property a Parameters part does not have")?;
                PatchValue::Typed { type_name, value, primitive_element: None }
            }
        };
        if found.replace(next).is_some() {
            return Err("has more than one value (value[x], resource or part)");
        }
    }
    match (found, twin) {
        (found, None) => Ok(found),
        (None, Some((type_name, element))) => {
            Ok(Some(PatchValue::Typed { type_name, value: &NO_VALUE, primitive_element: Some(element) }))
        }
        (Some(PatchValue::Typed { type_name, value, .. }), Some((twin_type, element))) if type_name == twin_type => {
            Ok(Some(PatchValue::Typed { type_name, value, primitive_element: Some(element) }))
        }
        (Some(_), Some(_)) => Err("has a _value[x] that does not match its value[x]"),
    }
}

/// `Quantity` for `valueQuantity` with prefix `value`.
fn choice_suffix<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix).filter(|suffix| suffix.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// A value ready to be written as one element: its JSON name, its JSON value (`null` for a
/// primitive with only an id or extensions) and a primitive's `_name` object.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Placed {
    pub json_name: String,
    pub value: Value,
    pub primitive_element: Option<Value>,
}

/// The element of `structure` a name stands for: a JSON name (`birthDate`, `valueQuantity`,
/// which fixes the type of a choice) or a FHIRPath name (`value`, also `value[x]`).
pub(super) fn child_element(
    structure: &'static Structure,
    name: &str,
) -> Option<(&'static ElementDef, Option<&'static ElementType>)> {
    let name = name.strip_suffix("[x]").unwrap_or(name);
    if let Some((element, element_type)) = structure.child(name) {
        return Some((element, element.is_choice().then_some(element_type)));
    }
    structure.element_named(name).map(|element| (element, None))
}

/// Whether `object` already holds a value (or `_name` object) of `element`, under any of its
/// JSON names.
pub(super) fn is_present(object: &Map<String, Value>, structure: &Structure, element: &ElementDef) -> bool {
    object.keys().any(|key| {
        let name = key.strip_prefix('_').unwrap_or(key);
        structure.child(name).is_some_and(|(found, _)| std::ptr::eq(found, element))
    })
}

/// Turns a part's value into the JSON of `element`; `fixed` is the type a JSON name chose.
pub(super) fn materialize(
    value: &PatchValue<'_>,
    element: &'static ElementDef,
    fixed: Option<&'static ElementType>,
) -> Result<Placed, OperationError> {
    let candidates: &'static [ElementType] = match fixed {
        Some(element_type) => std::slice::from_ref(element_type),
        None => &element.types,
    };
    let malformed = |reason| OperationError::MalformedValue { element: element.path.clone(), reason };
    match *value {
        PatchValue::Typed { type_name, value, primitive_element } => {
            let element_type = typed_match(candidates, element, type_name)?;
            match element_type.target {
                TypeTarget::Primitive(primitive) => {
                    if !value.is_null() && !has_json_form(value, primitive) {
                        return Err(malformed("is not JSON of its type"));
                    }
                    if primitive_element.is_some_and(|e| !e.is_object()) {
                        return Err(malformed("has a _value[x] that is not an object"));
                    }
                }
                TypeTarget::Complex(_) => {
                    if !value.is_object() || primitive_element.is_some() {
                        return Err(malformed("is not a JSON object"));
                    }
                }
                TypeTarget::Resource => return Err(wrong_type(element, candidates, type_name)),
            }
            Ok(Placed {
                json_name: json_name(element, element_type),
                value: value.clone(),
                primitive_element: primitive_element.cloned(),
            })
        }
        PatchValue::Resource(resource) => {
            let element_type = candidates
                .iter()
                .find(|t| t.target == TypeTarget::Resource)
                .ok_or_else(|| wrong_type(element, candidates, "Resource"))?;
            if resource.get("resourceType").and_then(Value::as_str).is_none() {
                return Err(malformed("is a resource without a resourceType"));
            }
            Ok(Placed { json_name: json_name(element, element_type), value: resource.clone(), primitive_element: None })
        }
        PatchValue::Parts(parts) => {
            let mut complex = candidates.iter().filter(|t| matches!(t.target, TypeTarget::Complex(_)));
            let (Some(element_type), None) = (complex.next(), complex.next()) else {
                return Err(if candidates.iter().any(|t| matches!(t.target, TypeTarget::Complex(_))) {
                    malformed("must name its type (e.g. valueQuantity) to be given as parts")
                } else {
                    wrong_type(element, candidates, "a complex value (parts)")
                });
            };
            let TypeTarget::Complex(id) = element_type.target else {
                return Err(malformed("is not a complex value"));
            };
            let structure = crate::definitions::r4().structure(id);
            Ok(Placed {
                json_name: json_name(element, element_type),
                value: build_object(parts, structure, &element.path)?,
                primitive_element: None,
            })
        }
    }
}

/// The object nested parts describe: each part is a child element by name, with its own value.
fn build_object(parts: &[Value], structure: &'static Structure, owner: &str) -> Result<Value, OperationError> {
    let malformed = |reason| OperationError::MalformedValue { element: owner.to_string(), reason };
    let mut object = Map::new();
    for part in parts {
        let part = part.as_object().ok_or_else(|| malformed("has a part that is not an object"))?;
        let name = part.get("name").and_then(Value::as_str).ok_or_else(|| malformed("has a part without a name"))?;
        let (element, fixed) = child_element(structure, name)
            .ok_or_else(|| OperationError::UnknownElement { structure: structure.path.clone(), name: clip(name) })?;
        let value = read_value(part)
            .map_err(|reason| OperationError::MalformedValue { element: element.path.clone(), reason })?
            .ok_or_else(|| OperationError::MalformedValue { element: element.path.clone(), reason: "has no value" })?;
        let placed = materialize(&value, element, fixed)?;
        if element.max.is_repeating() {
            let mut list = take_list(&mut object, &placed.json_name).ok_or_else(|| malformed("is not a list"))?;
            list.insert(list.len(), placed.value, placed.primitive_element);
            put_list(&mut object, &placed.json_name, list);
        } else {
            if is_present(&object, structure, element) {
                return Err(OperationError::RepeatedSingle { element: element.path.clone() });
            }
            put_single(&mut object, &placed.json_name, placed.value, placed.primitive_element);
        }
    }
    if object.is_empty() {
        return Err(malformed("has no content"));
    }
    Ok(Value::Object(object))
}

/// The type of `candidates` a `value[x]` of `type_name` is.
fn typed_match(
    candidates: &'static [ElementType],
    element: &ElementDef,
    type_name: &str,
) -> Result<&'static ElementType, OperationError> {
    if let Some(element_type) = candidates.iter().find(|t| type_suffix(&t.code) == type_name) {
        return Ok(element_type);
    }
    // The JSON name of a choice element says its type, so only a single-typed primitive
    // element is lenient.
    if let ([element_type], false) = (candidates, element.is_choice()) {
        if let (TypeTarget::Primitive(expected), Some(given)) = (element_type.target, primitive_named(type_name)) {
            if expected.json_type() == given.json_type() {
                return Ok(element_type);
            }
        }
    }
    Err(wrong_type(element, candidates, type_name))
}

fn wrong_type(element: &ElementDef, candidates: &[ElementType], given: &str) -> OperationError {
    let expected = if candidates.len() > MAX_TYPES_LISTED {
        format!("one of its {} types", candidates.len())
    } else {
        candidates.iter().map(|t| t.code.as_str()).collect::<Vec<_>>().join(" | ")
    };
    OperationError::WrongType { element: element.path.clone(), given: clip(given), expected }
}

/// `DateTime` for `dateTime`, `HumanName` for `HumanName`: the type as a `value[x]` suffix.
fn type_suffix(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The primitive a `value[x]` suffix names (`DateTime` is `dateTime`).
fn primitive_named(type_name: &str) -> Option<Primitive> {
    let mut chars = type_name.chars();
    let first = chars.next()?;
    Primitive::from_name(&(first.to_ascii_lowercase().to_string() + chars.as_str()))
}

fn has_json_form(value: &Value, primitive: Primitive) -> bool {
    match primitive.json_type() {
        JsonType::Boolean => value.is_boolean(),
        JsonType::Number => value.is_number(),
        JsonType::String => value.is_string(),
    }
}

/// The JSON name of `element` holding a value of `element_type`.
fn json_name(element: &ElementDef, element_type: &ElementType) -> String {
    if element.is_choice() {
        format!("{}{}", element.base_name(), element_type.suffix)
    } else {
        element.name.clone()
    }
}
