//! Searches of the shared query model (`fhir_core::search::SearchQuery`) on the OpenSearch
//! indexes: the criteria as one bool query over the aliases of the searched types ([`criteria`],
//! [`value`]), the sort, offset paging and the total, then `_include` and `_revinclude`
//! ([`include`]). Results are log positions, as from the embedded index; the caller reads the
//! bodies from the log. The results are those of the index's current state: unlike the
//! embedded index, OpenSearch keeps no earlier versions, so a snapshot only keeps resources
//! created after the first page out of the later ones.

mod criteria;
mod include;
mod value;

use fhir_core::definitions::SearchParamType;
use fhir_core::search::{registry, CompartmentFilter, SearchQuery, SortKey, Total};
use fhir_core::summary::SummaryMode;
use opensearch::SearchParts;
use serde_json::{json, Value};

use crate::{opensearch_error, IndexError, OpenSearchIndex};
use value::{all, any, term};

/// A query this index cannot answer (a 400 saying why).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
}

/// Most types a search names in its request; beyond, it looks up which exist.
const NAMED_TYPES: usize = 16;

/// Deepest offset OpenSearch pages to (its `max_result_window`).
pub const MAX_OFFSET: usize = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// Log positions of the matches on this page, in order.
    pub matches: Vec<u64>,
    /// Log positions of included resources.
    pub included: Vec<u64>,
    pub total: Option<u64>,
    pub has_next: bool,
    /// What later pages pass back (see [`OpenSearchIndex::search`]).
    pub snapshot: u64,
    /// Where the next page starts: the last match's sort values, encoded.
    pub next_after: Option<String>,
}

/// Which page: see [`OpenSearchIndex::search`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: usize,
    pub snapshot: Option<u64>,
    pub after: Option<String>,
}

fn encode_after(sort_values: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_values.to_string())
}

fn decode_after(after: &str) -> Result<Value, SearchError> {
    use base64::Engine;
    let invalid = || SearchError::Unsupported(Unsupported("the paging cursor is not one this server made".into()));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(after).map_err(|_| invalid())?;
    let values: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if values.is_array() {
        Ok(values)
    } else {
        Err(invalid())
    }
}

/// A document found: its identity, position and values.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub resource_type: String,
    pub id: String,
    pub position: u64,
    source: Value,
}

impl Found {
    fn from_hit(hit: &Value) -> Option<Found> {
        let source = &hit["_source"];
        Some(Found {
            resource_type: source["type"].as_str()?.to_string(),
            id: source["id"].as_str()?.to_string(),
            position: source["position"].as_u64()?,
            source: source["p"].clone(),
        })
    }

    /// The resources this one refers to through `param` (relative references, by type and id).
    pub(crate) fn references(&self, param: &str) -> Vec<(String, String)> {
        self.source[param]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|reference| Some((reference["type"].as_str()?.to_string(), reference["id"].as_str()?.to_string())))
            .collect()
    }

    /// Every reference parameter this resource has values for.
    fn reference_params(&self) -> Vec<String> {
        self.source
            .as_object()
            .into_iter()
            .flat_map(|parameters| parameters.keys())
            .filter(|code| registry::search_parameter(&self.resource_type, code).is_some_and(|p| p.kind == SearchParamType::Reference))
            .cloned()
            .collect()
    }
}

impl OpenSearchIndex {
    /// One page of `query` for `tenant`. The first page (no snapshot) reports the highest log
    /// position among the matches as its snapshot; later pages, given it, leave out resources
    /// created after it, so that new resources do not shift them. (Updates and deletes after it
    /// do show: OpenSearch keeps only current versions.) A page continues from `after` (the
    /// previous page's [`SearchPage::next_after`]: its last sort values) with `search_after`, at
    /// any depth; without it, from `offset`, up to [`MAX_OFFSET`].
    pub async fn search(&self, tenant: &str, query: &SearchQuery, page: PageRequest) -> Result<SearchPage, SearchError> {
        let (offset, snapshot) = (page.offset, page.snapshot);
        let after = page.after.as_deref().map(decode_after).transpose()?;
        if after.is_none() && offset + query.count > MAX_OFFSET {
            return Err(Unsupported(format!("pages by offset end at the {MAX_OFFSET}th result; follow the next links or narrow the search")).into());
        }
        let mut filter = self.filter(tenant, query).await?;
        if let Some(snapshot) = snapshot {
            let created_later = all(vec![term("version", 1), json!({"range": {"position": {"gt": snapshot}}})]);
            filter = all(vec![filter, value::not(created_later)]);
        }
        let count_only = query.summary == Some(SummaryMode::Count);
        let track_total = count_only || matches!(query.total, Total::Accurate | Total::Estimate);
        let size = if count_only { 0 } else { query.count + 1 };
        let mut body = json!({
            "query": filter,
            "sort": sort(&query.sort),
            "size": size,
            "track_total_hits": track_total,
            "aggs": {"newest": {"max": {"field": "position"}}},
        });
        match after {
            Some(after) => body["search_after"] = after,
            None => body["from"] = json!(offset),
        }
        let answer = self.run(tenant, &query.types, body).await?;
        let newest = answer["aggregations"]["newest"]["value"].as_f64().map_or(0, |position| position as u64);
        let snapshot = snapshot.unwrap_or(newest);
        let total = track_total.then(|| answer["hits"]["total"]["value"].as_u64().unwrap_or(0));
        let raw_hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let mut hits: Vec<Found> = raw_hits.iter().filter_map(Found::from_hit).collect();
        let has_next = hits.len() > query.count;
        hits.truncate(query.count);
        let next_after = if has_next { raw_hits.get(query.count.saturating_sub(1)).map(|hit| encode_after(&hit["sort"])) } else { None };
        if count_only || query.count == 0 {
            return Ok(SearchPage { total, snapshot, ..SearchPage::default() });
        }
        let included = self.includes(tenant, query, &hits).await?;
        Ok(SearchPage { matches: hits.iter().map(|hit| hit.position).collect(), included, total, has_next, snapshot, next_after })
    }

