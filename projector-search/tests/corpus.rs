//! The search conformance corpus (`testdata/search-corpus/*.json`, described in its README) run
//! against the embedded index.
//!
//! Each corpus file is loaded into a fresh event log and index: its resources are created (one
//! append each, `recorded_at` taken from `meta.lastUpdated`), then its `updates` and `deleted`
//! are applied, and the whole log is fed to [`SearchIndex::apply`]. The same resources are also
//! written, before any of that, under a decoy tenant, so that every case also checks that a
//! search never sees another tenant's data. Each case's query is parsed with the shared
//! `parse_search`, run at the index checkpoint page by page (offset paging), and its matches
//! (mapped back to `Type/id` through the log) compared with the expected ones.
//!
//! `CORPUS_FILTER=text cargo test -p projector-search --test corpus` runs only the files or cases
//! whose name contains `text`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, Event, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use fhir_core::instant::{format_instant, parse_range};
use fhir_core::search::parse_search;
use projector_search::sql::Planning;
use projector_search::{PageRequest, SearchError, SearchIndex};
use serde::Deserialize;
use serde_json::Value;

const TENANT: &str = "corpus";
/// Holds a copy of every file's resources; none of them may ever be found.
const DECOY_TENANT: &str = "decoy";
/// `recorded_at` of a resource without `meta.lastUpdated`.
const DEFAULT_LAST_UPDATED: &str = "2024-01-01T00:00:00.000Z";
/// More pages than this means the paging never ends.
const MAX_PAGES: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    #[serde(default)]
    description: String,
    resources: Vec<Value>,
    /// New versions applied after every resource is created (each one's id must exist).
    #[serde(default)]
    updates: Vec<Value>,
    /// `Type/id` of resources deleted after the updates.
    #[serde(default)]
    deleted: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// `Type?query` (a type search) or `?query` (a system search; types from `_type`).
    search: String,
    #[serde(default)]
    expect: Vec<String>,
    /// Compare `expect` in order (all pages concatenated).
    #[serde(default)]
    ordered: bool,
    total: Option<u64>,
    /// The included resources, all pages together.
    include: Option<Vec<String>>,
    /// Each page's matches, in order.
    pages: Option<Vec<Vec<String>>>,
    /// The query must be rejected (HTTP 400).
    #[serde(default)]
    error: bool,
    /// Deliberately unsupported: the case is listed, not run.
    skip: Option<String>,
    /// Why the expectation is what it is (for readers; the runner ignores it).
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
}

/// What running one case produced.
#[derive(Debug, Default)]
struct Outcome {
    matches: Vec<String>,
    pages: Vec<Vec<String>>,
    included: BTreeSet<String>,
    total: Option<u64>,
    /// Why the query was rejected, if it was.
    rejected: Option<String>,
}

struct Loaded {
    _dir: tempfile::TempDir,
    log: SqliteEventLog,
    index: SearchIndex,
    /// The current version of each live resource of the corpus tenant.
    current: HashMap<(String, String), u64>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/search-corpus")
}

fn key_of(resource: &Value) -> (String, String) {
    let resource_type = resource["resourceType"].as_str().expect("every corpus resource has a resourceType");
    let id = resource["id"].as_str().expect("every corpus resource has an id");
    (resource_type.to_string(), id.to_string())
}

fn split_reference(reference: &str) -> (String, String) {
    let (resource_type, id) = reference.split_once('/').unwrap_or_else(|| panic!("'{reference}' is not Type/id"));
    (resource_type.to_string(), id.to_string())
}

/// Appends one version of `resource`, with `meta.versionId` and `meta.lastUpdated` set as the
/// command side would set them.
async fn write(log: &SqliteEventLog, tenant: &str, resource: &Value, version: u64, operation: Operation) {
    let (resource_type, id) = key_of(resource);
    let last_updated = resource["meta"]["lastUpdated"].as_str().unwrap_or(DEFAULT_LAST_UPDATED);
    let (recorded_at, _) = parse_range(last_updated).unwrap_or_else(|| panic!("bad meta.lastUpdated '{last_updated}'"));
    let mut body = resource.clone();
    let meta = body.as_object_mut().expect("a resource is an object").entry("meta").or_insert_with(|| Value::Object(Default::default()));
    meta["versionId"] = Value::String(version.to_string());
    meta["lastUpdated"] = Value::String(format_instant(recorded_at));
    let expected = if version == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version - 1) };
    let event = NewEvent {
        key: StreamKey::new(tenant, resource_type, id),
        expected,
        operation,
        body: Bytes::from(serde_json::to_vec(&body).unwrap()),
    };
    let batch = AppendBatch { transaction_id: uuid::Uuid::new_v4().to_string(), actor: "corpus".into(), recorded_at, events: vec![event] };
    log.append(batch).await.expect("append");
}

