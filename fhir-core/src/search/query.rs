//! The typed search query: a search request's parameters parsed once, against the
//! SearchParameters in use (the R4 ones and the custom ones of [`super::registry`]), into criteria (AND of ORs), chains, reverse chains, includes, sort, paging and
//! result shaping. Every backend (SQLite, OpenSearch, the in-memory matcher) interprets this one
//! model.

use super::escape::split_unescaped;
use super::registry;
use super::value::{parse_of_type, parse_token, parse_value, SearchValue};
use crate::definitions::{r4, SearchParamType, SearchParameter};
use crate::history::parse_count;
use crate::outcome::{Issue, IssueType};
use crate::summary::SummaryMode;

/// Page size when a search gives no `_count`.
pub const DEFAULT_SEARCH_COUNT: usize = 50;
/// Deepest chain (`a.b.c...`) or `_has` nesting accepted.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// A search parameter as a query uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamRef {
    pub code: String,
    pub kind: SearchParamType,
    /// Types a reference parameter may point to.
    pub targets: Vec<String>,
    /// The types of a composite's components, in order; empty for other parameters (and for a
    /// composite whose components are unknown, which cannot be searched).
    pub components: Vec<SearchParamType>,
}

impl ParamRef {
    fn of(parameter: &SearchParameter) -> Self {
        let components = parameter
            .component
            .iter()
            .map(|component| registry::search_parameter_by_url(&component.definition).map(|definition| definition.kind))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        ParamRef { code: parameter.code.clone(), kind: parameter.kind, targets: parameter.target.clone(), components }
    }

    /// The types of a composite's components; `None` when they are unknown (not a composite, or
    /// one with an unknown component).
    pub fn composite_components(&self) -> Option<&[SearchParamType]> {
        (self.kind == SearchParamType::Composite && !self.components.is_empty()).then_some(self.components.as_slice())
    }
}

/// Search modifiers (`name:exact`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modifier {
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    In,
    NotIn,
    OfType,
    Identifier,
    /// `subject:Patient`: a reference restricted to one target type.
    Type(String),
}

/// Where a criterion's values are compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamPath {
    /// A parameter of the resource itself.
    Direct { param: ParamRef, modifier: Option<Modifier> },
    /// `via.next`: resources referenced through `via` (of one of `target_types`) match `next`.
    Chain { via: ParamRef, target_types: Vec<String>, next: Box<ParamPath> },
    /// `_has:source_type:via:next`: some `source_type` resource referring to this one through
    /// `via` matches `next`.
    Has { source_type: String, via: ParamRef, next: Box<ParamPath> },
}

impl ParamPath {
    /// The parameter at the end of the path, whose values are compared.
    pub fn leaf(&self) -> (&ParamRef, Option<&Modifier>) {
        match self {
            ParamPath::Direct { param, modifier } => (param, modifier.as_ref()),
            ParamPath::Chain { next, .. } | ParamPath::Has { next, .. } => next.leaf(),
        }
    }
}

/// One query parameter: the resource matches if any of `values` matches (OR). Criteria of a query
/// are combined with AND.
#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    pub path: ParamPath,
    pub values: Vec<SearchValue>,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    /// `None` for `*` (every reference parameter of the source).
    pub source_type: Option<String>,
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub param: ParamRef,
    pub descending: bool,
}

/// `_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// The types searched: one for a type search; `_type` or every type for a system search.
    pub types: Vec<String>,
    pub criteria: Vec<Criterion>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub total: Total,
    pub summary: Option<SummaryMode>,
    pub elements: Vec<String>,
    /// Opaque paging cursor from a next/previous link.
    pub cursor: Option<String>,
    /// The parameters applied, for the self link.
    pub applied: Vec<(String, String)>,
    /// Parameters ignored (unknown or unsupported), as warnings for the response.
    pub ignored: Vec<Issue>,
    /// Restricts the search to one resource's compartment (`Patient/123/Observation?...`).
    pub compartment: Option<CompartmentFilter>,
}

/// The compartment of one resource: resources of the member types that refer to it through
/// their compartment parameters (and, with `include_self`, the resource itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompartmentFilter {
    pub resource_type: String,
    pub id: String,
    /// Member types, each with the parameters that link it to the compartment.
    pub members: Vec<(String, Vec<String>)>,
    pub include_self: bool,
}