    /// Every criterion, the compartment, and not deleted.
    async fn filter(&self, tenant: &str, query: &SearchQuery) -> Result<Value, SearchError> {
        let mut clauses = vec![term("deleted", false)];
        for criterion in &query.criteria {
            clauses.push(self.criterion(tenant, &criterion.path, &criterion.values).await?);
        }
        if let Some(compartment) = &query.compartment {
            clauses.push(compartment_query(compartment));
        }
        Ok(all(clauses))
    }

    /// Up to `limit` documents of `types` matching `query` (and not deleted), in log order.
    pub(crate) async fn find_all(&self, tenant: &str, types: &[String], query: Value, limit: usize) -> Result<Vec<Found>, SearchError> {
        let body = json!({
            "query": all(vec![term("deleted", false), query]),
            "sort": [{"position": "asc"}],
            "size": limit.min(MAX_OFFSET),
        });
        let answer = self.run(tenant, types, body).await?;
        Ok(answer["hits"]["hits"].as_array().into_iter().flatten().filter_map(Found::from_hit).collect())
    }

    /// Runs a search body over the aliases of `types` (all types when empty) for `tenant`. A few
    /// types are named in the request, whether their indexes exist yet or not; many (a system
    /// search, `_revinclude=*`), only those that exist, looked up first, to keep the URL short.
    async fn run(&self, tenant: &str, types: &[String], body: Value) -> Result<Value, SearchError> {
        let aliases: Vec<String> = if types.is_empty() || types.len() > NAMED_TYPES {
            let existing = self.current_indexes().await?;
            let of_tenant = self.names.tenant_prefix(tenant);
            let wanted = |alias: &String| types.is_empty() || types.iter().any(|resource_type| self.names.alias(tenant, resource_type) == *alias);
            existing.into_keys().filter(|alias| alias.strip_prefix(&of_tenant).is_some_and(|rest| !rest.contains('.')) && wanted(alias)).collect()
        } else {
            types.iter().map(|resource_type| self.names.alias(tenant, resource_type)).collect()
        };
        if aliases.is_empty() {
            return Ok(json!({"hits": {"hits": [], "total": {"value": 0}}}));
        }
        let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
        let response = self
            .client
            .search(SearchParts::Index(&aliases))
            .ignore_unavailable(true)
            .allow_no_indices(true)
            .body(body)
            .send()
            .await
            .map_err(opensearch_error)?;
        let status = response.status_code();
        let answer: Value = response.json().await.map_err(opensearch_error)?;
        if !status.is_success() {
            return Err(IndexError::OpenSearch(format!("search answered {status}: {}", answer["error"]["reason"])).into());
        }
        Ok(answer)
    }
}

/// `_sort`: with several values ascending order uses the lowest and descending the highest;
/// resources without a value come last; the log position breaks ties.
fn sort(keys: &[SortKey]) -> Vec<Value> {
    let mut sort = Vec::new();
    for key in keys {
        let order = if key.descending { "desc" } else { "asc" };
        match key.param.code.as_str() {
            "_id" => sort.push(json!({"id": {"order": order}})),
            "_lastUpdated" => sort.push(json!({"last_updated": {"order": order}})),
            code => {
                let field = match (key.param.kind, key.descending) {
                    (SearchParamType::String, _) => "norm",
                    (SearchParamType::Token, _) => "code",
                    (SearchParamType::Date, false) => "low",
                    (SearchParamType::Date, true) => "high",
                    (SearchParamType::Number | SearchParamType::Quantity, _) => "value",
                    (SearchParamType::Reference, _) => "id",
                    (SearchParamType::Uri, _) => "uri",
                    _ => continue,
                };
                let mode = if key.descending { "max" } else { "min" };
                let path = format!("p.{code}");
                sort.push(json!({format!("{path}.{field}"): {"order": order, "mode": mode, "missing": "_last", "nested": {"path": path}}}));
            }
        }
    }
    sort.push(json!({"position": {"order": "asc"}}));
    sort
}

/// The resources in one resource's compartment (and, if asked, the resource itself).
fn compartment_query(compartment: &CompartmentFilter) -> Value {
    let target = [(compartment.resource_type.clone(), compartment.id.clone())];
    let mut ways: Vec<Value> = compartment
        .members
        .iter()
        .map(|(member, params)| all(vec![term("type", member.as_str()), any(params.iter().map(|param| criteria::refers_to(param, &target)).collect())]))
        .collect();
    if compartment.include_self {
        ways.push(all(vec![term("type", compartment.resource_type.as_str()), term("id", compartment.id.as_str())]));
    }
    any(ways)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_position_round_trips_and_a_forged_one_is_refused() {
        let values = json!(["smith", 17]);
        assert_eq!(decode_after(&encode_after(&values)).unwrap(), values);
        for forged in ["%%%", "bm90IGpzb24", "eyJhIjoxfQ"] {
            assert!(matches!(decode_after(forged), Err(SearchError::Unsupported(_))), "{forged}");
        }
    }
}