async fn load(file: &CorpusFile) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() };
    let log = SqliteEventLog::open(dir.path().join("events.db"), options).unwrap();
    for resource in &file.resources {
        write(&log, DECOY_TENANT, resource, 1, Operation::Create).await;
    }
    let mut current = HashMap::new();
    for resource in &file.resources {
        let key = key_of(resource);
        assert!(current.insert(key.clone(), 1).is_none(), "{key:?} is listed twice in resources");
        write(&log, TENANT, resource, 1, Operation::Create).await;
    }
    for resource in &file.updates {
        let key = key_of(resource);
        let version = current.get(&key).unwrap_or_else(|| panic!("update of {key:?}, which is not a resource of the file")) + 1;
        write(&log, TENANT, resource, version, Operation::Update).await;
        current.insert(key, version);
    }
    for reference in &file.deleted {
        let (resource_type, id) = split_reference(reference);
        let version = current.remove(&(resource_type.clone(), id.clone())).unwrap_or_else(|| panic!("delete of {reference}, which does not exist"));
        let event = NewEvent {
            key: StreamKey::new(TENANT, resource_type, id),
            expected: ExpectedVersion::Exactly(version),
            operation: Operation::Delete,
            body: Bytes::new(),
        };
        let (recorded_at, _) = parse_range(DEFAULT_LAST_UPDATED).unwrap();
        let batch = AppendBatch { transaction_id: uuid::Uuid::new_v4().to_string(), actor: "corpus".into(), recorded_at, events: vec![event] };
        log.append(batch).await.expect("delete");
    }

    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    let events: Vec<Event> = log.read_from(0, 1_000_000).await.unwrap();
    // Two uneven batches, then everything again: applying is idempotent. The first batch goes
    // into a fresh index (built from zero, value indexes created after), the rest into one with
    // its value indexes.
    let (first, second) = events.split_at(events.len() / 3);
    assert!(index.is_building());
    index.apply(first).unwrap();
    index.finish_build().unwrap();
    assert!(!index.is_building());
    index.apply(second).unwrap();
    index.apply(&events).unwrap();
    assert_eq!(index.checkpoint(), log.head().await.unwrap());
    assert_eq!(*index.watch_checkpoint().borrow(), index.checkpoint());
    Loaded { _dir: dir, log, index, current }
}

