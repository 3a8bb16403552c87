//! The runner of the search conformance corpus (`testdata/search-corpus/*.json`, described in
//! the README beside it), shared by every search backend's test (each includes this file with
//! `#[path]`): the files and cases, the log they are loaded into, paging through a backend's
//! results and checking them against the expected ones.
//!
//! Each corpus file is loaded into a fresh event log: its resources are created (one append
//! each, `recorded_at` taken from `meta.lastUpdated`), then its `updates` and `deleted` are
//! applied. The same resources are also written, before any of that, under a decoy tenant, so
//! that every case also checks that a search never sees another tenant's data. Each case's query
//! is parsed with the shared `parse_search`, run page by page (offset paging), and its matches
//! (mapped back to `Type/id` through the log) compared with the expected ones.
//!
//! `CORPUS_FILTER=text` runs only the files or cases whose name contains `text`.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use fhir_core::instant::{format_instant, parse_range};
use fhir_core::search::{parse_search, SearchQuery};
use serde::Deserialize;
use serde_json::Value;

pub const TENANT: &str = "corpus";
/// Holds a copy of every file's resources; none of them may ever be found.
pub const DECOY_TENANT: &str = "decoy";
/// `recorded_at` of a resource without `meta.lastUpdated`.
pub const DEFAULT_LAST_UPDATED: &str = "2024-01-01T00:00:00.000Z";
/// More pages than this means the paging never ends.
pub const MAX_PAGES: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusFile {
    #[serde(default)]
    pub description: String,
    resources: Vec<Value>,
    /// New versions applied after every resource is created (each one's id must exist).
    #[serde(default)]
    updates: Vec<Value>,
    /// `Type/id` of resources deleted after the updates.
    #[serde(default)]
    deleted: Vec<String>,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// `Type?query` (a type search) or `?query` (a system search; types from `_type`).
    pub search: String,
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
    pub skip: Option<String>,
    /// Why the expectation is what it is (for readers; the runner ignores it).
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
}

/// What running one case produced.
#[derive(Debug, Default)]
pub struct Outcome {
    matches: Vec<String>,
    pages: Vec<Vec<String>>,
    included: BTreeSet<String>,
    total: Option<u64>,
    /// Why the query was rejected, if it was.
    rejected: Option<String>,
}

/// One page of a backend's results, as log positions.
pub struct Page {
    pub matches: Vec<u64>,
    pub included: Vec<u64>,
    pub total: Option<u64>,
    pub has_next: bool,
    /// Where the next page starts, for a backend that pages from the last match.
    pub next_after: Option<String>,
}

/// What a backend made of one page request.
pub enum Searched {
    Page(Page),
    /// The query is refused as unsupported (a 400).
    Rejected(String),
    /// The search failed (a 500).
    Failed(String),
}

/// A search index under test, loaded with a corpus file's log.
pub trait Backend {
    /// A page at `offset`, or continuing from `after` (the previous page's `next_after`).
    fn search(&self, query: &SearchQuery, offset: usize, after: Option<String>) -> impl Future<Output = Searched>;
}

/// A corpus file's event log, with the current version of each live resource of the corpus tenant.
pub struct Loaded {
    _dir: tempfile::TempDir,
    pub log: SqliteEventLog,
    current: HashMap<(String, String), u64>,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../testdata/search-corpus")
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

/// Writes a corpus file into a fresh log.
pub async fn load(file: &CorpusFile) -> Loaded {
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

    Loaded { _dir: dir, log, current }
}

pub fn parse_request(search: &str) -> (Vec<String>, Vec<(String, String)>) {
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

    async fn run(&self, backend: &impl Backend, case: &Case, problems: &mut Vec<String>) -> Outcome {
        let (types, params) = parse_request(&case.search);
        let query = match parse_search(types, &params, false) {
            Ok(query) => query,
            Err(issues) => {
                let messages: Vec<String> = issues.iter().map(|issue| format!("{issue:?}")).collect();
                return Outcome { rejected: Some(messages.join("; ")), ..Outcome::default() };
            }
        };
        let mut outcome = Outcome::default();
        let mut offset = 0;
        let mut after = None;
        for page_number in 0.. {
            if page_number == MAX_PAGES {
                problems.push(format!("paging did not end after {MAX_PAGES} pages"));
                break;
            }
            let page = match backend.search(&query, offset, after.take()).await {
                Searched::Page(page) => page,
                Searched::Rejected(why) => return Outcome { rejected: Some(why), ..Outcome::default() },
                Searched::Failed(error) => {
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
            after = page.next_after;
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
pub async fn check(loaded: &Loaded, backend: &impl Backend, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let outcome = loaded.run(backend, case, &mut problems).await;
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

/// The corpus files (name and content), checked for unique case names.
pub fn files() -> Vec<(String, CorpusFile)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("testdata/search-corpus exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "the corpus has files");
    paths
        .iter()
        .map(|path| {
            let file_name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(path).unwrap();
            let file: CorpusFile = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{file_name}: {error}"));
            let mut names = BTreeSet::new();
            for case in &file.cases {
                assert!(names.insert(case.name.as_str()), "{file_name}: case name '{}' is used twice", case.name);
            }
            (file_name, file)
        })
        .collect()
}

/// The cases of a file that `CORPUS_FILTER` selects.
pub fn selected<'a>(file_name: &str, file: &'a CorpusFile) -> Vec<&'a Case> {
    let filter = std::env::var("CORPUS_FILTER").ok();
    file.cases.iter().filter(|case| filter.as_deref().is_none_or(|text| file_name.contains(text) || case.name.contains(text))).collect()
}
