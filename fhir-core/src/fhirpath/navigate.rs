//! Path steps over JSON, typed by the R4 StructureDefinitions.
//!
//! A step from an item with a known structure looks the name up in that structure: a plain
//! element gives its values (arrays flatten) typed with the element's type; a choice element
//! (`value`) gives whichever `value[Type]` key is present, typed by the key's suffix; `contained`
//! and `Bundle.entry.resource` values are typed by their `resourceType`. A primitive's `_name`
//! sibling travels with its value, so `birthDate.extension` finds the extensions in
//! `_birthDate`. Without a structure (JSON the definitions do not describe) steps are plain JSON
//! property lookups.

use serde_json::{Map, Value};

use super::ast::Name;
use super::item::{FhirType, Item, ItemType, ItemValue};
use crate::definitions::{r4, ElementType, Primitive, Structure, TypeTarget};

/// What a primitive with only extensions (`_birthDate` without `birthDate`) holds as its value.
static NO_VALUE: Value = Value::Null;

/// Appends the children of `item` called `name` to `out`.
pub(crate) fn child<'a>(item: &Item<'a>, name: &Name, out: &mut Vec<Item<'a>>) {
    let ItemValue::Json(node) = item.value else {
        return;
    };
    match node {
        Value::Object(object) => match item.item_type {
            ItemType::Fhir(FhirType { structure: Some(structure), .. }) => typed_child(object, structure, name, out),
            _ => untyped_child(object, name, out),
        },
        // A primitive's own children (`id`, `extension`) live in its `_name` sibling.
        _ => {
            if let Some(Value::Object(element)) = item.primitive_element {
                typed_child(element, r4().primitive_extension_structure(), name, out);
            }
        }
    }
}

fn typed_child<'a>(
    object: &'a Map<String, Value>,
    structure: &'static Structure,
    name: &Name,
    out: &mut Vec<Item<'a>>,
) {
    if let Some((_, element_type)) = structure.child(&name.name) {
        push_typed(object.get(&*name.name), object.get(&*name.primitive_element), element_type, out);
        return;
    }
    let Some(element) = structure.element_named(&name.name).filter(|e| e.is_choice()) else {
        return;
    };
    for (key, value) in object {
        let Some(suffix) = key.strip_prefix(&*name.name) else {
            continue;
        };
        if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        if let Some((found, element_type)) = structure.child(key) {
            if std::ptr::eq(found, element) {
                push_typed(Some(value), underscore_sibling(object, key), element_type, out);
            }
        }
    }
    // A choice primitive with only extensions: `_valueString` without `valueString`.
    for (key, extension) in object {
        let Some(json_name) = key.strip_prefix('_') else {
            continue;
        };
        if !json_name.starts_with(&*name.name) || object.contains_key(json_name) {
            continue;
        }
        if let Some((found, element_type)) = structure.child(json_name) {
            if std::ptr::eq(found, element) {
                push_typed(None, Some(extension), element_type, out);
            }
        }
    }
}

fn underscore_sibling<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.iter().find(|(k, _)| k.strip_prefix('_') == Some(key)).map(|(_, v)| v)
}

/// The item type of values of one element type; `None` for `Resource`, whose values are typed
/// one by one from their `resourceType`.
pub(crate) fn element_item_type(element_type: &'static ElementType) -> Option<ItemType> {
    match element_type.target {
        TypeTarget::Primitive(primitive) => Some(ItemType::Fhir(FhirType {
            name: element_type.code.as_str(),
            structure: None,
            primitive: Some(primitive),
        })),
        TypeTarget::Complex(id) => Some(ItemType::Fhir(FhirType {
            name: element_type.code.as_str(),
            structure: Some(r4().structure(id)),
            primitive: None,
        })),
        TypeTarget::Resource => None,
    }
}

fn push_typed<'a>(
    value: Option<&'a Value>,
    primitive_element: Option<&'a Value>,
    element_type: &'static ElementType,
    out: &mut Vec<Item<'a>>,
) {
    push_values(value, primitive_element, element_item_type(element_type), out);
}

