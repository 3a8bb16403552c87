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

impl SearchParameter {
    /// A custom parameter (`core: false`) from an R4 SearchParameter resource, as an
    /// Implementation Guide package or a client provides it; checked as
    /// [`SearchParameter::check_custom`] does. The errors name the parameter by url (or code) but
    /// quote nothing else from it.
    pub fn from_resource(resource: &serde_json::Value) -> Result<SearchParameter, String> {
        use serde_json::Value;
        let text = |key: &str| resource.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(String::from);
        let texts = |key: &str| -> Vec<String> {
            resource.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
        };
        if resource.get("resourceType").and_then(Value::as_str) != Some("SearchParameter") {
            return Err("not a SearchParameter resource".into());
        }
        let url = text("url").ok_or("a SearchParameter needs a url")?;
        let fail = |why: &str| format!("SearchParameter {}: {why}", shortened(&url));
        let code = text("code").ok_or_else(|| fail("code is missing"))?;
        let kind = resource.get("type").ok_or_else(|| fail("type is missing"))?;
        let kind = SearchParamType::deserialize(kind).map_err(|_| fail("type is not a search parameter type"))?;
        let component = resource
            .get("component")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|component| {
                let part = |key: &str| component.get(key).and_then(Value::as_str).map(String::from);
                Some(SearchParameterComponent { definition: part("definition")?, expression: part("expression")? })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| fail("a component lacks its definition or expression"))?;
        let parameter = SearchParameter {
            name: text("name").unwrap_or_else(|| code.clone()),
            code,
            base: texts("base"),
            kind,
            expression: text("expression"),
            target: texts("target"),
            modifier: texts("modifier"),
            comparator: texts("comparator"),
            chain: texts("chain"),
            multiple_or: resource.get("multipleOr").and_then(Value::as_bool),
            multiple_and: resource.get("multipleAnd").and_then(Value::as_bool),
            component,
            core: false,
            url,
        };
        parameter.check_custom()?;
        Ok(parameter)
    }

    /// Whether this parameter can be used as a custom one: a code usable in a query string,
    /// R4 resource types (or `Resource`, `DomainResource`) as its base, an expression (and
    /// component expressions) that compile, and a type other than `special`, which has no
    /// meaning beyond its description.
    pub fn check_custom(&self) -> Result<(), String> {
        let fail = |why: &str| Err(format!("SearchParameter {}: {why}", shortened(&self.url)));
        let mut code = self.code.chars();
        let code_is_valid = code.next().is_some_and(|first| first.is_ascii_alphanumeric())
            && code.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if !code_is_valid {
            return fail("code must match [A-Za-z0-9][A-Za-z0-9_-]* (a dot would read as a chain)");
        }
        if self.base.is_empty() {
            return fail("base is missing");
        }
        let definitions = super::r4();
        if !self.base.iter().all(|base| base == "Resource" || base == "DomainResource" || definitions.is_resource_type(base)) {
            return fail("a base is not an R4 resource type");
        }
        if self.kind == SearchParamType::Special {
            return fail("type special is not supported");
        }
        let Some(expression) = &self.expression else { return fail("expression is missing") };
        if crate::fhirpath::compile(expression).is_err() {
            return fail("expression is not valid FHIRPath");
        }
        if self.component.iter().any(|component| crate::fhirpath::compile(&component.expression).is_err()) {
            return fail("a component expression is not valid FHIRPath");
        }
        if self.kind == SearchParamType::Composite && self.component.is_empty() {
            return fail("a composite needs components");
        }
        Ok(())
    }
}

/// A url as errors quote it: a hostile one cannot flood a response or a log line.
fn shortened(url: &str) -> String {
    url.chars().take(200).collect()
}