impl CompartmentFilter {
    /// The compartment of `resource_type/id` restricted to `types` (all member types when empty);
    /// `None` when `resource_type` defines no compartment.
    pub fn new(resource_type: &str, id: &str, types: &[String], include_self: bool) -> Option<Self> {
        let members = r4().compartment_members(resource_type);
        if members.is_empty() {
            return None;
        }
        let members = members.iter().filter(|(member, _)| types.is_empty() || types.contains(member)).cloned().collect();
        Some(CompartmentFilter { resource_type: resource_type.to_string(), id: id.to_string(), members, include_self })
    }
}

/// Parameters that shape the response rather than select resources, handled elsewhere.
const RESPONSE_PARAMETERS: &[&str] = &["_format", "_pretty"];
/// Parameters of the specification this server does not implement (ignored and reported).
const UNSUPPORTED_PARAMETERS: &[&str] = &["_contained", "_containedType", "_query", "_filter", "_text", "_content", "_list"];

/// Parses a search over `types` (one type, or several/all for a system search). With `strict`
/// (`Prefer: handling=strict`), unknown parameters are errors instead of ignored.
pub fn parse_search(types: Vec<String>, params: &[(String, String)], strict: bool) -> Result<SearchQuery, Vec<Issue>> {
    let mut query = SearchQuery {
        types,
        criteria: Vec::new(),
        include: Vec::new(),
        revinclude: Vec::new(),
        sort: Vec::new(),
        count: DEFAULT_SEARCH_COUNT,
        total: Total::None,
        summary: None,
        elements: Vec::new(),
        cursor: None,
        applied: Vec::new(),
        ignored: Vec::new(),
        compartment: None,
    };
    let mut errors = Vec::new();
    for (name, value) in params {
        match parse_one(&mut query, name, value) {
            Ok(Applied::Yes) => query.applied.push((name.clone(), value.clone())),
            Ok(Applied::Silently) => {}
            Ok(Applied::Ignored(why)) => {
                let issue = Issue::warning(IssueType::NotSupported, format!("parameter {} ignored: {why}", short(name))).at(short(name));
                if strict {
                    errors.push(Issue { severity: crate::Severity::Error, ..issue });
                } else {
                    query.ignored.push(issue);
                }
            }
            Err(issue) => errors.push(issue),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

enum Applied {
    Yes,
    Silently,
    Ignored(String),
}

/// Names are echoed in messages; cut them so a hostile one cannot flood a response.
fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

fn invalid(name: &str, why: impl std::fmt::Display) -> Issue {
    Issue::error(IssueType::Invalid, format!("parameter {}: {why}", short(name))).at(short(name))
}

fn parse_one(query: &mut SearchQuery, name: &str, value: &str) -> Result<Applied, Issue> {
    if RESPONSE_PARAMETERS.contains(&name) {
        return Ok(Applied::Silently);
    }
    if UNSUPPORTED_PARAMETERS.contains(&name) {
        return Ok(Applied::Ignored("not supported by this server".into()));
    }
    match name {
        "_count" => query.count = parse_count(value)?,
        "_cursor" => {
            query.cursor = Some(value.to_string());
            return Ok(Applied::Silently);
        }
        "_total" => {
            query.total = match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                _ => return Err(invalid(name, "must be none, estimate or accurate")),
            }
        }
        "_summary" => {
            query.summary = Some(SummaryMode::parse(value).ok_or_else(|| invalid(name, "must be true, text, data, count or false"))?)
        }
        "_elements" => query.elements.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from)),
        "_type" => {
            // Handled by the caller when it builds `types`; validated here.
            for resource_type in value.split(',') {
                if !r4().is_resource_type(resource_type) {
                    return Err(invalid(name, format!("'{}' is not a resource type", short(resource_type))));
                }
            }
        }
        "_sort" => {
            for key in value.split(',').filter(|k| !k.is_empty()) {
                let (descending, code) = match key.strip_prefix('-') {
                    Some(code) => (true, code),
                    None => (false, key),
                };
                match common_param(&query.types, code) {
                    Some(param) if param.kind != SearchParamType::Composite && param.kind != SearchParamType::Special => {
                        query.sort.push(SortKey { param, descending })
                    }
                    _ => return Ok(Applied::Ignored(format!("cannot sort by '{}'", short(code)))),
                }
            }
        }
        _ if name == "_include" || name.starts_with("_include:") || name == "_revinclude" || name.starts_with("_revinclude:") => {
            let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
            let iterate = match modifier {
                "" => false,
                "iterate" | "recurse" => true,
                other => return Err(invalid(name, format!("unknown modifier ':{}'", short(other)))),
            };
            let include = parse_include(value, iterate).map_err(|why| invalid(name, why))?;
            if base == "_include" {
                query.include.push(include);
            } else {
                query.revinclude.push(include);
            }
        }
        _ => match parse_path(&query.types, name, 0)? {
            None => return Ok(Applied::Ignored("not a search parameter of the searched type".into())),
            Some(path) => {
                let values = parse_values(&path, value).map_err(|why| invalid(name, why))?;
                query.criteria.push(Criterion { path, values });
            }
        },
    }
    Ok(Applied::Yes)
}

