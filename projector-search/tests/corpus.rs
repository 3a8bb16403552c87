//! The search conformance corpus (`testdata/search-corpus/`, see its README and `runner.rs`) run
//! against the embedded index: each file's log is fed to [`SearchIndex::apply`] in two uneven
//! batches and then whole again (applying is idempotent), and every case is run twice, as
//! planned and with every criterion tested per resource (no driver), at the index checkpoint.
//!
//! `CORPUS_FILTER=text cargo test -p projector-search --test corpus` runs only the files or cases
//! whose name contains `text`.

#[path = "../../testdata/search-corpus/runner.rs"]
mod runner;

use event_log::{Event, EventLog};
use fhir_core::search::SearchQuery;
use projector_search::sql::Planning;
use projector_search::{PageRequest, SearchError, SearchIndex};
use runner::{Backend, Page, Searched, TENANT};

struct Embedded(SearchIndex);

impl Backend for Embedded {
    async fn search(&self, query: &SearchQuery, offset: usize, _after: Option<String>) -> Searched {
        let snapshot = self.0.checkpoint();
        match self.0.search(TENANT, query, PageRequest { snapshot, offset }) {
            Ok(page) => Searched::Page(Page { matches: page.matches, included: page.included, total: page.total, has_next: page.has_next, next_after: None }),
            Err(SearchError::Unsupported(why)) => Searched::Rejected(why.to_string()),
            Err(error) => Searched::Failed(error.to_string()),
        }
    }
}

async fn index(loaded: &runner::Loaded, directory: &std::path::Path) -> Embedded {
    let index = SearchIndex::open(&directory.join("search.db")).unwrap();
    let events: Vec<Event> = loaded.log.read_from(0, 1_000_000).await.unwrap();
    // Two uneven batches, then everything again. The first batch goes into a fresh index (built
    // from zero, value indexes created after), the rest into one with its value indexes.
    let (first, second) = events.split_at(events.len() / 3);
    assert!(index.is_building());
    index.apply(first).unwrap();
    index.finish_build().unwrap();
    assert!(!index.is_building());
    index.apply(second).unwrap();
    index.apply(&events).unwrap();
    assert_eq!(index.checkpoint(), loaded.log.head().await.unwrap());
    assert_eq!(*index.watch_checkpoint().borrow(), index.checkpoint());
    Embedded(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_corpus() {
    let (mut passed, mut failures, mut skipped) = (0usize, Vec::new(), Vec::new());
    let mut per_file = Vec::new();
    for (file_name, file) in runner::files() {
        per_file.push(format!("{file_name}: {} cases ({})", file.cases.len(), file.description));
        let selected = runner::selected(&file_name, &file);
        if selected.is_empty() {
            continue;
        }
        let loaded = runner::load(&file).await;
        let directory = tempfile::tempdir().unwrap();
        let backend = index(&loaded, directory.path()).await;
        for case in selected {
            if let Some(reason) = &case.skip {
                skipped.push(format!("{file_name}: {}: {reason}", case.name));
                continue;
            }
            for (label, planning) in [("", Planning::Auto), (" (filters only)", Planning::FiltersOnly)] {
                backend.0.set_planning(planning);
                let problems = runner::check(&loaded, &backend, case).await;
                if problems.is_empty() {
                    passed += 1;
                } else {
                    failures.push(format!("{file_name}: {}{label} [{}]\n    {}", case.name, case.search, problems.join("\n    ")));
                }
            }
        }
    }
    println!("search corpus:\n  {}", per_file.join("\n  "));
    println!("{passed} passed (each case twice: as planned, and filters only), {} failed, {} skipped", failures.len(), skipped.len());
    for skip in &skipped {
        println!("skipped: {skip}");
    }
    assert!(failures.is_empty(), "{} corpus cases failed:\n{}", failures.len(), failures.join("\n"));
}
