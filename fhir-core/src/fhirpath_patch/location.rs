//! Where a FHIRPath item sits in the resource, and edits at that place.
//!
//! The evaluator hands out borrowed JSON nodes; [`locate`] finds a node by address to turn it
//! into owned [`Step`]s, so that the borrow can end before the resource is changed. A selected
//! element is a [`Slot`]: the object holding it, its JSON name and, in a list, its position. A
//! primitive's value (`given`) and its `_given` twin are edited together, padded to the same
//! length, so that ids and extensions stay with their values.

use serde_json::{Map, Value};

use super::OperationError;
use crate::definitions::{r4, Structure, TypeTarget};
use crate::fhirpath::{Item, ItemValue};

/// One step from the resource root to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The steps to the node at `target`'s address, if it is part of `root`.
pub(super) fn locate(root: &Value, target: &Value) -> Option<Vec<Step>> {
    fn walk(node: &Value, target: &Value, steps: &mut Vec<Step>) -> bool {
        if std::ptr::eq(node, target) {
            return true;
        }
        match node {
            Value::Object(object) => {
                for (key, child) in object {
                    steps.push(Step::Key(key.clone()));
                    if walk(child, target, steps) {
                        return true;
                    }
                    steps.pop();
                }
            }
            Value::Array(values) => {
                for (index, child) in values.iter().enumerate() {
                    steps.push(Step::Index(index));
                    if walk(child, target, steps) {
                        return true;
                    }
                    steps.pop();
                }
            }
            _ => {}
        }
        false
    }
    let mut steps = Vec::new();
    walk(root, target, &mut steps).then_some(steps)
}

pub(super) fn get_mut<'r>(root: &'r mut Value, steps: &[Step]) -> Option<&'r mut Value> {
    steps.iter().try_fold(root, |node, step| match step {
        Step::Key(key) => node.as_object_mut()?.get_mut(key),
        Step::Index(index) => node.as_array_mut()?.get_mut(*index),
    })
}

pub(super) fn object_mut<'r>(
    root: &'r mut Value,
    steps: &[Step],
) -> Result<&'r mut Map<String, Value>, OperationError> {
    // The steps were computed on this very document, so a miss is a bug, reported as a
    // processing failure rather than a panic.
    get_mut(root, steps).and_then(Value::as_object_mut).ok_or(OperationError::NotAnElement)
}

/// A selected element: `object` holds it under `key` (its JSON name, `valueQuantity`, never
/// `_key`), at `index` when the element is a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub object: Vec<Step>,
    pub key: String,
    pub index: Option<usize>,
}

/// The slot of an item the path selected. Computed values, resources reached through
/// `resolve()` of a non-contained reference and the resource itself have none.
pub(super) fn slot_of(root: &Value, item: &Item<'_>) -> Result<Slot, OperationError> {
    let ItemValue::Json(node) = item.value() else {
        return Err(OperationError::NotAnElement);
    };
    if let Some(steps) = locate(root, node) {
        return slot_from_steps(steps, false);
    }
    // A primitive with only an id or extensions: its value is not in the resource, its
    // `_name` object is.
    let element = item.primitive_element().ok_or(OperationError::NotAnElement)?;
    let steps = locate(root, element).ok_or(OperationError::NotAnElement)?;
    slot_from_steps(steps, true)
}

fn slot_from_steps(mut steps: Vec<Step>, underscored: bool) -> Result<Slot, OperationError> {
    let index = match steps.last() {
        None => return Err(OperationError::RootSelected),
        Some(Step::Index(index)) => {
            let index = *index;
            steps.pop();
            Some(index)
        }
        Some(Step::Key(_)) => None,
    };
    let Some(Step::Key(key)) = steps.pop() else {
        return Err(OperationError::NotAnElement);
    };
    let key = match (underscored, key.strip_prefix('_')) {
        (false, _) => key,
        (true, Some(name)) => name.to_string(),
        (true, None) => return Err(OperationError::NotAnElement),
    };
    if key == "resourceType" || key.starts_with('_') {
        return Err(OperationError::NotAnElement);
    }
    Ok(Slot { object: steps, key, index })
}

