//! The search conformance corpus (`testdata/search-corpus/`) run through the in-memory matcher
//! ([`fhir_core::search::matcher`]): each case's criteria decide, resource by resource, which
//! current versions match, in the order the resources were created. Cases that need the index
//! (chains, `_has`, `_include`/`_revinclude`, `_sort`) are counted and left to the index tests.
//!
//! `CORPUS_FILTER=text cargo test -p fhir-core --test matcher_corpus` runs only the files or
//! cases whose name contains `text`.

#[path = "../../testdata/search-corpus/runner.rs"]
mod runner;

use std::collections::HashMap;

use event_log::{EventLog, Operation};
use fhir_core::search::matcher::Candidate;
use fhir_core::search::{parse_search, ParamPath, SearchQuery, Total};
use fhir_core::summary::SummaryMode;
use runner::{Backend, Page, Searched, TENANT};
use serde_json::Value;

/// The corpus tenant's live resources, by position of their current version, in creation order.
struct InMemory(Vec<(u64, Value)>);

impl Backend for InMemory {
    async fn search(&self, query: &SearchQuery, offset: usize, _after: Option<String>) -> Searched {
        let counting = query.summary == Some(SummaryMode::Count);
        let mut matches = Vec::new();
        for (position, resource) in &self.0 {
            let candidate = Candidate::new(resource);
            if !query.types.is_empty() && !query.types.iter().any(|t| t == candidate.resource_type()) {
                continue;
            }
            match candidate.matches(&query.criteria) {
                Ok(true) => matches.push(*position),
                Ok(false) => {}
                Err(why) => return Searched::Rejected(why.0),
            }
        }
        let total = (query.total != Total::None || counting).then_some(matches.len() as u64);
        if counting {
            matches.clear();
        }
        let page: Vec<u64> = matches.iter().skip(offset).take(query.count).copied().collect();
        let has_next = query.count > 0 && offset + query.count < matches.len();
        Searched::Page(Page { matches: page, included: Vec::new(), total, has_next, next_after: None })
    }
}

async fn current_resources(loaded: &runner::Loaded) -> InMemory {
    let events = loaded.log.read_from(0, 1_000_000).await.unwrap();
    let mut order = Vec::new();
    let mut current: HashMap<(String, String), (u64, Option<Value>)> = HashMap::new();
    for event in events.iter().filter(|event| event.key.tenant == TENANT) {
        let key = (event.key.resource_type.clone(), event.key.id.clone());
        if !current.contains_key(&key) {
            order.push(key.clone());
        }
        let body = (event.operation != Operation::Delete).then(|| serde_json::from_slice(&event.body).unwrap());
        current.insert(key, (event.position, body));
    }
    InMemory(order.iter().filter_map(|key| current.remove(key)).filter_map(|(position, body)| Some((position, body?))).collect())
}

/// Why a case is not for the matcher, if it is not.
fn needs_the_index(search: &str) -> Option<&'static str> {
    let (types, params) = runner::parse_request(search);
    let query = parse_search(types, &params, false).ok()?;
    if query.criteria.iter().any(|criterion| !matches!(criterion.path, ParamPath::Direct { .. })) {
        return Some("chain or _has");
    }
    if !query.include.is_empty() || !query.revinclude.is_empty() {
        return Some("_include/_revinclude");
    }
    (!query.sort.is_empty()).then_some("_sort")
}

#[tokio::test]
async fn search_corpus_in_memory() {
    let (mut passed, mut failures, mut left) = (0usize, Vec::new(), HashMap::<&str, usize>::new());
    for (file_name, file) in runner::files() {
        let selected = runner::selected(&file_name, &file);
        if selected.is_empty() {
            continue;
        }
        let loaded = runner::load(&file).await;
        let backend = current_resources(&loaded).await;
        for case in selected {
            if case.skip.is_some() {
                continue;
            }
            if let Some(why) = needs_the_index(&case.search) {
                *left.entry(why).or_default() += 1;
                continue;
            }
            let problems = runner::check(&loaded, &backend, case).await;
            if problems.is_empty() {
                passed += 1;
            } else {
                failures.push(format!("{file_name}: {} [{}]\n    {}", case.name, case.search, problems.join("\n    ")));
            }
        }
    }
    println!("{passed} passed, {} failed; left to the index: {left:?}", failures.len());
    assert!(passed > 200, "most of the corpus is for the matcher ({passed} passed)");
    assert!(failures.is_empty(), "{} corpus cases failed in memory:\n{}", failures.len(), failures.join("\n"));
}
