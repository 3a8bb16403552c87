//! One criterion (a parameter with its OR'ed values) as a query on a resource document.
//! Direct parameters are nested queries on `p.{code}`; a chain first finds the targets that
//! match its rest and then the references to them; `_has` first finds the sources that match
//! and then the resources they refer to (both bounded by [`MAX_LINKED`]).

use fhir_core::definitions::SearchParamType;
use fhir_core::instant::unix_millis;
use fhir_core::search::{Modifier, ParamPath, ParamRef, SearchValue};
use serde_json::{json, Value};

use super::value::{all, any, date_range, not, nothing, term, value_query};
use super::{Found, SearchError, Unsupported};
use crate::OpenSearchIndex;

/// Most resources a chain or `_has` may link through; more is a 400 asking for a narrower query.
pub(super) const MAX_LINKED: usize = 10_000;

/// A query on the values stored at `path`. In an index whose type has no such parameter it
/// matches nothing (a system search or `_revinclude=*` spans types).
pub(super) fn nested(path: &str, query: Value) -> Value {
    json!({"nested": {"path": path, "query": query, "ignore_unmapped": true}})
}

/// Documents with any value stored at `p.{param}`.
fn has_values(param: &str) -> Value {
    nested(&format!("p.{param}"), json!({"match_all": {}}))
}

/// A reference at `p.{param}` to any of `targets` (type, id).
pub(super) fn refers_to(param: &str, targets: &[(String, String)]) -> Value {
    if targets.is_empty() {
        return nothing();
    }
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (resource_type, id) in targets {
        by_type.entry(resource_type).or_default().push(id);
    }
    let at = format!("p.{param}");
    let ways = by_type
        .into_iter()
        .map(|(resource_type, ids)| all(vec![term(&format!("{at}.type"), resource_type), json!({"terms": {format!("{at}.id"): ids}})]))
        .collect();
    nested(&at, any(ways))
}

impl OpenSearchIndex {
    /// The query for one criterion of a search of `tenant`.
    pub(super) async fn criterion(&self, tenant: &str, path: &ParamPath, values: &[SearchValue]) -> Result<Value, SearchError> {
        match path {
            ParamPath::Direct { param, modifier } => direct(param, modifier.as_ref(), values),
            ParamPath::Chain { via, target_types, next } => {
                let targets = self.linked(tenant, target_types, next, values).await?;
                let targets: Vec<(String, String)> = targets.into_iter().map(|found| (found.resource_type, found.id)).collect();
                Ok(refers_to(&via.code, &targets))
            }
            ParamPath::Has { source_type, via, next } => {
                let sources = self.linked(tenant, std::slice::from_ref(source_type), next, values).await?;
                let ids: Vec<(String, String)> = sources.iter().flat_map(|source| source.references(&via.code)).collect();
                if ids.is_empty() {
                    return Ok(nothing());
                }
                Ok(any(ids.iter().map(|(resource_type, id)| all(vec![term("type", resource_type.as_str()), term("id", id.as_str())])).collect()))
            }
        }
    }

    /// The resources of `types` that match `path` with `values` (for a chain or `_has`).
    fn linked<'a>(
        &'a self,
        tenant: &'a str,
        types: &'a [String],
        path: &'a ParamPath,
        values: &'a [SearchValue],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Found>, SearchError>> + Send + 'a>> {
        Box::pin(async move {
            let query = self.criterion(tenant, path, values).await?;
            let found = self.find_all(tenant, types, query, MAX_LINKED + 1).await?;
            if found.len() > MAX_LINKED {
                return Err(Unsupported(format!("a chained or _has parameter matches more than {MAX_LINKED} resources; narrow it")).into());
            }
            Ok(found)
        })
    }
}

fn direct(param: &ParamRef, modifier: Option<&Modifier>, values: &[SearchValue]) -> Result<Value, SearchError> {
    if let [SearchValue::Missing(missing)] = values {
        return missing_query(param, *missing);
    }
    match param.code.as_str() {
        "_id" => {
            let ids = values
                .iter()
                .map(|value| match value {
                    SearchValue::Token { code: Some(code), .. } => Ok(code.as_str()),
                    _ => Err(Unsupported("_id takes plain ids".into())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let query = json!({"terms": {"id": ids}});
            return Ok(if matches!(modifier, Some(Modifier::Not)) { not(query) } else { query });
        }
        "_lastUpdated" => {
            let ways = values
                .iter()
                .map(|value| match value {
                    // A stored instant covers its millisecond: its high end is one more.
                    SearchValue::Date { prefix, start, end } => Ok(date_range("last_updated", "last_updated", 1, *prefix, unix_millis(*start), unix_millis(*end))),
                    _ => Err(Unsupported("_lastUpdated takes dates".into())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(any(ways));
        }
        _ => {}
    }
    if param.kind == SearchParamType::Composite {
        return composite(param, values);
    }
    let stored = match modifier {
        Some(Modifier::Identifier) => format!("{}:identifier", param.code),
        Some(Modifier::OfType) => format!("{}:of-type", param.code),
        _ => param.code.clone(),
    };
    let at = format!("p.{stored}");
    let kind = if matches!(modifier, Some(Modifier::Identifier)) { SearchParamType::Token } else { param.kind };
    let ways = values.iter().map(|value| value_query(&at, kind, modifier, value)).collect::<Result<Vec<_>, _>>()?;
    let query = nested(&at, any(ways));
    // A negation matches the resources without any such value, those without the parameter too.
    Ok(match (param.kind, modifier) {
        (SearchParamType::Token, Some(Modifier::Not | Modifier::NotIn)) => not(query),
        _ => query,
    })
}

/// `:missing`: whether the resource has a value for the parameter, wherever it is stored (a
/// reference given only by identifier is stored under `{code}:identifier`).
fn missing_query(param: &ParamRef, missing: bool) -> Result<Value, SearchError> {
    if param.kind == SearchParamType::Composite {
        return Err(Unsupported(":missing is not supported on composite parameters".into()).into());
    }
    if matches!(param.code.as_str(), "_id" | "_lastUpdated") {
        return Ok(if missing { nothing() } else { json!({"match_all": {}}) });
    }
    let mut present = vec![has_values(&param.code)];
    if param.kind == SearchParamType::Reference {
        present.push(has_values(&format!("{}:identifier", param.code)));
    }
    let present = any(present);
    Ok(if missing { not(present) } else { present })
}

/// A composite matches when one occurrence has every component matching.
fn composite(param: &ParamRef, values: &[SearchValue]) -> Result<Value, SearchError> {
    let kinds = param.composite_components().ok_or_else(|| Unsupported("unknown composite parameter".into()))?;
    let at = format!("p.{}", param.code);
    let mut ways = Vec::new();
    for value in values {
        let SearchValue::Composite(parts) = value else { return Err(Unsupported("composite values need $".into()).into()) };
        if parts.len() != kinds.len() {
            return Err(Unsupported("a composite value needs one part per component".into()).into());
        }
        let mut components = Vec::new();
        for (index, (kind, part)) in kinds.iter().zip(parts).enumerate() {
            let component = format!("{at}.{index}");
            components.push(nested(&component, value_query(&component, *kind, None, part)?));
        }
        ways.push(all(components));
    }
    Ok(nested(&at, any(ways)))
}