/// The parameter `code` if it is defined, with one type (and for a composite, the same
/// components), on every type in `types` (all types when empty: then only the resource-level
/// parameters); the targets are those of every type.
fn common_param(types: &[String], code: &str) -> Option<ParamRef> {
    if types.is_empty() {
        return registry::resource_level(code).map(ParamRef::of);
    }
    let mut found: Option<ParamRef> = None;
    for resource_type in types {
        let parameter = ParamRef::of(registry::search_parameter(resource_type, code)?);
        match &mut found {
            Some(first) if first.kind != parameter.kind || first.components != parameter.components => return None,
            Some(first) => {
                for target in parameter.targets {
                    if !first.targets.contains(&target) {
                        first.targets.push(target);
                    }
                }
            }
            None => found = Some(parameter),
        }
    }
    found
}

/// Parses a parameter name (`name:exact`, `subject:Patient.name`, `_has:Observation:patient:code`).
/// `Ok(None)` means the name is not a parameter of these types.
fn parse_path(types: &[String], name: &str, depth: usize) -> Result<Option<ParamPath>, Issue> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(invalid(name, format!("chains and _has may nest at most {MAX_CHAIN_DEPTH} deep")));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(source_type), Some(via_code), Some(next)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(name, "_has must be _has:Type:reference-parameter:parameter"));
        };
        if !r4().is_resource_type(source_type) {
            return Err(invalid(name, format!("'{}' is not a resource type", short(source_type))));
        }
        let source_types = vec![source_type.to_string()];
        let via = match common_param(&source_types, via_code) {
            Some(via) if via.kind == SearchParamType::Reference => via,
            _ => return Err(invalid(name, format!("'{}' is not a reference parameter of {source_type}", short(via_code)))),
        };
        let next = parse_path(&source_types, next, depth + 1)?.ok_or_else(|| invalid(name, "the last part is not a parameter of the referring type"))?;
        return Ok(Some(ParamPath::Has { source_type: source_type.to_string(), via, next: Box::new(next) }));
    }
    let (head, tail) = match name.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (name, None),
    };
    let (code, modifier_text) = match head.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (head, None),
    };
    let Some(param) = common_param(types, code) else { return Ok(None) };
    let Some(tail) = tail else {
        let modifier = modifier_text.map(|text| parse_modifier(&param, text)).transpose().map_err(|why| invalid(name, why))?;
        return Ok(Some(ParamPath::Direct { param, modifier }));
    };
    if param.kind != SearchParamType::Reference {
        return Err(invalid(name, format!("'{code}' is not a reference parameter, so it cannot be chained")));
    }
    let target_types = match modifier_text {
        Some(target) if param.targets.iter().any(|t| t == target) || (param.targets.is_empty() && r4().is_resource_type(target)) => {
            vec![target.to_string()]
        }
        Some(target) => return Err(invalid(name, format!("'{}' is not a target type of '{code}'", short(target)))),
        None => {
            let next_code = tail.split(['.', ':']).next().unwrap_or("");
            let candidates: Vec<String> = param.targets.iter().filter(|t| common_param(std::slice::from_ref(*t), next_code).is_some()).cloned().collect();
            if candidates.is_empty() {
                return Err(invalid(name, format!("no target type of '{code}' has a parameter '{}'", short(next_code))));
            }
            candidates
        }
    };
    let next = parse_path(&target_types, tail, depth + 1)?
        .ok_or_else(|| invalid(name, "the chained parameter is not defined on the target type"))?;
    Ok(Some(ParamPath::Chain { via: param, target_types, next: Box::new(next) }))
}

