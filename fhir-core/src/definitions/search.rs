//! R4 SearchParameter definitions, as the search code needs them.

use serde::Deserialize;

/// `SearchParameter.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl SearchParamType {
    /// The code, as in `SearchParameter.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchParamType::Number => "number",
            SearchParamType::Date => "date",
            SearchParamType::String => "string",
            SearchParamType::Token => "token",
            SearchParamType::Reference => "reference",
            SearchParamType::Composite => "composite",
            SearchParamType::Quantity => "quantity",
            SearchParamType::Uri => "uri",
            SearchParamType::Special => "special",
        }
    }
}

/// `SearchParameter.component`: one part of a composite parameter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParameterComponent {
    /// Canonical URL of the SearchParameter this component uses.
    pub definition: String,
    /// FHIRPath, relative to the value the composite's expression selects.
    pub expression: String,
}

/// One SearchParameter of the R4 package.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchParameter {
    pub url: String,
    pub name: String,
    /// The name used in a query string: `birthdate`, `_id`.
    pub code: String,
    /// Resource types it applies to; `Resource` and `DomainResource` stand for all of them.
    #[serde(default)]
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub kind: SearchParamType,
    /// FHIRPath selecting the values to index. Absent for a few (`_text`, `_content`, `_query`,
    /// `_filter`, and some extension-based parameters) that have none.
    pub expression: Option<String>,
    /// Resource types a reference parameter may point to.
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub modifier: Vec<String>,
    /// Prefixes allowed (`eq`, `gt`, ...) on number, date and quantity parameters.
    #[serde(default)]
    pub comparator: Vec<String>,
    #[serde(default)]
    pub chain: Vec<String>,
    pub multiple_or: Option<bool>,
    pub multiple_and: Option<bool>,
    #[serde(default)]
    pub component: Vec<SearchParameterComponent>,
    /// Part of the spec's own list of search parameters (`search-parameters.json`, 1,375 of
    /// them). The package's other 25 are examples (`SearchParameter/example`) and
    /// extension-based definitions; they are kept for completeness but never returned by
    /// [`super::Definitions::search_parameters_for`].
    pub core: bool,
}

impl SearchParameter {
    /// Whether this parameter applies to resources of `resource_type`, given whether that type
    /// is a DomainResource.
    pub(crate) fn applies_to(&self, resource_type: &str, is_domain_resource: bool) -> bool {
        self.base
            .iter()
            .any(|base| base == resource_type || base == "Resource" || (base == "DomainResource" && is_domain_resource))
    }
}