/// Where the children of a selected item live: the object itself, or for a primitive its
/// `_name` object, which may not exist yet.
#[derive(Clone, Debug)]
pub(super) enum Container {
    Object(Vec<Step>),
    PrimitiveElement(Slot),
}

pub(super) fn container_of(root: &Value, item: &Item<'_>) -> Result<Container, OperationError> {
    let ItemValue::Json(node) = item.value() else {
        return Err(OperationError::NotAnElement);
    };
    if node.is_object() {
        return locate(root, node).map(Container::Object).ok_or(OperationError::NotAnElement);
    }
    Ok(Container::PrimitiveElement(slot_of(root, item)?))
}

/// The element table of a container, `None` for JSON the definitions do not describe.
pub(super) fn container_structure(root: &Value, container: &Container) -> Option<&'static Structure> {
    match container {
        Container::Object(steps) => structure_at(root, steps),
        Container::PrimitiveElement(_) => Some(r4().primitive_extension_structure()),
    }
}

/// The container's object, creating a primitive's `_name` object (and `_name` list) if needed.
pub(super) fn container_mut<'r>(
    root: &'r mut Value,
    container: &Container,
) -> Result<&'r mut Map<String, Value>, OperationError> {
    let slot = match container {
        Container::Object(steps) => return object_mut(root, steps),
        Container::PrimitiveElement(slot) => slot,
    };
    let object = object_mut(root, &slot.object)?;
    let twin = format!("_{}", slot.key);
    let node = match slot.index {
        None => object.entry(twin).or_insert_with(|| Value::Object(Map::new())),
        Some(index) => {
            let length = object.get(&slot.key).and_then(Value::as_array).map_or(0, Vec::len).max(index + 1);
            let elements = object.entry(twin).or_insert_with(|| Value::Array(Vec::new()));
            let elements = elements.as_array_mut().ok_or(OperationError::NotAnElement)?;
            if elements.len() < length {
                elements.resize(length, Value::Null);
            }
            let node = &mut elements[index];
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            node
        }
    };
    node.as_object_mut().ok_or(OperationError::NotAnElement)
}

/// The element table of the object at `steps`: resources by `resourceType`, elements by their
/// definition, `_name` objects as `Element`.
pub(super) fn structure_at(root: &Value, steps: &[Step]) -> Option<&'static Structure> {
    let definitions = r4();
    let mut node = root;
    let mut structure = definitions.structure_of_type(root.get("resourceType")?.as_str()?)?;
    let mut resource_pending = false;
    for step in steps {
        match step {
            Step::Key(key) => {
                node = node.get(key)?;
                if key.starts_with('_') {
                    structure = definitions.primitive_extension_structure();
                } else {
                    let (_, element_type) = structure.child(key)?;
                    match element_type.target {
                        TypeTarget::Complex(id) => structure = definitions.structure(id),
                        TypeTarget::Resource => resource_pending = true,
                        TypeTarget::Primitive(_) => return None,
                    }
                }
            }
            Step::Index(index) => node = node.get(index)?,
        }
        if resource_pending && node.is_object() {
            structure = definitions.structure_of_type(node.get("resourceType")?.as_str()?)?;
            resource_pending = false;
        }
    }
    (!resource_pending).then_some(structure)
}

/// A list element and its `_name` twin, taken out of an object to be edited, of equal length.
pub(super) struct List {
    pub values: Vec<Value>,
    pub elements: Vec<Value>,
}

impl List {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn insert(&mut self, index: usize, value: Value, element: Option<Value>) {
        self.values.insert(index, value);
        self.elements.insert(index, element.unwrap_or(Value::Null));
    }

    pub fn remove(&mut self, index: usize) -> (Value, Value) {
        (self.values.remove(index), self.elements.remove(index))
    }
}

