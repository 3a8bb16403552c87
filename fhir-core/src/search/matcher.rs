//! The query model interpreted in memory: whether one resource at hand matches a query's
//! criteria, compared on the values [`super::extract`] gives it, with the semantics of the index
//! backends (the search corpus runs through it as well). Used where there is a resource and no
//! index to ask: SMART query-restricted scopes, compartment membership of a body being written,
//! subscription criteria.
//!
//! Chains and `_has` look at other resources, so they are not interpreted here.

use serde_json::Value;

use super::extract::extract;
use super::index::{normalize, IndexEntry, IndexValue};
use super::query::{CompartmentFilter, Criterion, Modifier, ParamPath, ParamRef};
use super::value::{Decimal, Prefix, ReferenceValue, SearchValue};
use crate::definitions::{r4, SearchParamType};
use crate::instant::{now, parse_range, unix_millis};

/// Parameters that shape results rather than select resources: they mean nothing to one resource.
const NOT_CRITERIA: &[&str] = &["_include", "_revinclude", "_sort", "_count", "_summary", "_elements", "_total", "_contained", "_containedType"];

/// The criteria of a query string (`category=laboratory`) on `resource_type`, to match single
/// resources with: criteria only (no `_include`, `_sort`, `_count`, ...) and none that look at
/// other resources (chains, `_has`). Unknown parameters are errors. The error says why.
pub fn query_criteria(resource_type: &str, query: &str) -> Result<Vec<Criterion>, String> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if let Some((name, _)) = params.iter().find(|(name, _)| NOT_CRITERIA.contains(&name.split(':').next().unwrap_or(name))) {
        return Err(format!("only criteria that select resources are allowed here: {name} has no meaning"));
    }
    let parsed = super::parse_search(vec![resource_type.to_string()], &params, true)
        .map_err(|issues| issues.iter().map(|issue| issue.diagnostics.clone()).collect::<Vec<_>>().join("; "))?;
    if parsed.criteria.iter().any(|criterion| !matches!(criterion.path, ParamPath::Direct { .. })) {
        return Err("chained parameters and _has look at other resources and are not allowed here".into());
    }
    Ok(parsed.criteria)
}

/// Why a criterion cannot be decided in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// One resource with its extracted search values, ready to be matched many times.
pub struct Candidate<'a> {
    resource: &'a Value,
    entries: Vec<IndexEntry>,
}

impl<'a> Candidate<'a> {
    pub fn new(resource: &'a Value) -> Self {
        Candidate { resource, entries: extract(resource) }
    }

    pub fn resource_type(&self) -> &str {
        self.resource.get("resourceType").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        self.resource.get("id").and_then(Value::as_str).unwrap_or_default()
    }