/// Pushes a property's value(s): an array flattens, its `_name` array pairing by position.
/// `item_type` `None` types each value from its `resourceType`.
fn push_values<'a>(
    value: Option<&'a Value>,
    primitive_element: Option<&'a Value>,
    item_type: Option<ItemType>,
    out: &mut Vec<Item<'a>>,
) {
    match (value, primitive_element) {
        (Some(Value::Array(values)), elements) => {
            let elements = elements.and_then(Value::as_array);
            for (i, value) in values.iter().enumerate() {
                let element = elements.and_then(|e| e.get(i)).filter(|e| e.is_object());
                push_one(value, element, item_type, out);
            }
            // `_given` may be longer than `given` when trailing values are extension-only.
            if let Some(elements) = elements {
                for element in elements.iter().skip(values.len()).filter(|e| e.is_object()) {
                    push_one(&NO_VALUE, Some(element), item_type, out);
                }
            }
        }
        (Some(value), element) => push_one(value, element.filter(|e| e.is_object()), item_type, out),
        (None, Some(Value::Array(elements))) => {
            for element in elements.iter().filter(|e| e.is_object()) {
                push_one(&NO_VALUE, Some(element), item_type, out);
            }
        }
        (None, Some(element @ Value::Object(_))) => push_one(&NO_VALUE, Some(element), item_type, out),
        (None, _) => {}
    }
}

fn push_one<'a>(
    value: &'a Value,
    primitive_element: Option<&'a Value>,
    item_type: Option<ItemType>,
    out: &mut Vec<Item<'a>>,
) {
    if value.is_null() && primitive_element.is_none() {
        return;
    }
    let item_type = item_type.unwrap_or_else(|| ItemType::of_resource(value));
    out.push(Item { value: ItemValue::Json(value), item_type, primitive_element });
}

/// A step over JSON the definitions do not describe: the property, else a choice-like
/// `nameType` property typed by its suffix, else nothing.
fn untyped_child<'a>(object: &'a Map<String, Value>, name: &Name, out: &mut Vec<Item<'a>>) {
    let element = object.get(&*name.primitive_element);
    if let Some(value) = object.get(&*name.name) {
        let resource_like = value.get("resourceType").is_some()
            || value.as_array().is_some_and(|a| a.iter().any(|v| v.get("resourceType").is_some()));
        let item_type = if resource_like { None } else { Some(ItemType::Unknown) };
        push_values(Some(value), element, item_type, out);
        return;
    }
    for (key, value) in object {
        let Some(suffix) = key.strip_prefix(&*name.name) else {
            continue;
        };
        if suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
            push_values(Some(value), underscore_sibling(object, key), Some(type_from_suffix(suffix)), out);
        }
    }
}

/// The type a choice suffix names: `Quantity`, `DateTime` (the primitive `dateTime`).
fn type_from_suffix(suffix: &str) -> ItemType {
    let definitions = r4();
    if let Some(def) = definitions.type_def(suffix) {
        return ItemType::Fhir(FhirType {
            name: def.name.as_str(),
            structure: def.structure.map(|id| definitions.structure(id)),
            primitive: None,
        });
    }
    let mut chars = suffix.chars();
    let primitive_name = match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => return ItemType::Unknown,
    };
    match Primitive::from_name(&primitive_name) {
        Some(primitive) => {
            ItemType::Fhir(FhirType { name: primitive.name(), structure: None, primitive: Some(primitive) })
        }
        None => ItemType::Unknown,
    }
}

/// Appends every child of `item` (`children()`): each property's values, typed where the
/// structure knows them.
pub(crate) fn children<'a>(item: &Item<'a>, out: &mut Vec<Item<'a>>) {
    let ItemValue::Json(node) = item.value else {
        return;
    };
    let (object, structure) = match (node, item.item_type) {
        (Value::Object(object), ItemType::Fhir(FhirType { structure, .. })) => (object, structure),
        (Value::Object(object), _) => (object, None),
        _ => match item.primitive_element {
            Some(Value::Object(element)) => (element, Some(r4().primitive_extension_structure())),
            _ => return,
        },
    };
    for (key, value) in object {
        if key == "resourceType" {
            continue;
        }
        let (json_name, value, element) = match key.strip_prefix('_') {
            Some(json_name) if object.contains_key(json_name) => continue,
            Some(json_name) => (json_name, None, Some(value)),
            None => (key.as_str(), Some(value), underscore_sibling(object, key)),
        };
        match structure.and_then(|s| s.child(json_name)) {
            Some((_, element_type)) => push_typed(value, element, element_type, out),
            None => push_values(value, element, Some(ItemType::Unknown), out),
        }
    }
}