/// Takes the list `key` (and `_key`) out of `object`; absent is empty. `None` when the JSON
/// there is not a list.
pub(super) fn take_list(object: &mut Map<String, Value>, key: &str) -> Option<List> {
    let twin = format!("_{key}");
    let mut take = |name: &str| match object.get_mut(name) {
        None => Some(Vec::new()),
        Some(Value::Array(values)) => Some(std::mem::take(values)),
        Some(_) => None,
    };
    let mut values = take(key)?;
    let mut elements = take(&twin)?;
    let length = values.len().max(elements.len());
    values.resize(length, Value::Null);
    elements.resize(length, Value::Null);
    Some(List { values, elements })
}

/// Puts a list back where [`take_list`] found it, leaving out what is empty or all `null`.
pub(super) fn put_list(object: &mut Map<String, Value>, key: &str, list: List) {
    let twin = format!("_{key}");
    if list.values.iter().all(Value::is_null) {
        object.shift_remove(key);
    } else {
        object.insert(key.to_string(), Value::Array(list.values));
    }
    if list.elements.iter().all(Value::is_null) {
        object.shift_remove(&twin);
    } else {
        object.insert(twin, Value::Array(list.elements));
    }
}

/// Writes a single (non-list) element that is absent.
pub(super) fn put_single(object: &mut Map<String, Value>, key: &str, value: Value, element: Option<Value>) {
    if !value.is_null() {
        object.insert(key.to_string(), value);
    }
    if let Some(element) = element {
        object.insert(format!("_{key}"), element);
    }
}

/// Replaces a single element in place, also when its JSON name changes (`valueQuantity` to
/// `valueString`), keeping the position of the property in the object.
pub(super) fn replace_single(
    object: &mut Map<String, Value>,
    old_key: &str,
    new_key: &str,
    value: Value,
    element: Option<Value>,
) {
    let old_twin = format!("_{old_key}");
    let new_twin = format!("_{new_key}");
    let mut replaced = Map::with_capacity(object.len() + 1);
    let mut written = false;
    for (key, existing) in std::mem::take(object) {
        if key == old_key || key == old_twin {
            if !written {
                if !value.is_null() {
                    replaced.insert(new_key.to_string(), value.clone());
                }
                if let Some(element) = &element {
                    replaced.insert(new_twin.clone(), element.clone());
                }
                written = true;
            }
            continue;
        }
        replaced.insert(key, existing);
    }
    *object = replaced;
}

/// Removes a single element and its `_name` twin.
pub(super) fn remove_single(object: &mut Map<String, Value>, key: &str) {
    object.shift_remove(key);
    object.shift_remove(&format!("_{key}"));
}

/// After a delete, removes the objects it left empty, from `steps` upwards (never the root):
/// an empty element is not valid FHIR JSON. An emptied `_name` object in a list becomes
/// `null`, to keep the list aligned with its values.
pub(super) fn prune_empty(root: &mut Value, mut steps: Vec<Step>) {
    while !steps.is_empty() {
        let is_empty = get_mut(root, &steps).is_some_and(|node| node.as_object().is_some_and(Map::is_empty));
        if !is_empty {
            return;
        }
        match steps.pop() {
            Some(Step::Key(key)) => {
                if let Some(parent) = get_mut(root, &steps).and_then(Value::as_object_mut) {
                    parent.shift_remove(&key);
                }
            }
            Some(Step::Index(index)) => {
                let Some(Step::Key(key)) = steps.pop() else {
                    return;
                };
                let Some(parent) = get_mut(root, &steps).and_then(Value::as_object_mut) else {
                    return;
                };
                match key.strip_prefix('_') {
                    Some(name) => {
                        let name = name.to_string();
                        if let Some(mut list) = take_list(parent, &name) {
                            if index < list.len() {
                                // A value-less entry whose `_name` is gone is no entry at all.
                                if list.values[index].is_null() {
                                    list.remove(index);
                                } else {
                                    list.elements[index] = Value::Null;
                                }
                            }
                            put_list(parent, &name, list);
                        }
                    }
                    None => {
                        if let Some(mut list) = take_list(parent, &key) {
                            if index < list.len() {
                                list.remove(index);
                            }
                            put_list(parent, &key, list);
                        }
                    }
                }
            }
            None => return,
        }
    }
}