    /// Whether every criterion matches (criteria are ANDed, each one's values ORed).
    pub fn matches(&self, criteria: &[Criterion]) -> Result<bool, Unsupported> {
        for criterion in criteria {
            if !self.criterion(criterion)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the resource is in `compartment`: it is the compartment's own resource (when
    /// that counts), or a member type referring to it through one of the member's parameters.
    pub fn in_compartment(&self, compartment: &CompartmentFilter) -> bool {
        let resource_type = self.resource_type();
        if compartment.include_self && resource_type == compartment.resource_type && self.id() == compartment.id {
            return true;
        }
        let Some((_, params)) = compartment.members.iter().find(|(member, _)| member == resource_type) else { return false };
        self.entries.iter().any(|entry| {
            params.contains(&entry.param)
                && matches!(&entry.value, IndexValue::Reference { resource_type: Some(t), id: Some(id), .. }
                    if *t == compartment.resource_type && *id == compartment.id)
        })
    }

    /// The ids of the `compartment_type` resources whose compartment this resource is in
    /// through its member parameters (not counting a resource's own compartment).
    pub fn compartment_owners(&self, compartment_type: &str) -> Vec<&str> {
        let members = r4().compartment_members(compartment_type);
        let Some((_, params)) = members.iter().find(|(member, _)| member == self.resource_type()) else { return Vec::new() };
        let mut owners: Vec<&str> = self
            .entries
            .iter()
            .filter(|entry| params.contains(&entry.param))
            .filter_map(|entry| match &entry.value {
                IndexValue::Reference { resource_type: Some(t), id: Some(id), .. } if t == compartment_type => Some(id.as_str()),
                _ => None,
            })
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    fn criterion(&self, criterion: &Criterion) -> Result<bool, Unsupported> {
        match &criterion.path {
            ParamPath::Direct { param, modifier } => self.direct(param, modifier.as_ref(), &criterion.values),
            ParamPath::Chain { .. } | ParamPath::Has { .. } => {
                Err(Unsupported("chained parameters and _has look at other resources and cannot be matched against one resource".into()))
            }
        }
    }

    fn direct(&self, param: &ParamRef, modifier: Option<&Modifier>, values: &[SearchValue]) -> Result<bool, Unsupported> {
        if let [SearchValue::Missing(missing)] = values {
            return self.missing(param, *missing);
        }
        match param.code.as_str() {
            "_id" => return self.id_matches(modifier, values),
            "_lastUpdated" => return self.last_updated_matches(values),
            _ => {}
        }
        if param.kind == SearchParamType::Composite {
            return self.composite(param, values);
        }
        let stored = match modifier {
            Some(Modifier::Identifier) => format!("{}:identifier", param.code),
            Some(Modifier::OfType) => format!("{}:of-type", param.code),
            _ => param.code.clone(),
        };
        let negate = param.kind == SearchParamType::Token && matches!(modifier, Some(Modifier::Not | Modifier::NotIn));
        let mut found = false;
        for entry in self.entries.iter().filter(|entry| entry.param == stored) {
            for value in values {
                if value_matches(param.kind, modifier, value, &entry.value)? {
                    found = true;
                }
            }
        }
        Ok(found != negate)
    }

    fn missing(&self, param: &ParamRef, missing: bool) -> Result<bool, Unsupported> {
        if param.kind == SearchParamType::Composite {
            return Err(Unsupported(":missing is not supported on composite parameters".into()));
        }
        if matches!(param.code.as_str(), "_id" | "_lastUpdated") {
            return Ok(!missing);
        }
        let identifier = format!("{}:identifier", param.code);
        let present = self.entries.iter().any(|entry| {
            entry.param == param.code || (param.kind == SearchParamType::Reference && entry.param == identifier)
        });
        Ok(present != missing)
    }

    fn id_matches(&self, modifier: Option<&Modifier>, values: &[SearchValue]) -> Result<bool, Unsupported> {
        let mut found = false;
        for value in values {
            let SearchValue::Token { code: Some(code), .. } = value else { return Err(Unsupported("_id takes plain ids".into())) };
            found |= code == self.id();
        }
        Ok(found != matches!(modifier, Some(Modifier::Not)))
    }

    fn last_updated_matches(&self, values: &[SearchValue]) -> Result<bool, Unsupported> {
        let stored = self.resource.pointer("/meta/lastUpdated").and_then(Value::as_str).and_then(parse_range);
        let Some((at, _)) = stored else { return Ok(false) };
        let low = unix_millis(at);
        let mut found = false;
        for value in values {
            let SearchValue::Date { prefix, start, end } = value else { return Err(Unsupported("_lastUpdated takes dates".into())) };
            // A stored instant covers its millisecond.
            found |= in_range(low, low + 1, *prefix, unix_millis(*start), unix_millis(*end));
        }
        Ok(found)
    }

    /// A composite matches when one occurrence has every component matching.
    fn composite(&self, param: &ParamRef, values: &[SearchValue]) -> Result<bool, Unsupported> {
        let kinds = param.composite_components().ok_or_else(|| Unsupported("unknown composite parameter".into()))?;
        let first = format!("{}$0", param.code);
        for value in values {
            let SearchValue::Composite(parts) = value else { return Err(Unsupported("composite values need $".into())) };
            for group in self.entries.iter().filter(|entry| entry.param == first).map(|entry| entry.group) {
                let mut all = true;
                for (n, (kind, part)) in kinds.iter().zip(parts).enumerate() {
                    let name = format!("{}${n}", param.code);
                    let mut component = false;
                    for entry in self.entries.iter().filter(|entry| entry.group == group && entry.param == name) {
                        component |= value_matches(*kind, None, part, &entry.value)?;
                    }
                    all &= component;
                }
                if all {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// Whether one searched value matches one stored value of a parameter of `kind`.
fn value_matches(kind: SearchParamType, modifier: Option<&Modifier>, value: &SearchValue, stored: &IndexValue) -> Result<bool, Unsupported> {
    Ok(match (kind, value, stored) {
        (SearchParamType::String, SearchValue::Text(text), IndexValue::String { normalized, exact }) => match modifier {
            Some(Modifier::Exact) => exact == text,
            Some(Modifier::Contains) => normalized.contains(&normalize(text)),
            _ => normalized.starts_with(&normalize(text)),
        },
        (SearchParamType::Token, SearchValue::Text(text), stored) => match (modifier, stored) {
            (Some(Modifier::Text), IndexValue::Text { normalized }) => normalized.starts_with(&normalize(text)),
            (Some(Modifier::In | Modifier::NotIn), IndexValue::Token { system, code }) => in_value_set(text, system.as_deref(), code)?,
            _ => false,
        },
        (SearchParamType::Token | SearchParamType::Reference, SearchValue::Token { system, code }, IndexValue::Token { system: s, code: c }) => {
            let system_ok = match system.as_deref() {
                None => true,
                Some("") => s.is_none(),
                Some(system) => s.as_deref() == Some(system),
            };
            system_ok && code.as_ref().is_none_or(|code| code == c)
        }
        (SearchParamType::Token, SearchValue::OfType { system, code, value }, IndexValue::OfType { system: s, code: c, value: v }) => {
            s.as_deref() == Some(system.as_str()) && code == c && value == v
        }
        (SearchParamType::Date, SearchValue::Date { prefix, start, end }, IndexValue::Date { low, high }) => {
            in_range(*low, *high, *prefix, unix_millis(*start), unix_millis(*end))
        }
        (SearchParamType::Number, SearchValue::Number { prefix, number }, IndexValue::Number { value, .. }) => compare_number(*value, *prefix, number),
        (SearchParamType::Quantity, SearchValue::Quantity { prefix, number, system, code }, IndexValue::Quantity { value, system: s, code: c, .. }) => {
            compare_number(*value, *prefix, number)
                && system.as_ref().is_none_or(|system| s.as_ref() == Some(system))
                && code.as_ref().is_none_or(|code| c.as_ref() == Some(code))
        }
        (SearchParamType::Reference, SearchValue::Reference(reference), IndexValue::Reference { resource_type, id, version, url }) => {
            reference_matches(modifier, reference, (resource_type.as_deref(), id.as_deref(), version.as_deref(), url.as_deref()))
        }
        (SearchParamType::Uri, SearchValue::Text(uri), IndexValue::Uri(stored)) => match modifier {
            // Below and above work on whole path segments.
            Some(Modifier::Below) if uri.ends_with('/') => stored.starts_with(uri.as_str()),
            Some(Modifier::Below) => stored == uri || stored.starts_with(&format!("{uri}/")),
            Some(Modifier::Above) => stored == uri || uri.starts_with(&format!("{stored}/")) || (stored.ends_with('/') && uri.starts_with(stored.as_str())),
            Some(Modifier::Contains) => stored.contains(uri.as_str()),
            _ => stored == uri,
        },
        _ => false,
    })
}

fn reference_matches(modifier: Option<&Modifier>, reference: &ReferenceValue, (t, id, version, url): (Option<&str>, Option<&str>, Option<&str>, Option<&str>)) -> bool {
    // `subject:Patient=Group/1` names another type than the modifier: nothing matches.
    if let (Some(Modifier::Type(target)), Some(resource_type)) = (modifier, &reference.resource_type) {
        if target != resource_type {
            return false;
        }
    }
    let by_url = reference.url.as_deref().is_some_and(|wanted| {
        let versioned = reference.version.as_deref().filter(|_| !wanted.contains("/_history/"));
        url == Some(wanted) && versioned.is_none_or(|wanted| version == Some(wanted))
    });
    let by_id = reference.id.as_deref().is_some_and(|wanted| {
        id == Some(wanted)
            && reference.resource_type.as_deref().is_none_or(|wanted| t == Some(wanted))
            && reference.version.as_deref().is_none_or(|wanted| version == Some(wanted))
    });
    by_url || by_id
}

/// `:in` / `:not-in`: whether a coded value is in a value set the server can expand (a bare
/// code is in it when one of its systems has that code).
fn in_value_set(url: &str, system: Option<&str>, code: &str) -> Result<bool, Unsupported> {
    let value_set = r4()
        .value_set(url)
        .filter(|value_set| value_set.is_checkable())
        .ok_or_else(|| Unsupported(format!("value set '{}' cannot be expanded by this server", url.chars().take(200).collect::<String>())))?;
    Ok(value_set.codes().any(|(s, c)| c == code && system.is_none_or(|system| system == s)))
}

/// Date semantics: the stored range `[low, high)` against the searched range `[start, end)`.
fn in_range(low: i64, high: i64, prefix: Prefix, start: i64, end: i64) -> bool {
    match prefix {
        Prefix::Eq => low >= start && high <= end,
        Prefix::Ne => !(low >= start && high <= end),
        Prefix::Gt => high > end,
        Prefix::Lt => low < start,
        Prefix::Ge => high > start,
        Prefix::Le => low < end,
        Prefix::Sa => low >= end,
        Prefix::Eb => high <= start,
        Prefix::Ap => {
            let slack = ((unix_millis(now()) - start).abs() / 10).max(end - start);
            low < end.saturating_add(slack) && high > start.saturating_sub(slack)
        }
    }
}

fn compare_number(value: f64, prefix: Prefix, number: &Decimal) -> bool {
    match prefix {
        Prefix::Eq => value >= number.low && value < number.high,
        Prefix::Ne => !(value >= number.low && value < number.high),
        Prefix::Gt | Prefix::Sa => value > number.value,
        Prefix::Lt | Prefix::Eb => value < number.value,
        Prefix::Ge => value >= number.value,
        Prefix::Le => value <= number.value,
        Prefix::Ap => {
            let slack = (number.value.abs() / 10.0).max(number.high - number.low);
            value >= number.value - slack && value <= number.value + slack
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::parse_search;
    use serde_json::json;

    fn matches(resource: &Value, query: &str) -> Result<bool, Unsupported> {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let params: Vec<(String, String)> = query.split('&').filter_map(|pair| pair.split_once('=')).map(|(a, b)| (a.into(), b.into())).collect();
        let query = parse_search(vec![resource_type], &params, true).expect("a valid query");
        Candidate::new(resource).matches(&query.criteria)
    }

    #[test]
    fn criteria_by_type() {
        let observation = json!({
            "resourceType": "Observation", "id": "o1", "meta": {"lastUpdated": "2024-03-01T10:00:00Z"}, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": "Glucose"},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-02-10",
            "valueQuantity": {"value": 95, "system": "http://unitsofmeasure.org", "code": "mg/dL"}
        });
        for (query, expected) in [
            ("category=laboratory", true),
            ("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", true),
            ("category=vital-signs", false),
            ("category:not=vital-signs", true),
            ("category:not=laboratory", false),
            ("code:text=gluc", true),
            ("subject=Patient/p1", true),
            ("subject=p1", true),
            ("subject=Patient/p2", false),
            ("subject:Group=p1", false),
            ("date=2024-02", true),
            ("date=gt2024-03", false),
            ("value-quantity=95||mg/dL", true),
            ("value-quantity=gt100", false),
            ("_id=o1", true),
            ("_lastUpdated=ge2024-03-01", true),
            ("_lastUpdated=lt2024-03-01", false),
            ("status=final&category=laboratory", true),
            ("status=final&category=vital-signs", false),
            ("status=amended,final", true),
            ("performer:missing=true", true),
            ("subject:missing=true", false),
            ("code-value-quantity=http://loinc.org|2339-0$95", true),
            ("code-value-quantity=http://loinc.org|2339-0$96", false),
        ] {
            assert_eq!(matches(&observation, query), Ok(expected), "{query}");
        }
        assert!(matches(&observation, "subject.name=x").is_err(), "chains need the index");
    }

    #[test]
    fn compartment_membership() {
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        let patient = json!({"resourceType": "Patient", "id": "p1"});
        let types: Vec<String> = Vec::new();
        let p1 = CompartmentFilter::new("Patient", "p1", &types, true).unwrap();
        let p2 = CompartmentFilter::new("Patient", "p2", &types, true).unwrap();
        assert!(Candidate::new(&observation).in_compartment(&p1));
        assert!(!Candidate::new(&observation).in_compartment(&p2));
        assert!(Candidate::new(&patient).in_compartment(&p1));
        assert!(!Candidate::new(&patient).in_compartment(&p2));
        let medication = json!({"resourceType": "Medication", "id": "m1"});
        assert!(!Candidate::new(&medication).in_compartment(&p1), "not a member type");
        assert_eq!(Candidate::new(&observation).compartment_owners("Patient"), vec!["p1"]);
        assert!(Candidate::new(&medication).compartment_owners("Patient").is_empty());
    }
}
