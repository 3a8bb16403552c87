//! The R4 definitions: types and their elements, SearchParameters, and the value sets of
//! required bindings.
//!
//! They come from `data/r4-definitions.json`, which `scripts/gen-definitions` generates from the
//! official `hl7.fhir.r4.examples@4.0.1` package and which is compiled into the crate; [`r4()`]
//! parses it on first use.
//!
//! Layout:
//! - [`model`]: types, structures (the element table of a resource, datatype or backbone
//!   element) and elements.
//! - [`search`]: SearchParameter definitions.
//! - [`value_set`]: expanded value sets.
//! - `data`: the file format; `build`: turning it into lookup tables.

mod build;
mod data;
mod fast_hash;
pub mod model;
pub mod search;
pub mod value_set;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::LazyLock;

pub use model::{
    Binding, ElementDef, ElementType, JsonType, Max, Primitive, Structure, StructureId, TypeDef, TypeKind, TypeTarget,
};
pub use search::{SearchParamType, SearchParameter, SearchParameterComponent};
pub use value_set::ValueSet;

const R4_DATA: &str = include_str!("../../data/r4-definitions.json");

static R4: LazyLock<Definitions> = LazyLock::new(|| match Definitions::from_json(R4_DATA) {
    Ok(definitions) => definitions,
    // The file is part of the build, checked by the tests: failing here is a build defect.
    Err(error) => panic!("the bundled R4 definitions are invalid: {error}"),
});

/// The R4 (4.0.1) definitions, loaded on first use.
pub fn r4() -> &'static Definitions {
    &R4
}

/// A definitions file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("definitions file is not valid JSON of the expected shape: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("definitions file is inconsistent: {0}")]
    Invalid(String),
}

/// An element found by [`Definitions::element`].
#[derive(Clone, Copy, Debug)]
pub struct ResolvedElement<'a> {
    pub element: &'a ElementDef,
    /// The type at that path when it is known: the only type, or the type a choice element's
    /// JSON name selects (`valueQuantity`). `None` for a choice element named without a type.
    pub element_type: Option<&'a ElementType>,
}

/// Everything the server knows about R4 types, search parameters and required value sets.
pub struct Definitions {
    fhir_version: String,
    types: HashMap<String, TypeDef>,
    resource_types: Vec<String>,
    structures: Vec<Structure>,
    structure_by_path: HashMap<String, StructureId>,
    element_structure: StructureId,
    primitive_regexes: HashMap<Primitive, String>,
    search_parameters: Vec<SearchParameter>,
    search_by_type: HashMap<String, Vec<usize>>,
    value_sets: Vec<ValueSet>,
    value_set_index: HashMap<String, usize>,
    /// Per compartment type (`Patient`, `Encounter`, ...): each member resource type and the
    /// search parameters that place it in the compartment.
    compartments: HashMap<String, Vec<(String, Vec<String>)>>,
}

impl Definitions {
    /// Parses a definitions file in the format `scripts/gen_definitions.py` writes.
    pub fn from_json(json: &str) -> Result<Self, DefinitionsError> {
        build::build(serde_json::from_str(json)?)
    }

    /// `4.0.1`.
    pub fn fhir_version(&self) -> &str {
        &self.fhir_version
    }

