//! The index's write side: idempotent apply, versions and deletes seen at snapshots, a build
//! from zero (value indexes created when caught up, the checkpoint published only then), an
//! interrupted build started over, and an index file of an older layout refused.

use bytes::Bytes;
use event_log::{Event, Operation, StreamKey};
use fhir_core::search::parse_search;
use projector_search::store::IndexError;
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
