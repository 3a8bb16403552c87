//! Each operation on the resource: evaluate the path on the current state, turn what it
//! selects into owned locations, then edit.

use serde_json::Value;

use super::location::{
    container_mut, container_of, container_structure, object_mut, prune_empty, put_list, put_single, remove_single,
    replace_single, slot_of, structure_at, take_list, Container,
};
use super::parse::{Action, ListPath};
use super::value::{child_element, is_present, materialize, PatchValue};
use super::{clip, OperationError};
use crate::definitions::{ElementDef, ElementType, Structure};
use crate::fhirpath::{Expression, Item};

pub(super) fn execute(action: &Action<'_>, resource: &mut Value) -> Result<(), OperationError> {
    match action {
        Action::Add { path, name, value } => add(resource, path, name, value),
        Action::Insert { list, index, value } => insert(resource, list, *index, value),
        Action::Delete { path } => delete(resource, path),
        Action::Replace { path, value } => replace(resource, path, value),
        Action::Move { list, source, destination } => move_within(resource, list, *source, *destination),
    }
}

fn select<'r>(resource: &'r Value, path: &Expression) -> Result<Vec<Item<'r>>, OperationError> {
    path.evaluate(resource).map_err(OperationError::PathFailed)
}

fn single(mut items: Vec<Item<'_>>) -> Result<Item<'_>, OperationError> {
    match items.len() {
        0 => Err(OperationError::NoMatch),
        1 => Ok(items.remove(0)),
        count => Err(OperationError::MultipleMatches { count }),
    }
}

/// The element `name` of the structure of `container`.
fn element_of(
    resource: &Value,
    container: &Container,
    name: &str,
) -> Result<(&'static Structure, &'static ElementDef, Option<&'static ElementType>), OperationError> {
    let structure = container_structure(resource, container).ok_or(OperationError::Undescribed)?;
    let (element, fixed) = child_element(structure, name)
        .ok_or_else(|| OperationError::UnknownElement { structure: structure.path.clone(), name: clip(name) })?;
    Ok((structure, element, fixed))
}

fn add(resource: &mut Value, path: &Expression, name: &str, value: &PatchValue<'_>) -> Result<(), OperationError> {
    let container = container_of(resource, &single(select(resource, path)?)?)?;
    let (structure, element, fixed) = element_of(resource, &container, name)?;
    let placed = materialize(value, element, fixed)?;
    let object = container_mut(resource, &container)?;
    if element.max.is_repeating() {
        let not_a_list = || OperationError::NotAList { element: element.path.clone() };
        let mut list = take_list(object, &placed.json_name).ok_or_else(not_a_list)?;
        list.insert(list.len(), placed.value, placed.primitive_element);
        put_list(object, &placed.json_name, list);
    } else {
        if is_present(object, structure, element) {
            return Err(OperationError::AlreadyPresent { element: element.path.clone() });
        }
        put_single(object, &placed.json_name, placed.value, placed.primitive_element);
    }
    Ok(())
}

/// The container of the element that holds a list.
fn holder_of(resource: &Value, list: &ListPath) -> Result<Container, OperationError> {
    match &list.holder {
        None => Ok(Container::Object(Vec::new())),
        Some(holder) => container_of(resource, &single(select(resource, holder)?)?),
    }
}

fn insert(resource: &mut Value, list: &ListPath, index: usize, value: &PatchValue<'_>) -> Result<(), OperationError> {
    let container = holder_of(resource, list)?;
    let (_, element, fixed) = element_of(resource, &container, &list.name)?;
    let not_a_list = || OperationError::NotAList { element: element.path.clone() };
    if !element.max.is_repeating() {
        return Err(not_a_list());
    }
    let placed = materialize(value, element, fixed)?;
    let object = container_mut(resource, &container)?;
    let mut items = take_list(object, &placed.json_name).ok_or_else(not_a_list)?;
    let length = items.len();
    if index > length {
        put_list(object, &placed.json_name, items);
        return Err(OperationError::IndexOutOfRange { part: "index", index, length });
    }
    items.insert(index, placed.value, placed.primitive_element);
    put_list(object, &placed.json_name, items);
    Ok(())
}

fn move_within(resource: &mut Value, list: &ListPath, source: usize, destination: usize) -> Result<(), OperationError> {
    let container = holder_of(resource, list)?;
    // Moving needs no definitions, but where they exist a single element is no list.
    if container_structure(resource, &container).is_some() {
        let (_, element, _) = element_of(resource, &container, &list.name)?;
        if !element.max.is_repeating() {
            return Err(OperationError::NotAList { element: element.path.clone() });
        }
    }
    let object = container_mut(resource, &container)?;
    let not_a_list = || OperationError::NotAList { element: list.name.clone() };
    let mut items = take_list(object, &list.name).ok_or_else(not_a_list)?;
    let length = items.len();
    let out_of_range = [("source", source), ("destination", destination)].into_iter().find(|(_, at)| *at >= length);
    if let Some((part, index)) = out_of_range {
        put_list(object, &list.name, items);
        return Err(OperationError::IndexOutOfRange { part, index, length });
    }
    let (moved, element) = items.remove(source);
    items.insert(destination, moved, Some(element));
    put_list(object, &list.name, items);
    Ok(())
}

fn delete(resource: &mut Value, path: &Expression) -> Result<(), OperationError> {
    let slot = {
        let items = select(resource, path)?;
        match items.as_slice() {
            [] => return Ok(()),
            [item] => slot_of(resource, item)?,
            _ => return Err(OperationError::MultipleMatches { count: items.len() }),
        }
    };
    let object = object_mut(resource, &slot.object)?;
    match slot.index {
        None => remove_single(object, &slot.key),
        Some(index) => {
            let mut items = take_list(object, &slot.key).ok_or(OperationError::NotAnElement)?;
            if index < items.len() {
                items.remove(index);
            }
            put_list(object, &slot.key, items);
        }
    }
    prune_empty(resource, slot.object);
    Ok(())
}

fn replace(resource: &mut Value, path: &Expression, value: &PatchValue<'_>) -> Result<(), OperationError> {
    let slot = slot_of(resource, &single(select(resource, path)?)?)?;
    let structure = structure_at(resource, &slot.object).ok_or(OperationError::Undescribed)?;
    let (element, _) = structure.child(&slot.key).ok_or(OperationError::Undescribed)?;
    // Any type of a choice element fits: replacing `valueQuantity` by a `valueString` renames it.
    let placed = materialize(value, element, None)?;
    let object = object_mut(resource, &slot.object)?;
    match slot.index {
        None => replace_single(object, &slot.key, &placed.json_name, placed.value, placed.primitive_element),
        Some(index) => {
            let mut items = take_list(object, &slot.key).ok_or(OperationError::NotAnElement)?;
            if index >= items.len() {
                put_list(object, &slot.key, items);
                return Err(OperationError::NotAnElement);
            }
            items.values[index] = placed.value;
            items.elements[index] = placed.primitive_element.unwrap_or(Value::Null);
            put_list(object, &slot.key, items);
        }
    }
    Ok(())
}