/// Splits `Type?a=1&b=2` into the searched types and the decoded parameters.
fn parse_request(search: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = search.split_once('?').unwrap_or((search, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let types = if path.is_empty() {
        params.iter().filter(|(name, _)| name == "_type").flat_map(|(_, value)| value.split(',').map(String::from)).collect()
    } else {
        vec![path.to_string()]
    };
    (types, params)
}

impl Loaded {
    /// `Type/id` of the events at `positions`, checking that each is a current version of the
    /// corpus tenant.
    async fn names(&self, positions: &[u64], problems: &mut Vec<String>) -> Vec<String> {
        let events = self.log.read_positions(positions).await.unwrap();
        assert_eq!(events.len(), positions.len(), "every position returned exists in the log");
        let mut names = Vec::with_capacity(events.len());
        for event in events {
            let name = format!("{}/{}", event.key.resource_type, event.key.id);
            if event.key.tenant != TENANT {
                problems.push(format!("{name} of tenant '{}' was returned", event.key.tenant));
            }
            let key = (event.key.resource_type.clone(), event.key.id.clone());
            match self.current.get(&key) {
                Some(version) if *version == event.version => {}
                Some(version) => problems.push(format!("{name} version {} was returned, the current one is {version}", event.version)),
                None => problems.push(format!("{name} (deleted or never created) was returned")),
            }
            names.push(name);
        }
        names
    }

    async fn run(&self, case: &Case, problems: &mut Vec<String>) -> Outcome {
        let (types, params) = parse_request(&case.search);
        let query = match parse_search(types, &params, false) {
            Ok(query) => query,
            Err(issues) => {
                let messages: Vec<String> = issues.iter().map(|issue| format!("{issue:?}")).collect();
                return Outcome { rejected: Some(messages.join("; ")), ..Outcome::default() };
            }
        };
        let snapshot = self.index.checkpoint();
        let mut outcome = Outcome::default();
        let mut offset = 0;
        for page_number in 0.. {
            if page_number == MAX_PAGES {
                problems.push(format!("paging did not end after {MAX_PAGES} pages"));
                break;
            }
            let page = match self.index.search(TENANT, &query, PageRequest { snapshot, offset }) {
                Ok(page) => page,
                Err(SearchError::Unsupported(why)) => return Outcome { rejected: Some(why.to_string()), ..Outcome::default() },
                Err(error) => {
                    problems.push(format!("search failed (a 500): {error}"));
                    return outcome;
                }
            };
            if page_number == 0 {
                outcome.total = page.total;
            }
            if page.matches.len() > query.count {
                problems.push(format!("page {page_number} has {} matches, more than _count {}", page.matches.len(), query.count));
            }
            if page.has_next && page.matches.len() != query.count {
                problems.push(format!("page {page_number} is not full ({} of {}) but has a next page", page.matches.len(), query.count));
            }
            let matches = self.names(&page.matches, problems).await;
            let included = self.names(&page.included, problems).await;
            outcome.matches.extend(matches.iter().cloned());
            outcome.pages.push(matches);
            outcome.included.extend(included);
            if !page.has_next {
                break;
            }
            if page.matches.is_empty() {
                problems.push("an empty page claims a next page".into());
                break;
            }
            offset += page.matches.len();
        }
        let mut seen = BTreeSet::new();
        for name in &outcome.matches {
            if !seen.insert(name) {
                problems.push(format!("{name} is returned more than once"));
            }
        }
        outcome
    }
}

/// Checks one case; returns what is wrong, if anything.
async fn check(loaded: &Loaded, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let outcome = loaded.run(case, &mut problems).await;
    match (&outcome.rejected, case.error) {
        (Some(_), true) => return problems,
        (None, true) => {
            problems.push(format!("expected a rejection, got matches {:?}", outcome.matches));
            return problems;
        }
        (Some(why), false) => {
            problems.push(format!("rejected: {why}"));
            return problems;
        }
        (None, false) => {}
    }
    let (mut expected, mut actual) = (case.expect.clone(), outcome.matches.clone());
    if !case.ordered {
        expected.sort();
        actual.sort();
    }
    if expected != actual {
        problems.push(format!("expected {expected:?}, got {actual:?}"));
    }
    if let Some(total) = case.total {
        if outcome.total != Some(total) {
            problems.push(format!("expected total {total}, got {:?}", outcome.total));
        }
    }
    if let Some(include) = &case.include {
        let expected: BTreeSet<String> = include.iter().cloned().collect();
        if expected != outcome.included {
            problems.push(format!("expected included {expected:?}, got {:?}", outcome.included));
        }
    } else if !outcome.included.is_empty() {
        problems.push(format!("expected nothing included, got {:?}", outcome.included));
    }
    if let Some(pages) = &case.pages {
        if pages != &outcome.pages {
            problems.push(format!("expected pages {pages:?}, got {:?}", outcome.pages));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_corpus() {
    let filter = std::env::var("CORPUS_FILTER").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("testdata/search-corpus exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus has files");

    let (mut passed, mut failures, mut skipped) = (0usize, Vec::new(), Vec::new());
    let mut per_file = Vec::new();
    for path in &files {
        let file_name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let file: CorpusFile = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{file_name}: {error}"));
        let mut names = BTreeSet::new();
        for case in &file.cases {
            assert!(names.insert(case.name.as_str()), "{file_name}: case name '{}' is used twice", case.name);
        }
        per_file.push(format!("{file_name}: {} cases ({})", file.cases.len(), file.description));
        let selected: Vec<&Case> = file
            .cases
            .iter()
            .filter(|case| filter.as_deref().is_none_or(|text| file_name.contains(text) || case.name.contains(text)))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let loaded = load(&file).await;
        for case in selected {
            if let Some(reason) = &case.skip {
                skipped.push(format!("{file_name}: {}: {reason}", case.name));
                continue;
            }
            // As planned, then with every criterion tested per resource (no driver).
            for (label, planning) in [("", Planning::Auto), (" (filters only)", Planning::FiltersOnly)] {
                loaded.index.set_planning(planning);
                let problems = check(&loaded, case).await;
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