fn parse_modifier(param: &ParamRef, text: &str) -> Result<Modifier, String> {
    use SearchParamType as Kind;
    let modifier = match (text, param.kind) {
        ("missing", _) => Modifier::Missing,
        ("exact", Kind::String) => Modifier::Exact,
        ("contains", Kind::String | Kind::Uri) => Modifier::Contains,
        ("text", Kind::Token | Kind::String) => Modifier::Text,
        ("not", Kind::Token) => Modifier::Not,
        ("above", Kind::Uri) => Modifier::Above,
        ("below", Kind::Uri) => Modifier::Below,
        ("in", Kind::Token) => Modifier::In,
        ("not-in", Kind::Token) => Modifier::NotIn,
        ("of-type", Kind::Token) => Modifier::OfType,
        ("identifier", Kind::Reference) => Modifier::Identifier,
        (target, Kind::Reference) if r4().is_resource_type(target) => {
            if !param.targets.is_empty() && !param.targets.iter().any(|t| t == target) {
                return Err(format!("'{target}' is not a target type of '{}'", param.code));
            }
            Modifier::Type(target.to_string())
        }
        (other, _) => return Err(format!("modifier ':{}' is not supported on a {:?} parameter", short(other), param.kind)),
    };
    Ok(modifier)
}

fn parse_values(path: &ParamPath, value: &str) -> Result<Vec<SearchValue>, String> {
    let (param, modifier) = path.leaf();
    if modifier == Some(&Modifier::Missing) {
        return match value {
            "true" => Ok(vec![SearchValue::Missing(true)]),
            "false" => Ok(vec![SearchValue::Missing(false)]),
            _ => Err(":missing must be true or false".into()),
        };
    }
    split_unescaped(value, ',')
        .into_iter()
        .map(|raw| match (param.kind, modifier) {
            (SearchParamType::Token, Some(Modifier::Text | Modifier::In | Modifier::NotIn)) => {
                parse_value(SearchParamType::String, raw)
            }
            (SearchParamType::Token, Some(Modifier::OfType)) => parse_of_type(raw),
            // Ids have no system: `_id=sys|1` is a mistake, not a search for id 1.
            (SearchParamType::Token, _) if param.code == "_id" => match parse_token(raw)? {
                value @ SearchValue::Token { system: None, code: Some(_) } => Ok(value),
                _ => Err("_id takes plain ids, without a system".into()),
            },
            (SearchParamType::Reference, Some(Modifier::Identifier)) => parse_token(raw),
            (SearchParamType::Reference, Some(Modifier::Type(target))) if !raw.contains('/') => {
                parse_value(SearchParamType::Reference, &format!("{target}/{raw}"))
            }
            (SearchParamType::Composite, _) => parse_composite(param, raw),
            (SearchParamType::Special, _) => Err("special parameters are not supported".into()),
            (kind, _) => parse_value(kind, raw),
        })
        .collect()
}

fn parse_composite(param: &ParamRef, raw: &str) -> Result<SearchValue, String> {
    let kinds = param.composite_components().ok_or("unknown composite parameter")?;
    let parts = split_unescaped(raw, '$');
    if parts.len() != kinds.len() {
        return Err(format!("a composite value needs {} parts separated by $", kinds.len()));
    }
    kinds.iter().zip(parts).map(|(kind, part)| parse_value(*kind, part)).collect::<Result<_, _>>().map(SearchValue::Composite)
}

