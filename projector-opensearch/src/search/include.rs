//! `_include` and `_revinclude`: the resources a page's matches refer to, and those that refer to
//! them, followed for up to [`MAX_INCLUDE_ROUNDS`] rounds when `:iterate`d, one query per include
//! and round over the whole frontier.

use std::collections::HashSet;

use fhir_core::definitions::r4;
use fhir_core::search::{registry, Include, SearchQuery};
use super::criteria::refers_to;
use super::value::{all, any, term};
use super::{Found, SearchError};
use crate::OpenSearchIndex;

const MAX_INCLUDE_ROUNDS: usize = 4;
/// How many resources includes may add to one page.
const MAX_INCLUDED: usize = 10_000;

impl OpenSearchIndex {
    /// Positions of the resources `query`'s includes add to `hits`.
    pub(super) async fn includes(&self, tenant: &str, query: &SearchQuery, hits: &[Found]) -> Result<Vec<u64>, SearchError> {
        if query.include.is_empty() && query.revinclude.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen: HashSet<u64> = hits.iter().map(|hit| hit.position).collect();
        let mut included = Vec::new();
        let mut frontier: Vec<Found> = hits.to_vec();
        for round in 0..MAX_INCLUDE_ROUNDS {
            let mut found = Vec::new();
            for include in query.include.iter().filter(|include| round == 0 || include.iterate) {
                found.extend(self.forward(tenant, include, &frontier).await?);
            }
            for include in query.revinclude.iter().filter(|include| round == 0 || include.iterate) {
                found.extend(self.reverse(tenant, include, &frontier).await?);
            }
            found.retain(|resource| included.len() < MAX_INCLUDED && seen.insert(resource.position) && {
                included.push(resource.position);
                true
            });
            if found.is_empty() {
                break;
            }
            frontier = found;
        }
        Ok(included)
    }

    /// What the frontier's resources (of the include's source type) refer to.
    async fn forward(&self, tenant: &str, include: &Include, frontier: &[Found]) -> Result<Vec<Found>, SearchError> {
        let mut targets: Vec<(String, String)> = Vec::new();
        for resource in frontier.iter().filter(|resource| include.source_type.as_ref().is_none_or(|source| *source == resource.resource_type)) {
            let params = match &include.param {
                Some(param) => vec![param.clone()],
                None => resource.reference_params(),
            };
            for param in params {
                targets.extend(resource.references(&param).into_iter().filter(|(resource_type, _)| include.target_type.as_ref().is_none_or(|target| target == resource_type)));
            }
        }
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let types: Vec<String> = targets.iter().map(|(resource_type, _)| resource_type.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let query = any(targets.iter().map(|(resource_type, id)| all(vec![term("type", resource_type.as_str()), term("id", id.as_str())])).collect());
        self.find_all(tenant, &types, query, MAX_INCLUDED).await
    }

    /// What refers to the frontier's resources through the include's parameter.
    async fn reverse(&self, tenant: &str, include: &Include, frontier: &[Found]) -> Result<Vec<Found>, SearchError> {
        let targets: Vec<(String, String)> = frontier
            .iter()
            .filter(|resource| include.target_type.as_ref().is_none_or(|target| *target == resource.resource_type))
            .map(|resource| (resource.resource_type.clone(), resource.id.clone()))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let sources: Vec<String> = match &include.source_type {
            Some(source) => vec![source.clone()],
            None => r4().resource_types().map(String::from).collect(),
        };
        let query = match &include.param {
            Some(param) => refers_to(param, &targets),
            None => {
                // `*`: through any reference parameter of the source type.
                let params: std::collections::BTreeSet<&str> = sources
                    .iter()
                    .flat_map(|source| registry::search_parameters_for(source))
                    .filter(|p| p.kind == fhir_core::definitions::SearchParamType::Reference)
                    .map(|p| p.code.as_str())
                    .collect();
                any(params.into_iter().map(|param| refers_to(param, &targets)).collect())
            }
        };
        self.find_all(tenant, &sources, query, MAX_INCLUDED).await
    }
}
