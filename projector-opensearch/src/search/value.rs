//! The query one searched value puts on one stored value (the fields under `at`, a nested path),
//! by parameter type, with the same meaning as the embedded index: ranges for dates, numbers and
//! quantities, prefixes for strings, path segments for URIs, a value set's codes for `:in`.

use fhir_core::definitions::{r4, SearchParamType};
use fhir_core::instant::unix_millis;
use fhir_core::search::{normalize, Decimal, Modifier, Prefix, SearchValue};
use serde_json::{json, Value};

use super::{SearchError, Unsupported};

pub(super) fn term(field: &str, value: impl Into<Value>) -> Value {
    json!({"term": {field: value.into()}})
}

pub(super) fn all(clauses: Vec<Value>) -> Value {
    json!({"bool": {"filter": clauses}})
}

pub(super) fn any(clauses: Vec<Value>) -> Value {
    json!({"bool": {"should": clauses, "minimum_should_match": 1}})
}

pub(super) fn not(clause: Value) -> Value {
    json!({"bool": {"must_not": [clause]}})
}

pub(super) fn nothing() -> Value {
    json!({"match_none": {}})
}

fn range(field: &str, operator: &str, value: impl Into<Value>) -> Value {
    json!({"range": {field: {operator: value.into()}}})
}

fn prefix(field: &str, value: &str) -> Value {
    json!({"prefix": {field: value}})
}

