//! Behaviour of the history read model: idempotent apply, ordering, paging, `_since`/`_at`,
//! tenants, and a restart that keeps the checkpoint.

mod common;

use common::{query, sample, T0};
use event_log::StreamKey;
use fhir_core::history::{HistoryQuery, HistoryScope};
use projector_history::{CurrentState, HistoryStore};
use time::Duration;

fn open() -> (tempfile::TempDir, HistoryStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = HistoryStore::open(&dir.path().join("history.db")).unwrap();
    (dir, store)
}

#[test]
fn scopes_and_order() {
    let (_dir, store) = open();
    store.apply(&sample()).unwrap();
    assert_eq!(store.checkpoint(), 6);
    assert_eq!(store.history("t1", &query(HistoryScope::System)).unwrap().positions, vec![6, 4, 3, 2, 1]);
    assert_eq!(store.history("t1", &query(HistoryScope::Type("Patient".into()))).unwrap().positions, vec![6, 4, 2, 1]);
    assert_eq!(
        store.history("t1", &query(HistoryScope::Instance("Patient".into(), "a".into()))).unwrap().positions,
        vec![6, 4, 1]
    );
    assert_eq!(store.history("t2", &query(HistoryScope::System)).unwrap().positions, vec![5], "tenants are separate");
    assert_eq!(
        store.current(&StreamKey::new("t1", "Patient", "a")).unwrap(),
        Some(CurrentState { version: 3, position: 6, deleted: true })
    );
}

#[test]
fn applying_again_or_out_of_order_changes_nothing() {
    let (_dir, store) = open();
    let events = sample();
    store.apply(&events).unwrap();
    store.apply(&events).unwrap();
    store.apply(&events[..2]).unwrap();
    assert_eq!(store.checkpoint(), 6, "the checkpoint never goes back");
    assert_eq!(store.history("t1", &query(HistoryScope::System)).unwrap().positions, vec![6, 4, 3, 2, 1]);
    // An older version applied after a newer one does not overwrite the current state.
    store.apply(&events[3..4]).unwrap();
    assert_eq!(store.current(&StreamKey::new("t1", "Patient", "a")).unwrap().unwrap().version, 3);
}

#[test]
fn paging_with_cursor() {
    let (_dir, store) = open();
    store.apply(&sample()).unwrap();
    let mut page_query = HistoryQuery { count: 2, ..query(HistoryScope::System) };
    let first = store.history("t1", &page_query).unwrap();
    assert_eq!(first.positions, vec![6, 4]);
    assert_eq!(first.next_before, Some(4));
    page_query.before = first.next_before;
    let second = store.history("t1", &page_query).unwrap();
    assert_eq!(second.positions, vec![3, 2]);
    page_query.before = second.next_before;
    let third = store.history("t1", &page_query).unwrap();
    assert_eq!(third.positions, vec![1]);
    assert_eq!(third.next_before, None);
}

#[test]
fn since_and_at() {
    let (_dir, store) = open();
    store.apply(&sample()).unwrap();
    let since = HistoryQuery { since: Some(T0 + Duration::minutes(3)), ..query(HistoryScope::System) };
    assert_eq!(store.history("t1", &since).unwrap().positions, vec![6, 4]);
    // At minute 2.5, Patient/a was at version 1 (version 2 came at minute 3).
    let at = HistoryQuery {
        at: Some((T0 + Duration::seconds(150), T0 + Duration::seconds(151))),
        ..query(HistoryScope::Instance("Patient".into(), "a".into()))
    };
    assert_eq!(store.history("t1", &at).unwrap().positions, vec![1]);
    // Over minutes 3..6 both version 2 and the delete were current.
    let at = HistoryQuery { at: Some((T0 + Duration::minutes(3), T0 + Duration::minutes(6))), ..at };
    assert_eq!(store.history("t1", &at).unwrap().positions, vec![6, 4]);
}

#[test]
fn checkpoint_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let store = HistoryStore::open(&path).unwrap();
        store.apply(&sample()[..3]).unwrap();
    }
    let store = HistoryStore::open(&path).unwrap();
    assert_eq!(store.checkpoint(), 3);
    store.apply(&sample()[3..]).unwrap();
    assert_eq!(store.history("t1", &query(HistoryScope::System)).unwrap().positions, vec![6, 4, 3, 2, 1]);
}

#[test]
fn a_snapshot_of_a_type_as_of_a_position() {
    let (_dir, store) = open();
    store.apply(&sample()).unwrap();
    let live = |as_of: u64, since_ms: Option<i64>, after: u64, limit: usize| store.live_at("t1", "Patient", as_of, since_ms, after, limit).unwrap();
    assert_eq!(live(6, None, 0, 10), vec![2], "a is deleted at 6");
    assert_eq!(live(5, None, 0, 10), vec![2, 4], "a's second version, b's first");
    assert_eq!(live(3, None, 0, 10), vec![1, 2], "before a's update");
    assert_eq!(live(1, None, 0, 10), vec![1]);
    assert_eq!(live(5, None, 2, 10), vec![4], "paged after a position");
    assert_eq!(live(5, None, 0, 1), vec![2], "at most the limit");
    let minute_two = fhir_core::instant::unix_millis(T0 + Duration::minutes(2));
    assert_eq!(live(5, Some(minute_two), 0, 10), vec![4], "recorded at or after _since");
    assert_eq!(store.live_at("t2", "Patient", 6, None, 0, 10).unwrap(), vec![5], "tenants are separate");
    assert_eq!(store.live_at("t1", "Observation", 6, None, 0, 10).unwrap(), vec![3]);
}
