//! The index's write side: idempotent apply, versions and deletes seen at snapshots, a build
//! from zero (value indexes created when caught up, the checkpoint published only then), an
//! interrupted build started over, a deferred build of an index far behind resumed, a bulk
//! load's hold on the build, and an index file of an older layout refused.

use bytes::Bytes;
use event_log::{Event, Operation, StreamKey};
use fhir_core::search::parse_search;
use projector_search::store::{IndexError, DEFER_INDEXES_FROM};
use projector_search::{PageRequest, SearchIndex};
use serde_json::json;

const TENANT: &str = "t";

fn event(position: u64, id: &str, version: u64, operation: Operation, family: &str) -> Event {
    let body = match operation {
        Operation::Delete => Bytes::new(),
        _ => Bytes::from(json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}).to_string()),
    };
    Event {
        position,
        key: StreamKey::new(TENANT, "Patient", id),
        version,
        operation,
        recorded_at: fhir_core::instant::now(),
        transaction_id: format!("tx{position}"),
        actor: "test".into(),
        body,
        hash: [0; 32],
        prev_hash: [0; 32],
        envelope_version: 1,
    }
}

/// Positions of `Patient?name=<family>` as of `snapshot`.
fn find(index: &SearchIndex, family: &str, snapshot: u64) -> Vec<u64> {
    let query = parse_search(vec!["Patient".to_string()], &[("name".to_string(), family.to_string())], true).expect("query");
    index.search(TENANT, &query, PageRequest { snapshot, offset: 0 }).expect("search").matches
}

fn history() -> Vec<Event> {
    vec![
        event(1, "a", 1, Operation::Create, "Alpha"),
        event(2, "b", 1, Operation::Create, "Beta"),
        event(3, "a", 2, Operation::Update, "Gamma"),
        event(4, "b", 2, Operation::Delete, ""),
    ]
}

#[test]
fn versions_and_deletes_at_snapshots_and_idempotent_replay() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    index.apply(&history()[..2]).unwrap();
    index.finish_build().unwrap();
    index.apply(&history()[2..]).unwrap();
    // Replays, whole and in part, change nothing.
    index.apply(&history()).unwrap();
    index.apply(&history()[1..3]).unwrap();
    assert_eq!(index.checkpoint(), 4);
    assert_eq!(find(&index, "alpha", 2), vec![1], "version 1 was current at position 2");
    assert_eq!(find(&index, "alpha", 4), Vec::<u64>::new(), "superseded by version 2");
    assert_eq!(find(&index, "gamma", 4), vec![3]);
    assert_eq!(find(&index, "beta", 3), vec![2]);
    assert_eq!(find(&index, "beta", 4), Vec::<u64>::new(), "deleted");
}

#[test]
fn a_build_from_zero_publishes_its_checkpoint_once_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    assert!(index.is_building());
    let watch = index.watch_checkpoint();
    index.apply(&history()).unwrap();
    assert_eq!(index.checkpoint(), 4);
    assert_eq!(*watch.borrow(), 0, "not searchable before the value indexes exist");
    assert_eq!(find(&index, "gamma", 4), vec![3], "but correct");
    index.finish_build().unwrap();
    assert!(!index.is_building());
    assert_eq!(*watch.borrow(), 4);
    assert_eq!(find(&index, "gamma", 4), vec![3]);
    // Built: reopening keeps everything.
    drop(index);
    let reopened = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    assert!(!reopened.is_building());
    assert_eq!((reopened.checkpoint(), *reopened.watch_checkpoint().borrow()), (4, 4));
    assert_eq!(find(&reopened, "gamma", 4), vec![3]);
}

#[test]
fn an_interrupted_build_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.db");
    let index = SearchIndex::open(&path).unwrap();
    index.apply(&history()[..2]).unwrap();
    drop(index);
    let reopened = SearchIndex::open(&path).unwrap();
    assert!(reopened.is_building());
    assert_eq!(reopened.checkpoint(), 0, "replayed from zero");
    reopened.apply(&history()).unwrap();
    reopened.finish_build().unwrap();
    assert_eq!(find(&reopened, "gamma", 4), vec![3]);
}

#[test]
fn a_bulk_load_holds_the_build_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    assert!(index.hold_build(1).unwrap(), "an index building from zero stays building, whatever the load");
    let watch = index.watch_checkpoint();
    index.apply(&history()[..2]).unwrap();
    index.finish_build().unwrap();
    assert!(index.is_building() && index.is_held(), "catching up does not end a held build");
    assert_eq!(*watch.borrow(), 0);
    assert_eq!(find(&index, "beta", 2), vec![2], "searches stay correct meanwhile");
    assert!(index.release_build());
    assert!(!index.release_build(), "released once");
    index.finish_build().unwrap();
    assert!(!index.is_building());
    assert_eq!(*watch.borrow(), 2);

    // A built index: only a load larger than the index (and not small) is worth the re-sort.
    assert!(!index.hold_build(DEFER_INDEXES_FROM - 1).unwrap());
    assert!(!index.is_building() && !index.is_held());
    assert!(index.hold_build(DEFER_INDEXES_FROM).unwrap(), "two rows: a larger load defers the value indexes");
    index.apply(&history()[2..]).unwrap();
    index.finish_build().unwrap();
    assert_eq!(*watch.borrow(), 2, "held: nothing published");
    index.release_build();
    index.finish_build().unwrap();
    assert_eq!(*watch.borrow(), 4);
    assert_eq!(find(&index, "gamma", 4), vec![3]);
}

