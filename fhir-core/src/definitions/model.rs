//! The lookup structures built from the data file: types, element tables, primitives.
//!
//! Every complex thing a JSON object can be (a resource, a complex datatype, a backbone element)
//! is a [`Structure`]: its elements and a table from JSON property name to element, in which
//! each type of a choice element has its own entry (`valueQuantity`, `valueString`, ...).

use super::fast_hash::FastMap;

/// `StructureDefinition.kind` of the types the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeKind {
    Resource,
    ComplexType,
    PrimitiveType,
}

/// One R4 type: a resource, a complex datatype, a primitive, or one of the Quantity profiles
/// (`SimpleQuantity`, `MoneyQuantity`), which are their own entries here.
#[derive(Clone, Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub is_abstract: bool,
    /// The type this one specializes or constrains (`DomainResource` for `Patient`).
    pub base: Option<String>,
    pub(crate) structure: Option<StructureId>,
}

/// Index of a [`Structure`] in [`super::Definitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StructureId(pub(crate) u32);

/// The primitive types of R4, each with the JSON representation and format rules of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Primitive {
    pub const ALL: [Primitive; 20] = [
        Primitive::Base64Binary,
        Primitive::Boolean,
        Primitive::Canonical,
        Primitive::Code,
        Primitive::Date,
        Primitive::DateTime,
        Primitive::Decimal,
        Primitive::Id,
        Primitive::Instant,
        Primitive::Integer,
        Primitive::Markdown,
        Primitive::Oid,
        Primitive::PositiveInt,
        Primitive::String,
        Primitive::Time,
        Primitive::UnsignedInt,
        Primitive::Uri,
        Primitive::Url,
        Primitive::Uuid,
        Primitive::Xhtml,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Primitive::Base64Binary => "base64Binary",
            Primitive::Boolean => "boolean",
            Primitive::Canonical => "canonical",
            Primitive::Code => "code",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Id => "id",
            Primitive::Instant => "instant",
            Primitive::Integer => "integer",
            Primitive::Markdown => "markdown",
            Primitive::Oid => "oid",
            Primitive::PositiveInt => "positiveInt",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }

    pub fn from_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The JSON type that represents this primitive's value.
    pub fn json_type(self) -> JsonType {
        match self {
            Primitive::Boolean => JsonType::Boolean,
            Primitive::Decimal | Primitive::Integer | Primitive::PositiveInt | Primitive::UnsignedInt => {
                JsonType::Number
            }
            _ => JsonType::String,
        }
    }
}

/// How a primitive value is written in FHIR JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonType {
    Boolean,
    Number,
    String,
}

/// What a value of one element type is, for the validator and for navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeTarget {
    /// A primitive: a JSON value, with an optional `_name` sibling for id and extensions.
    Primitive(Primitive),
    /// A JSON object with the elements of this structure (datatype, backbone element, or the
    /// element a content reference points to).
    Complex(StructureId),
    /// A whole resource, whose `resourceType` says what it is (`contained`, `Bundle.entry.resource`).
    Resource,
}

/// One of the types an element may have.
#[derive(Clone, Debug)]
pub struct ElementType {
    /// The FHIR type code: `string`, `HumanName`, `BackboneElement`, `Resource`, ...
    pub code: String,
    /// For choice elements, the suffix of the JSON name: `Quantity` in `valueQuantity`.
    pub suffix: String,
    pub target: TypeTarget,
}

/// A required binding of a `code` or `CodeableConcept` element.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Canonical URL, without version.
    pub value_set: String,
    /// Index of the value set in the definitions, resolved once at load.
    pub(crate) index: Option<usize>,
}

/// Maximum cardinality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Max {
    Bounded(u32),
    Unbounded,
}

impl Max {
    /// Whether the element is an array in JSON (any max other than 0 or 1).
    pub fn is_repeating(self) -> bool {
        match self {
            Max::Bounded(n) => n > 1,
            Max::Unbounded => true,
        }
    }

    pub fn allows(self, count: usize) -> bool {
        match self {
            Max::Bounded(n) => count <= n as usize,
            Max::Unbounded => true,
        }
    }
}

impl std::fmt::Display for Max {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Max::Bounded(n) => write!(f, "{n}"),
            Max::Unbounded => f.write_str("*"),
        }
    }
}

/// One element of a type's snapshot.
#[derive(Clone, Debug)]
pub struct ElementDef {
    /// Full path, e.g. `Patient.contact.name` or `Observation.value[x]`.
    pub path: String,
    /// Last segment of the path, e.g. `name` or `value[x]`.
    pub name: String,
    pub min: u32,
    pub max: Max,
    /// At least one; more only for choice elements. An element defined by a content reference
    /// has one type whose target is the referenced element's structure.
    pub types: Vec<ElementType>,
    pub is_summary: bool,
    pub is_modifier: bool,
    /// `Questionnaire.item` for `Questionnaire.item.item`.
    pub content_reference: Option<String>,
    pub binding: Option<Binding>,
    /// `SimpleQuantity` where the spec constrains a Quantity.
    pub profile: Option<String>,
}

impl ElementDef {
    /// `value[x]`-style element that takes one of several types, each with its own JSON name.
    pub fn is_choice(&self) -> bool {
        self.name.ends_with("[x]")
    }

    /// The name without `[x]`: the FHIRPath name of the element.
    pub fn base_name(&self) -> &str {
        self.name.strip_suffix("[x]").unwrap_or(&self.name)
    }

    /// The JSON property name for one of the element's types.
    pub fn json_name(&self, type_index: usize) -> String {
        match self.types.get(type_index) {
            Some(ty) if self.is_choice() => format!("{}{}", self.base_name(), ty.suffix),
            _ => self.name.clone(),
        }
    }
}

/// Where a JSON property name leads in a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildRef {
    pub element: u32,
    pub type_index: u32,
}

/// The elements that can appear in one kind of JSON object.
#[derive(Clone, Debug)]
pub struct Structure {
    /// `Patient`, `Patient.contact`, `HumanName`.
    pub path: String,
    pub elements: Vec<ElementDef>,
    pub(crate) children: FastMap<Box<str>, ChildRef>,
    /// Indexes of the elements with min > 0.
    pub(crate) required: Vec<u32>,
}

impl Structure {
    /// The element a JSON property name stands for, with the chosen type for choice elements
    /// (`valueQuantity` gives `value[x]` and its `Quantity` type).
    pub fn child(&self, json_name: &str) -> Option<(&ElementDef, &ElementType)> {
        let child = self.children.get(json_name)?;
        let element = &self.elements[child.element as usize];
        Some((element, &element.types[child.type_index as usize]))
    }

    pub(crate) fn child_ref(&self, json_name: &str) -> Option<ChildRef> {
        self.children.get(json_name).copied()
    }

    /// The element whose FHIRPath name is `name` (`value` finds `value[x]`).
    pub fn element_named(&self, name: &str) -> Option<&ElementDef> {
        self.elements.iter().find(|e| e.base_name() == name)
    }

    /// The elements with a minimum cardinality above zero.
    pub fn required_elements(&self) -> impl Iterator<Item = &ElementDef> + '_ {
        self.required.iter().map(|i| &self.elements[*i as usize])
    }
}
