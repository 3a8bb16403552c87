//! The items of a FHIRPath collection, and their types.
//!
//! An item is mostly a borrowed node of the resource ([`ItemValue::Json`]) with the FHIR type the
//! StructureDefinitions give it; literals and function results are computed System values.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::definitions::{r4, Primitive, Structure};

/// What a FHIRPath item holds.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemValue<'a> {
    /// A node of the resource: an object (resource, datatype, backbone element) or a primitive's
    /// JSON value. `null` when a primitive has only an id or extensions (`_birthDate` without
    /// `birthDate`).
    Json(&'a Value),
    Boolean(bool),
    String(Arc<str>),
    Integer(i64),
    Decimal(f64),
    /// A date, dateTime or time value in its FHIR text form (`2020-01`, `2020-01-02T10:00:00Z`,
    /// `10:00`).
    Date(Arc<str>),
    DateTime(Arc<str>),
    Time(Arc<str>),
    Quantity {
        value: f64,
        unit: Arc<str>,
    },
    /// What `resolve()` gives for a reference it cannot follow (it is not to a contained
    /// resource): the `Reference` object or canonical/uri string, typed as the resource type the
    /// reference names, so that `resolve() is Patient` can be answered.
    UnresolvedReference(&'a Value),
}

/// The System (FHIRPath) types, of literals and computed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemType {
    Boolean,
    String,
    Integer,
    Decimal,
    Date,
    DateTime,
    Time,
    Quantity,
}

impl SystemType {
    pub fn name(self) -> &'static str {
        match self {
            SystemType::Boolean => "Boolean",
            SystemType::String => "String",
            SystemType::Integer => "Integer",
            SystemType::Decimal => "Decimal",
            SystemType::Date => "Date",
            SystemType::DateTime => "DateTime",
            SystemType::Time => "Time",
            SystemType::Quantity => "Quantity",
        }
    }

    pub fn from_name(name: &str) -> Option<SystemType> {
        [
            SystemType::Boolean,
            SystemType::String,
            SystemType::Integer,
            SystemType::Decimal,
            SystemType::Date,
            SystemType::DateTime,
            SystemType::Time,
            SystemType::Quantity,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// The System type a FHIR primitive's value is (`code` -> `String`, `instant` -> `DateTime`).
    pub fn of_primitive(primitive: Primitive) -> SystemType {
        match primitive {
            Primitive::Boolean => SystemType::Boolean,
            Primitive::Integer | Primitive::PositiveInt | Primitive::UnsignedInt => SystemType::Integer,
            Primitive::Decimal => SystemType::Decimal,
            Primitive::Date => SystemType::Date,
            Primitive::DateTime | Primitive::Instant => SystemType::DateTime,
            Primitive::Time => SystemType::Time,
            _ => SystemType::String,
        }
    }
}

/// A FHIR type as the definitions know it, with what navigation needs.
#[derive(Clone, Copy)]
pub struct FhirType {
    /// The type code: `Patient`, `HumanName`, `BackboneElement`, `dateTime`, `Quantity`.
    pub name: &'static str,
    /// The elements of a complex value (for a backbone element, its own table).
    pub structure: Option<&'static Structure>,
    pub primitive: Option<Primitive>,
}

impl fmt::Debug for FhirType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.structure {
            Some(structure) if structure.path != self.name => write!(f, "FHIR.{} ({})", self.name, structure.path),
            _ => write!(f, "FHIR.{}", self.name),
        }
    }
}

impl PartialEq for FhirType {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.structure.map(|s| &s.path) == other.structure.map(|s| &s.path)
    }
}

/// The type of an item, where it is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ItemType {
    Fhir(FhirType),
    System(SystemType),
    /// JSON the definitions do not describe (an unknown element, a resource without a known
    /// `resourceType`), or a reference whose target type cannot be told.
    Unknown,
}

impl ItemType {
    /// The type of a resource node, from its `resourceType`.
    pub fn of_resource(node: &Value) -> ItemType {
        let Some(name) = node.get("resourceType").and_then(Value::as_str) else {
            return ItemType::Unknown;
        };
        ItemType::of_resource_type(name)
    }

    /// A resource type by name (`Patient`), `Unknown` when it is not one.
    pub fn of_resource_type(name: &str) -> ItemType {
        let definitions = r4();
        match definitions.type_def(name) {
            Some(def) if def.kind == crate::definitions::TypeKind::Resource => ItemType::Fhir(FhirType {
                name: def.name.as_str(),
                structure: def.structure.map(|id| definitions.structure(id)),
                primitive: None,
            }),
            _ => ItemType::Unknown,
        }
    }