fn parse_include(value: &str, iterate: bool) -> Result<Include, String> {
    if value == "*" {
        return Ok(Include { source_type: None, param: None, target_type: None, iterate });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, param, target_type) = match parts.as_slice() {
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some(*target)),
        _ => return Err("must be Type:parameter[:targetType] or *".into()),
    };
    if !r4().is_resource_type(source_type) {
        return Err(format!("'{}' is not a resource type", short(source_type)));
    }
    if param != "*" {
        match registry::search_parameter(source_type, param) {
            Some(p) if p.kind == SearchParamType::Reference => {}
            _ => return Err(format!("'{}' is not a reference parameter of {source_type}", short(param))),
        }
    }
    if let Some(target) = target_type {
        if !r4().is_resource_type(target) {
            return Err(format!("'{}' is not a resource type", short(target)));
        }
    }
    Ok(Include {
        source_type: Some(source_type.to_string()),
        param: (param != "*").then(|| param.to_string()),
        target_type: target_type.map(String::from),
        iterate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::value::Prefix;

    fn parse(resource_type: &str, query: &str) -> Result<SearchQuery, Vec<Issue>> {
        let params: Vec<(String, String)> = form_pairs(query);
        parse_search(vec![resource_type.to_string()], &params, false)
    }

    fn form_pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn and_or_and_modifiers() {
        let query = parse("Patient", "name=smith,jones&name:exact=Smith&gender=female&birthdate=ge1990&birthdate=lt2000").unwrap();
        assert_eq!(query.criteria.len(), 5);
        assert_eq!(query.criteria[0].values.len(), 2);
        assert!(matches!(query.criteria[1].path, ParamPath::Direct { modifier: Some(Modifier::Exact), .. }));
        assert!(matches!(query.criteria[3].values[0], SearchValue::Date { prefix: Prefix::Ge, .. }));
    }

    #[test]
    fn chains_and_has() {
        let query = parse("Observation", "subject:Patient.name=peter&patient.organization.name=acme").unwrap();
        let ParamPath::Chain { via, target_types, next } = &query.criteria[0].path else { panic!() };
        assert_eq!(via.code, "subject");
        assert_eq!(target_types, &vec!["Patient".to_string()]);
        assert!(matches!(next.as_ref(), ParamPath::Direct { param, .. } if param.code == "name"));
        assert!(matches!(&query.criteria[1].path, ParamPath::Chain { next, .. } if matches!(next.as_ref(), ParamPath::Chain { .. })));

        let query = parse("Patient", "_has:Observation:patient:code=1234-5").unwrap();
        let ParamPath::Has { source_type, via, .. } = &query.criteria[0].path else { panic!() };
        assert_eq!((source_type.as_str(), via.code.as_str()), ("Observation", "patient"));
        assert!(parse("Patient", "_has:Observation:code:code=1").is_err(), "code is not a reference");
        assert!(parse("Observation", "code.name=x").is_err(), "tokens cannot be chained");
        assert!(parse("Observation", "a.b.c.d.e.f.g=1").is_ok_and(|q| q.criteria.is_empty()), "unknown heads are ignored");
    }

    #[test]
    fn unknown_parameters_are_reported_or_strict_errors() {
        let query = parse("Patient", "foo=bar&name=x").unwrap();
        assert_eq!(query.criteria.len(), 1);
        assert_eq!(query.ignored.len(), 1);
        assert_eq!(query.applied, vec![("name".to_string(), "x".to_string())]);
        let strict = parse_search(vec!["Patient".into()], &form_pairs("foo=bar"), true);
        assert!(strict.is_err());
    }

    #[test]
    fn bad_values_and_modifiers_are_errors() {
        assert!(parse("Patient", "birthdate=yesterday").is_err());
        assert!(parse("Patient", "name:frobnicate=x").is_err());
        assert!(parse("Patient", "gender:exact=female").is_err(), ":exact is for strings");
        assert!(parse("Patient", "name:missing=maybe").is_err());
        assert!(parse("Patient", "_count=abc").is_err());
        assert!(parse("Patient", "_total=sometimes").is_err());
        assert!(parse("Patient", "_id=http://example.org|1").is_err(), "ids have no system");
    }

    #[test]
    fn result_parameters() {
        let query = parse(
            "Encounter",
            "_include=Encounter:practitioner&_revinclude:iterate=Observation:encounter&_sort=-date,_id&_count=10&_total=accurate&_summary=count&_elements=status,class",
        )
        .unwrap();
        assert_eq!(query.include[0].param.as_deref(), Some("practitioner"));
        assert!(query.revinclude[0].iterate);
        assert_eq!(query.sort.len(), 2);
        assert!(query.sort[0].descending);
        assert_eq!(query.count, 10);
        assert_eq!(query.total, Total::Accurate);
        assert_eq!(query.summary, Some(SummaryMode::Count));
        assert_eq!(query.elements, vec!["status", "class"]);
        assert!(parse("Encounter", "_include=Encounter:status").is_err());
    }

    #[test]
    fn composites_tokens_and_references() {
        let query = parse("Observation", "code-value-quantity=http://loinc.org|8480-6$gt100&subject:Patient=123&subject:identifier=http://mrn|7").unwrap();
        assert!(matches!(&query.criteria[0].values[0], SearchValue::Composite(parts) if parts.len() == 2));
        assert!(matches!(&query.criteria[1].values[0], SearchValue::Reference(r) if r.resource_type.as_deref() == Some("Patient")));
        assert!(matches!(&query.criteria[2].values[0], SearchValue::Token { .. }));
        assert!(parse("Observation", "code-value-quantity=8480-6").is_err());
    }

    #[test]
    fn system_search_uses_common_parameters() {
        let query = parse_search(vec![], &form_pairs("_id=1&_lastUpdated=gt2020"), false).unwrap();
        assert_eq!(query.criteria.len(), 2);
        let query = parse_search(vec!["Patient".into(), "Practitioner".into()], &form_pairs("name=x&gender=male"), false).unwrap();
        assert_eq!(query.criteria.len(), 2);
    }
}
