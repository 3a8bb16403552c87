//! The search conformance corpus (`testdata/search-corpus/`, see its README and `runner.rs`) run
//! against the OpenSearch index on osmem-server: each file's log is applied twice (the second
//! time changes nothing: external versioning), and every case is run on the current state,
//! following each page's `search_after` position to the next.
//!
//! `CORPUS_FILTER=text cargo test -p projector-opensearch --test corpus` runs only the files or
//! cases whose name contains `text`.

#[path = "../../testdata/search-corpus/runner.rs"]
mod runner;

use event_log::{Event, EventLog};
use fhir_core::search::SearchQuery;
use projector_opensearch::search::{PageRequest, SearchError};
use projector_opensearch::OpenSearchIndex;
use runner::{Backend, Page, Searched, TENANT};

struct OpenSearch(OpenSearchIndex);

impl Backend for OpenSearch {
    async fn search(&self, query: &SearchQuery, offset: usize, after: Option<String>) -> Searched {
        match self.0.search(TENANT, query, PageRequest { offset, after, snapshot: None }).await {
            Ok(page) => Searched::Page(Page { matches: page.matches, included: page.included, total: page.total, has_next: page.has_next, next_after: page.next_after }),
            Err(SearchError::Unsupported(why)) => Searched::Rejected(why.to_string()),
            Err(error) => Searched::Failed(error.to_string()),
        }
    }
}

async fn index(loaded: &runner::Loaded) -> OpenSearch {
    let url = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL is not set: run the tests with scripts/test, which starts osmem-server");
    let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let index = OpenSearchIndex::new(&url, &prefix).unwrap();
    let events: Vec<Event> = loaded.log.read_from(0, 1_000_000).await.unwrap();
    index.apply(&events).await.unwrap();
    index.apply(&events).await.unwrap();
    index.refresh().await.unwrap();
    OpenSearch(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_corpus() {
    let (mut passed, mut failures, mut skipped) = (0usize, Vec::new(), Vec::new());
    for (file_name, file) in runner::files() {
        let selected = runner::selected(&file_name, &file);
        if selected.is_empty() {
            continue;
        }
        let loaded = runner::load(&file).await;
        let backend = index(&loaded).await;
        for case in selected {
            if let Some(reason) = &case.skip {
                skipped.push(format!("{file_name}: {}: {reason}", case.name));
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
    println!("{passed} passed, {} failed, {} skipped", failures.len(), skipped.len());
    for skip in &skipped {
        println!("skipped: {skip}");
    }
    assert!(failures.is_empty(), "{} corpus cases failed:\n{}", failures.len(), failures.join("\n"));
}