#[test]
fn a_built_index_far_behind_defers_its_value_indexes_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.db");
    let index = SearchIndex::open(&path).unwrap();
    index.apply(&history()[..2]).unwrap();
    index.finish_build().unwrap();
    index.behind(DEFER_INDEXES_FROM - 1).unwrap();
    assert!(!index.is_building(), "a small backlog is applied as it comes");
    index.behind(DEFER_INDEXES_FROM).unwrap();
    assert!(index.is_building(), "a backlog larger than the index defers its value indexes");
    let watch = index.watch_checkpoint();
    index.apply(&history()[2..]).unwrap();
    assert_eq!(*watch.borrow(), 2, "what is applied meanwhile is not published");
    assert_eq!(find(&index, "gamma", 4), vec![3], "but searches stay correct");
    drop(index);
    let reopened = SearchIndex::open(&path).unwrap();
    assert!(reopened.is_building(), "the deferred build resumes");
    assert_eq!(reopened.checkpoint(), 4, "without starting over");
    reopened.finish_build().unwrap();
    assert!(!reopened.is_building());
    assert_eq!(*reopened.watch_checkpoint().borrow(), 4);
    assert_eq!(find(&reopened, "gamma", 4), vec![3]);
    assert_eq!(find(&reopened, "alpha", 4), Vec::<u64>::new());
}

#[test]
fn an_older_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch("CREATE TABLE resources (row INTEGER PRIMARY KEY); PRAGMA user_version = 0;").unwrap();
    drop(old);
    match SearchIndex::open(&path) {
        Err(IndexError::OldSchema { found: 0, .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("an old layout was opened"),
    }
}

fn observation(position: u64, id: &str, codings: serde_json::Value) -> Event {
    let mut event = event(position, id, 1, Operation::Create, "");
    event.key = StreamKey::new(TENANT, "Observation", id);
    event.body = Bytes::from(json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"coding": codings}}).to_string());
    event
}

/// A page of `Observation?code=...&_count=2` at `offset`.
fn code_page(index: &SearchIndex, code: &str, snapshot: u64, offset: usize) -> (Vec<u64>, bool) {
    let params = [("code".to_string(), code.to_string()), ("_count".to_string(), "2".to_string())];
    let query = parse_search(vec!["Observation".to_string()], &params, true).expect("query");
    let page = index.search(TENANT, &query, PageRequest { snapshot, offset }).expect("search");
    (page.matches, page.has_next)
}

/// An exact token is read from its value index page by page: each match once (a coding repeated
/// in a resource included), in row order, only current versions.
#[test]
fn exact_token_pages() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    let bp = json!({"system": "http://loinc.org", "code": "85354-9"});
    let mut events = vec![
        observation(1, "o1", json!([bp, bp])),
        observation(2, "o2", json!([bp])),
        observation(3, "o3", json!([{"system": "http://loinc.org", "code": "other"}])),
        observation(4, "o4", json!([bp, {"system": "http://snomed.info/sct", "code": "85354-9"}])),
        observation(5, "o5", json!([bp])),
    ];
    let mut deleted = event(6, "o2", 2, Operation::Delete, "");
    deleted.key = StreamKey::new(TENANT, "Observation", "o2");
    events.push(deleted);
    index.apply(&events).unwrap();
    index.finish_build().unwrap();
    assert_eq!(code_page(&index, "http://loinc.org|85354-9", 6, 0), (vec![1, 4], true));
    assert_eq!(code_page(&index, "http://loinc.org|85354-9", 6, 2), (vec![5], false));
    assert_eq!(code_page(&index, "http://loinc.org|85354-9", 5, 0), (vec![1, 2], true), "o2 before its delete");
    assert_eq!(code_page(&index, "85354-9", 6, 0), (vec![1, 4], true), "any system");
    assert_eq!(code_page(&index, "85354-9", 6, 2), (vec![5], false));
}

/// A code most resources have (more than a probe counts) is read by scanning the type in row
/// order; a total still counts every match.
#[test]
fn a_dense_code_pages_by_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search.db")).unwrap();
    let events: Vec<Event> = (1..=1500u64)
        .map(|position| {
            let mut event = observation(position, &format!("o{position}"), json!([{"system": "http://loinc.org", "code": "x"}]));
            let status = if position % 3 == 0 { "amended" } else { "final" };
            event.body = Bytes::from(json!({"resourceType": "Observation", "id": format!("o{position}"), "status": status}).to_string());
            event
        })
        .collect();
    index.apply(&events).unwrap();
    index.finish_build().unwrap();
    let params = [("status".to_string(), "final".to_string()), ("_count".to_string(), "4".to_string()), ("_total".to_string(), "accurate".to_string())];
    let query = parse_search(vec!["Observation".to_string()], &params, true).expect("query");
    let first = index.search(TENANT, &query, PageRequest { snapshot: 1500, offset: 0 }).expect("search");
    assert_eq!((first.matches, first.total, first.has_next), (vec![1, 2, 4, 5], Some(1000), true));
    let last = index.search(TENANT, &query, PageRequest { snapshot: 1500, offset: 996 }).expect("search");
    assert_eq!((last.matches, last.has_next), (vec![1495, 1496, 1498, 1499], false));
}
