//! The format of `data/r4-definitions.json`, as written by `scripts/gen_definitions.py`.
//!
//! Only the generator and [`super::build`] should need to know it; the rest of the crate uses the
//! lookup structures built from it.

use serde::Deserialize;

use super::search::SearchParameter;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DataFile {
    pub fhir_version: String,
    #[allow(dead_code)]
    pub source: String,
    pub primitives: Vec<PrimitiveRecord>,
    pub types: Vec<TypeRecord>,
    pub elements: Vec<ElementRecord>,
    pub search_parameters: Vec<SearchParameter>,
    pub value_sets: Vec<ValueSetRecord>,
    pub compartments: Vec<CompartmentRecord>,
}

/// One resource type's membership in a compartment (from the CompartmentDefinitions): a
/// resource is in the compartment of X when one of `params` refers to X.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompartmentRecord {
    pub compartment: String,
    pub resource: String,
    pub params: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrimitiveRecord {
    pub name: String,
    pub regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypeRecord {
    pub name: String,
    pub kind: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub base: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ElementRecord {
    pub path: String,
    pub min: u32,
    pub max: String,
    #[serde(default)]
    pub types: Vec<String>,
    pub profile: Option<String>,
    #[serde(default)]
    pub summary: bool,
    #[serde(default)]
    pub modifier: bool,
    pub content_reference: Option<String>,
    pub binding: Option<BindingRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BindingRecord {
    #[allow(dead_code)]
    pub strength: String,
    pub value_set: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueSetRecord {
    pub url: String,
    pub checkable: bool,
    pub reason: Option<String>,
    #[serde(default)]
    pub include: Vec<IncludeRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncludeRecord {
    pub system: String,
    pub codes: Vec<String>,
}