    /// Whether `name` is a concrete R4 resource type (not `Resource` or `DomainResource`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.types.get(name).is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    /// The concrete resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> + '_ {
        self.resource_types.iter().map(String::as_str)
    }

    /// Whether resources of this type have `text`, `contained` and extensions (all but Bundle,
    /// Binary and Parameters).
    pub fn is_domain_resource(&self, resource_type: &str) -> bool {
        self.types.get(resource_type).and_then(|t| t.base.as_deref()) == Some("DomainResource")
    }

    /// A type by name: resource, datatype, primitive, `SimpleQuantity` or `MoneyQuantity`.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// The element table of a resource or complex type.
    pub fn structure_of_type(&self, name: &str) -> Option<&Structure> {
        self.types.get(name)?.structure.map(|id| self.structure(id))
    }

    /// The element table of a resource, datatype or backbone element by path: `Patient`,
    /// `Patient.contact`, `HumanName`.
    pub fn structure_at(&self, path: &str) -> Option<&Structure> {
        self.structure_by_path.get(path).map(|id| self.structure(*id))
    }

    /// The element table of a structure, e.g. one an element type's [`TypeTarget::Complex`]
    /// points to.
    pub fn structure(&self, id: StructureId) -> &Structure {
        &self.structures[id.0 as usize]
    }

    /// The structure of `_name` objects beside primitive values (`Element`: `id`, `extension`).
    pub fn primitive_extension_structure(&self) -> &Structure {
        self.structure(self.element_structure)
    }

    /// The spec's regex for a primitive's values (from its StructureDefinition), if it has one.
    pub fn primitive_regex(&self, primitive: Primitive) -> Option<&str> {
        self.primitive_regexes.get(&primitive).map(String::as_str)
    }

    /// Finds an element by type and dotted path, following datatypes, backbone elements and
    /// content references: `element("Observation", "valueQuantity.unit")`,
    /// `element("Questionnaire", "item.item.linkId")`. The path may start with the type name.
    /// A choice element is found by its JSON name (`valueQuantity`, which also fixes the type)
    /// or by its FHIRPath name (`value`, or `value[x]`).
    pub fn element(&self, type_name: &str, path: &str) -> Option<ResolvedElement<'_>> {
        let mut structure = self.structure_of_type(type_name)?;
        let relative = match path.strip_prefix(type_name) {
            Some(rest) if rest.starts_with('.') => &rest[1..],
            _ => path,
        };
        let mut segments = relative.split('.').peekable();
        while let Some(segment) = segments.next() {
            let found = match structure.child(segment) {
                Some((element, ty)) => ResolvedElement { element, element_type: Some(ty) },
                None => {
                    let element = structure.element_named(segment.strip_suffix("[x]").unwrap_or(segment))?;
                    let element_type = if element.types.len() == 1 { element.types.first() } else { None };
                    ResolvedElement { element, element_type }
                }
            };
            if segments.peek().is_none() {
                return Some(found);
            }
            match found.element_type?.target {
                TypeTarget::Complex(id) => structure = self.structure(id),
                TypeTarget::Primitive(_) | TypeTarget::Resource => return None,
            }
        }
        None
    }

    /// Every SearchParameter of the package (1,400), the spec's own ones marked
    /// [`SearchParameter::core`].
    pub fn search_parameters(&self) -> &[SearchParameter] {
        &self.search_parameters
    }

    /// The spec's search parameters that apply to a resource type, including those defined on
    /// `Resource` and `DomainResource`, sorted by code. Empty for an unknown type.
    pub fn search_parameters_for(&self, resource_type: &str) -> impl Iterator<Item = &SearchParameter> + '_ {
        self.search_by_type
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|i| &self.search_parameters[*i])
    }

    /// The spec's search parameter with that code for a resource type.
    pub fn search_parameter(&self, resource_type: &str, code: &str) -> Option<&SearchParameter> {
        let indexes = self.search_by_type.get(resource_type)?;
        let found = indexes.binary_search_by(|i| self.search_parameters[*i].code.as_str().cmp(code)).ok()?;
        Some(&self.search_parameters[indexes[found]])
    }

    /// The types of the components of the spec's composite parameter `code`, in order; `None`
    /// for an unknown composite or a component whose definition is missing. (Composites are not
    /// shared across types, so the code names one.)
    pub fn composite_component_kinds(&self, code: &str) -> Option<Vec<SearchParamType>> {
        let composite = self.search_parameters.iter().find(|p| p.core && p.code == code && p.kind == SearchParamType::Composite)?;
        composite.component.iter().map(|component| self.search_parameter_by_url(&component.definition).map(|p| p.kind)).collect()
    }

    /// A search parameter by canonical URL (what composite components refer to).
    pub fn search_parameter_by_url(&self, url: &str) -> Option<&SearchParameter> {
        self.search_parameters.iter().find(|sp| sp.url == url)
    }

    /// A value set used by a required binding, by canonical URL (without version).
    pub fn value_set(&self, url: &str) -> Option<&ValueSet> {
        let index = self.value_set_index.get(url.split('|').next().unwrap_or(url))?;
        self.value_sets.get(*index)
    }

    /// Whether a bare code is in a required binding's value set; `None` when that cannot be
    /// checked (unknown value set, or one with codes from outside the package).
    pub fn value_set_contains_code(&self, url: &str, code: &str) -> Option<bool> {
        let value_set = self.value_set(url)?;
        value_set.is_checkable().then(|| value_set.contains_code(code))
    }

    /// The resource types that define a compartment, sorted.
    pub fn compartment_types(&self) -> impl Iterator<Item = &str> {
        let mut types: Vec<&str> = self.compartments.keys().map(String::as_str).collect();
        types.sort_unstable();
        types.into_iter()
    }

    /// The resource types in the compartment of a `compartment` resource (`Patient`, `Encounter`,
    /// `Practitioner`, `RelatedPerson`, `Device`), each with the parameters that link them to it.
    pub fn compartment_members(&self, compartment: &str) -> &[(String, Vec<String>)] {
        self.compartments.get(compartment).map_or(&[], Vec::as_slice)
    }

    /// The value sets of required bindings, checkable or not.
    pub fn value_sets(&self) -> impl Iterator<Item = &ValueSet> + '_ {
        self.value_sets.iter()
    }

    /// The value set of a binding, without a lookup by URL.
    pub fn binding_value_set(&self, binding: &Binding) -> Option<&ValueSet> {
        self.value_sets.get(binding.index?)
    }
}