fn wildcard_contains(field: &str, needle: &str) -> Value {
    let mut escaped = String::with_capacity(needle.len() + 2);
    escaped.push('*');
    for character in needle.chars() {
        if matches!(character, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped.push('*');
    json!({"wildcard": {field: {"value": escaped}}})
}

/// Date semantics: the stored range `[low, high)` against the searched `[start, end)`. `high_offset`
/// is added to the stored `high` (a `lastUpdated` instant covers its millisecond: its high is
/// `low + 1`, stored as nothing).
pub(super) fn date_range(low: &str, high: &str, high_offset: i64, prefix: Prefix, start: i64, end: i64) -> Value {
    // `high + offset OP x` is `high OP x - offset`.
    let high_cmp = |operator: &str, value: i64| range(high, operator, value.saturating_sub(high_offset));
    match prefix {
        Prefix::Eq => all(vec![range(low, "gte", start), high_cmp("lte", end)]),
        Prefix::Ne => not(all(vec![range(low, "gte", start), high_cmp("lte", end)])),
        Prefix::Gt => high_cmp("gt", end),
        Prefix::Lt => range(low, "lt", start),
        Prefix::Ge => high_cmp("gt", start),
        Prefix::Le => range(low, "lt", end),
        Prefix::Sa => range(low, "gte", end),
        Prefix::Eb => high_cmp("lte", start),
        Prefix::Ap => {
            let now = unix_millis(fhir_core::instant::now());
            let slack = ((now - start).abs() / 10).max(end - start);
            all(vec![range(low, "lt", end.saturating_add(slack)), high_cmp("gt", start.saturating_sub(slack))])
        }
    }
}

fn number(field: &str, prefix: Prefix, number: Decimal) -> Value {
    let eq = || all(vec![range(field, "gte", number.low), range(field, "lt", number.high)]);
    match prefix {
        Prefix::Eq => eq(),
        Prefix::Ne => not(eq()),
        Prefix::Gt | Prefix::Sa => range(field, "gt", number.value),
        Prefix::Lt | Prefix::Eb => range(field, "lt", number.value),
        Prefix::Ge => range(field, "gte", number.value),
        Prefix::Le => range(field, "lte", number.value),
        Prefix::Ap => {
            let slack = (number.value.abs() / 10.0).max(number.high - number.low);
            all(vec![range(field, "gte", number.value - slack), range(field, "lte", number.value + slack)])
        }
    }
}

fn token(at: &str, system: Option<&str>, code: Option<&str>) -> Value {
    let mut clauses = Vec::new();
    match system {
        None => {}
        Some("") => clauses.push(not(json!({"exists": {"field": format!("{at}.system")}}))),
        Some(system) => clauses.push(term(&format!("{at}.system"), system)),
    }
    if let Some(code) = code {
        clauses.push(term(&format!("{at}.code"), code));
    }
    all(clauses)
}

/// The query for `value` on the stored values at `at`.
pub(super) fn value_query(at: &str, kind: SearchParamType, modifier: Option<&Modifier>, value: &SearchValue) -> Result<Value, SearchError> {
    let field = |name: &str| format!("{at}.{name}");
    Ok(match (kind, value) {
        (SearchParamType::String, SearchValue::Text(text)) => match modifier {
            Some(Modifier::Exact) => term(&field("exact"), text.as_str()),
            Some(Modifier::Contains) => wildcard_contains(&field("norm"), &normalize(text)),
            _ => prefix(&field("norm"), &normalize(text)),
        },
        (SearchParamType::Token, SearchValue::Text(text)) => match modifier {
            Some(Modifier::Text) => prefix(&field("text"), &normalize(text)),
            Some(Modifier::In | Modifier::NotIn) => value_set(at, text)?,
            _ => return Err(Unsupported("unexpected token value".into()).into()),
        },
        (SearchParamType::Token | SearchParamType::Reference, SearchValue::Token { system, code }) => token(at, system.as_deref(), code.as_deref()),
        (SearchParamType::Token, SearchValue::OfType { system, code, value }) => {
            all(vec![term(&field("system"), system.as_str()), term(&field("code"), code.as_str()), term(&field("value"), value.as_str())])
        }
        (SearchParamType::Date, SearchValue::Date { prefix, start, end }) => date_range(&field("low"), &field("high"), 0, *prefix, unix_millis(*start), unix_millis(*end)),
        (SearchParamType::Number, SearchValue::Number { prefix, number: n }) => number(&field("value"), *prefix, *n),
        (SearchParamType::Quantity, SearchValue::Quantity { prefix, number: n, system, code }) => {
            let mut clauses = vec![number(&field("value"), *prefix, *n)];
            if let Some(system) = system {
                clauses.push(term(&field("system"), system.as_str()));
            }
            if let Some(code) = code {
                clauses.push(term(&field("code"), code.as_str()));
            }
            all(clauses)
        }
        (SearchParamType::Reference, SearchValue::Reference(reference)) => {
            if let (Some(Modifier::Type(target)), Some(resource_type)) = (modifier, &reference.resource_type) {
                if target != resource_type {
                    return Ok(nothing());
                }
            }
            let mut ways = Vec::new();
            if let Some(url) = &reference.url {
                let mut clauses = vec![term(&field("url"), url.as_str())];
                if let (Some(version), false) = (&reference.version, url.contains("/_history/")) {
                    clauses.push(term(&field("version"), version.as_str()));
                }
                ways.push(all(clauses));
            }
            if let Some(id) = &reference.id {
                let mut clauses = vec![term(&field("id"), id.as_str())];
                if let Some(resource_type) = &reference.resource_type {
                    clauses.push(term(&field("type"), resource_type.as_str()));
                }
                if let Some(version) = &reference.version {
                    clauses.push(term(&field("version"), version.as_str()));
                }
                ways.push(all(clauses));
            }
            if ways.is_empty() {
                nothing()
            } else {
                any(ways)
            }
        }
        (SearchParamType::Uri, SearchValue::Text(uri)) => {
            let stored = field("uri");
            match modifier {
                Some(Modifier::Below) if uri.ends_with('/') => prefix(&stored, uri),
                Some(Modifier::Below) => any(vec![term(&stored, uri.as_str()), prefix(&stored, &format!("{uri}/"))]),
                Some(Modifier::Above) => json!({"terms": {stored: segments_above(uri)}}),
                Some(Modifier::Contains) => wildcard_contains(&stored, uri),
                _ => term(&stored, uri.as_str()),
            }
        }
        _ => return Err(Unsupported("this value does not fit the parameter's type".into()).into()),
    })
}

/// What a URI is below: itself and each leading run of whole path segments, with and without the
/// trailing `/`.
fn segments_above(uri: &str) -> Vec<String> {
    let mut above = vec![uri.to_string()];
    for (at, _) in uri.match_indices('/') {
        if at > 0 {
            above.push(uri[..at].to_string());
        }
        above.push(uri[..=at].to_string());
    }
    above.sort();
    above.dedup();
    above
}

/// `:in` / `:not-in`: membership in a value set the server can expand.
fn value_set(at: &str, url: &str) -> Result<Value, SearchError> {
    let value_set = r4()
        .value_set(url)
        .filter(|value_set| value_set.is_checkable())
        .ok_or_else(|| Unsupported(format!("value set '{}' cannot be expanded by this server", url.chars().take(200).collect::<String>())))?;
    let mut ways: Vec<Value> = value_set.codes().map(|(system, code)| token(at, Some(system), Some(code))).collect();
    // A bare code is in the value set when one of its systems has that code.
    let codes: std::collections::BTreeSet<&str> = value_set.codes().map(|(_, code)| code).collect();
    if !codes.is_empty() {
        ways.push(all(vec![not(json!({"exists": {"field": format!("{at}.system")}})), json!({"terms": {format!("{at}.code"): codes}})]));
    }
    Ok(if ways.is_empty() { nothing() } else { any(ways) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_is_below_each_of_its_leading_segments() {
        assert_eq!(segments_above("http://a.org/fhir/x"), ["http:", "http:/", "http://", "http://a.org", "http://a.org/", "http://a.org/fhir", "http://a.org/fhir/", "http://a.org/fhir/x"]);
    }
}