    /// The FHIR type name, if the item has a FHIR type.
    pub fn fhir_name(&self) -> Option<&'static str> {
        match self {
            ItemType::Fhir(fhir) => Some(fhir.name),
            _ => None,
        }
    }
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug, PartialEq)]
pub struct Item<'a> {
    pub(crate) value: ItemValue<'a>,
    pub(crate) item_type: ItemType,
    /// The `_name` sibling of a primitive value: its id and extensions.
    pub(crate) primitive_element: Option<&'a Value>,
}

impl<'a> Item<'a> {
    pub(crate) fn new(value: ItemValue<'a>, item_type: ItemType) -> Self {
        Item { value, item_type, primitive_element: None }
    }

    /// A resource as the root of an evaluation, typed by its `resourceType`.
    pub fn resource(node: &'a Value) -> Self {
        Item::new(ItemValue::Json(node), ItemType::of_resource(node))
    }

    pub(crate) fn boolean(value: bool) -> Self {
        Item::new(ItemValue::Boolean(value), ItemType::System(SystemType::Boolean))
    }

    pub(crate) fn string(value: impl Into<Arc<str>>) -> Self {
        Item::new(ItemValue::String(value.into()), ItemType::System(SystemType::String))
    }

    pub(crate) fn integer(value: i64) -> Self {
        Item::new(ItemValue::Integer(value), ItemType::System(SystemType::Integer))
    }

    pub(crate) fn decimal(value: f64) -> Self {
        Item::new(ItemValue::Decimal(value), ItemType::System(SystemType::Decimal))
    }

    pub fn value(&self) -> &ItemValue<'a> {
        &self.value
    }

    pub fn item_type(&self) -> ItemType {
        self.item_type
    }

    /// The FHIR type name (`Quantity`, `Patient`, `code`), when the item has a FHIR type.
    pub fn fhir_type(&self) -> Option<&'static str> {
        self.item_type.fhir_name()
    }

    /// The FHIR type name, or the System type name of a computed value.
    pub fn type_name(&self) -> Option<&'static str> {
        match self.item_type {
            ItemType::Fhir(fhir) => Some(fhir.name),
            ItemType::System(system) => Some(system.name()),
            ItemType::Unknown => None,
        }
    }

    /// The resource node this item is, if it is one (also an unresolved reference's node).
    pub fn json(&self) -> Option<&'a Value> {
        match self.value {
            ItemValue::Json(node) | ItemValue::UnresolvedReference(node) => Some(node),
            _ => None,
        }
    }

    /// The `_name` object beside a primitive value (its `id` and `extension`).
    pub fn primitive_element(&self) -> Option<&'a Value> {
        self.primitive_element
    }

    /// The text of a string-like item: a JSON string, or a computed string, date or time.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            ItemValue::Json(Value::String(text)) => Some(text),
            ItemValue::String(text) | ItemValue::Date(text) | ItemValue::DateTime(text) | ItemValue::Time(text) => {
                Some(text)
            }
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            ItemValue::Json(Value::Bool(value)) => Some(*value),
            ItemValue::Boolean(value) => Some(value),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            ItemValue::Json(Value::Number(ref number)) => number.as_i64(),
            ItemValue::Integer(value) => Some(value),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            ItemValue::Json(Value::Number(ref number)) => number.as_f64(),
            ItemValue::Integer(value) => Some(value as f64),
            ItemValue::Decimal(value) => Some(value),
            _ => None,
        }
    }

    /// The item as JSON: the node itself, or the computed value (a Quantity as
    /// `{"value", "unit"}`).
    pub fn to_json(&self) -> Value {
        match &self.value {
            ItemValue::Json(node) | ItemValue::UnresolvedReference(node) => (*node).clone(),
            ItemValue::Boolean(value) => Value::Bool(*value),
            ItemValue::String(text) | ItemValue::Date(text) | ItemValue::DateTime(text) | ItemValue::Time(text) => {
                Value::String(text.to_string())
            }
            ItemValue::Integer(value) => Value::from(*value),
            ItemValue::Decimal(value) => serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number),
            ItemValue::Quantity { value, unit } => serde_json::json!({ "value": value, "unit": unit.as_ref() }),
        }
    }

    /// Whether the item is a primitive that has a value (not only an id or extensions), or a
    /// computed value.
    pub fn has_value(&self) -> bool {
        match self.value {
            ItemValue::Json(node) => !(node.is_null() || node.is_object() || node.is_array()),
            ItemValue::UnresolvedReference(_) => false,
            _ => true,
        }
    }
}
