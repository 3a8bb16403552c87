//! The behaviour suite every [`EventLog`] implementation must pass, written once against the trait.
//!
//! Each function takes a fresh, empty log and panics on the first broken expectation, like the
//! integration functions of `object_store`. An implementation's test file runs all of them with
//! [`event_log_suite!`](crate::event_log_suite), which needs `tokio` among its dev-dependencies:
//!
//! ```ignore
//! async fn fresh_log() -> (Arc<dyn EventLog>, tempfile::TempDir) { ... }
//! event_log::event_log_suite!(fresh_log);
//! ```
//!
//! Implementation-specific checks (tampering with stored rows, reopening, group commit counters)
//! live beside the implementation's own tests and may call these functions too.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::hash::{recompute, verify_log, verify_stream, ZERO_HASH};
use crate::model::{AppendBatch, Appended, Event, ExpectedVersion, NewEvent, Operation, StreamKey, ENVELOPE_VERSION};
use crate::{EventLog, LogError};

/// Runs every suite function as its own `#[tokio::test]` against logs made by `$fresh`, an async
/// fn returning `(Arc<dyn EventLog>, guard)`; the guard (a temporary directory, a table) lives
/// until the test ends.
///
/// `event_log_suite!(@without_contention fresh_log)` runs all but the two contention functions,
/// for a stand-in too slow for them at full size; call their `_scaled` forms beside it.
#[macro_export]
macro_rules! event_log_suite {
    ($fresh:path) => {
        $crate::event_log_suite!(@without_contention $fresh);
        $crate::event_log_suite!(@tests $fresh; concurrent_updates_to_one_resource, concurrent_appends_to_different_streams);
    };
    (@without_contention $fresh:path) => {
        $crate::event_log_suite!(@tests $fresh;
            create_then_second_create_conflicts,
            update_checks_expected_version,
            multi_stream_append_is_atomic,
            duplicate_stream_and_empty_append_are_rejected,
            events_read_back_exactly,
            positions_increase_and_read_from_pages_everything,
            reads_by_stream_version_latest_and_position,
            tenants_are_isolated,
            hash_chain_is_valid_after_writes,
            watch_head_advances,
        );
    };
    (@tests $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (log, _guard) = $fresh().await;
                let _ = $crate::suite::$name(log).await;
            }
        )*
    };
}

/// How long a suite function waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

fn key(tenant: &str, resource_type: &str, id: &str) -> StreamKey {
    StreamKey::new(tenant, resource_type, id)
}

fn json_body(key: &StreamKey, note: &str) -> Bytes {
    Bytes::from(format!(r#"{{"resourceType":"{}","id":"{}","note":"{note}"}}"#, key.resource_type, key.id))
}

fn create(key: &StreamKey, note: &str) -> NewEvent {
    NewEvent {
        key: key.clone(),
        expected: ExpectedVersion::NoStream,
        operation: Operation::Create,
        body: json_body(key, note),
    }
}

fn update(key: &StreamKey, after_version: u64, note: &str) -> NewEvent {
    NewEvent {
        key: key.clone(),
        expected: ExpectedVersion::Exactly(after_version),
        operation: Operation::Update,
        body: json_body(key, note),
    }
}

fn batch(events: Vec<NewEvent>) -> AppendBatch {
    static NEXT_TRANSACTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let number = NEXT_TRANSACTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    AppendBatch {
        transaction_id: format!("suite-tx-{number}"),
        actor: "suite".to_owned(),
        recorded_at: OffsetDateTime::now_utc(),
        events,
    }
}

async fn append_one(log: &dyn EventLog, event: NewEvent) -> Result<Appended, LogError> {
    let mut appended = log.append(batch(vec![event])).await?;
    assert_eq!(appended.len(), 1, "one event appended, one answer");
    Ok(appended.remove(0))
}

fn assert_conflict(outcome: Result<impl std::fmt::Debug, LogError>, expected_key: &StreamKey) {
    match outcome {
        Err(LogError::Conflict { key, .. }) => assert_eq!(&key, expected_key, "conflict names the stream"),
        other => panic!("expected a conflict on {expected_key:?}, got {other:?}"),
    }
}

/// Reads the whole log after `after`, in pages of `page`.
async fn read_all_after(log: &dyn EventLog, after: u64, page: usize) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    let mut position = after;
    loop {
        let chunk = log.read_from(position, page).await.unwrap();
        let Some(last) = chunk.last() else { break };
        if chunk.len() > page {
            let overflow = &chunk[page - 1..];
            assert!(overflow.iter().all(|e| e.transaction_id == last.transaction_id), "read_from goes past the limit only to finish an append");
        }
        position = last.position;
        events.extend(chunk);
    }
    events
}

/// Creating a stream twice: the second create is a conflict and writes nothing.
pub async fn create_then_second_create_conflicts(log: Arc<dyn EventLog>) {
    let patient = key("t1", "Patient", "p1");
    let created = append_one(&*log, create(&patient, "first")).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.key, patient);

    assert_conflict(append_one(&*log, create(&patient, "second")).await, &patient);
    let stream = log.read_stream(&patient).await.unwrap();
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].body, json_body(&patient, "first"));
    assert_eq!(log.head().await.unwrap(), created.position);
}

/// Updates succeed only on the stream's current version; a stale or future version, or an
/// update of a stream that does not exist, is a conflict.
pub async fn update_checks_expected_version(log: Arc<dyn EventLog>) {
    let patient = key("t1", "Patient", "p1");
    assert_conflict(append_one(&*log, update(&patient, 1, "no such stream")).await, &patient);
    assert_conflict(append_one(&*log, update(&patient, 0, "no such stream")).await, &patient);
    assert!(log.read_stream(&patient).await.unwrap().is_empty());

    append_one(&*log, create(&patient, "v1")).await.unwrap();
    let second = append_one(&*log, update(&patient, 1, "v2")).await.unwrap();
    assert_eq!(second.version, 2);
    assert_conflict(append_one(&*log, update(&patient, 1, "stale")).await, &patient);
    assert_conflict(append_one(&*log, update(&patient, 3, "future")).await, &patient);

    let deleted = log
        .append(batch(vec![NewEvent {
            key: patient.clone(),
            expected: ExpectedVersion::Exactly(2),
            operation: Operation::Delete,
            body: Bytes::new(),
        }]))
        .await
        .unwrap();
    assert_eq!(deleted[0].version, 3);
    let third = append_one(&*log, update(&patient, 3, "revived")).await.unwrap();
    assert_eq!(third.version, 4);

    let versions: Vec<(u64, Operation)> =
        log.read_stream(&patient).await.unwrap().iter().map(|event| (event.version, event.operation)).collect();
    assert_eq!(
        versions,
        [(1, Operation::Create), (2, Operation::Update), (3, Operation::Delete), (4, Operation::Update)]
    );
}

/// One bad expected version in a multi-stream append writes none of its events.
pub async fn multi_stream_append_is_atomic(log: Arc<dyn EventLog>) {
    let a = key("t1", "Patient", "a");
    let b = key("t1", "Observation", "b");
    let c = key("t1", "Encounter", "c");
    append_one(&*log, create(&a, "a1")).await.unwrap();
    append_one(&*log, create(&b, "b1")).await.unwrap();
    let head = log.head().await.unwrap();

    let outcome = log.append(batch(vec![update(&a, 1, "a2"), create(&c, "c1"), update(&b, 5, "b-wrong")])).await;
    assert_conflict(outcome, &b);
    assert_eq!(log.head().await.unwrap(), head, "a failed append moves no head");
    assert_eq!(log.read_latest(&a).await.unwrap().unwrap().version, 1);
    assert!(log.read_latest(&c).await.unwrap().is_none());
    assert_eq!(read_all_after(&*log, head, 100).await, Vec::<Event>::new());

    let outcome = log.append(batch(vec![update(&a, 1, "a2"), create(&b, "b-exists")])).await;
    assert_conflict(outcome, &b);
    assert_eq!(log.head().await.unwrap(), head);

    let appended = log.append(batch(vec![update(&a, 1, "a2"), create(&c, "c1"), update(&b, 1, "b2")])).await.unwrap();
    let keys_and_versions: Vec<(StreamKey, u64)> =
        appended.iter().map(|appended| (appended.key.clone(), appended.version)).collect();
    assert_eq!(keys_and_versions, [(a.clone(), 2), (c.clone(), 1), (b.clone(), 2)], "answers follow request order");
    let positions: Vec<u64> = appended.iter().map(|appended| appended.position).collect();
    assert_eq!(positions, [head + 1, head + 2, head + 3], "one append takes consecutive positions");
    assert_eq!(log.head().await.unwrap(), head + 3);
}

/// A batch naming one stream twice, or no event at all, is refused and writes nothing.
pub async fn duplicate_stream_and_empty_append_are_rejected(log: Arc<dyn EventLog>) {
    let patient = key("t1", "Patient", "p1");
    let other = key("t1", "Patient", "p2");
    let outcome =
        log.append(batch(vec![create(&patient, "one"), create(&other, "x"), update(&patient, 1, "two")])).await;
    match outcome {
        Err(LogError::DuplicateStream { key }) => assert_eq!(key, patient),
        other => panic!("expected DuplicateStream, got {other:?}"),
    }
    match log.append(batch(Vec::new())).await {
        Err(LogError::EmptyAppend) => {}
        other => panic!("expected EmptyAppend, got {other:?}"),
    }
    assert_eq!(log.head().await.unwrap(), 0);
    assert!(log.read_stream(&patient).await.unwrap().is_empty());
    assert!(log.read_stream(&other).await.unwrap().is_empty());
}

/// Every envelope field and the body come back exactly as appended; recorded_at keeps its
/// nanoseconds (as an instant, whatever offset it was given in).
pub async fn events_read_back_exactly(log: Arc<dyn EventLog>) {
    let patient = key("tenant-ü", "Patient", "p-1.2");
    let observation = key("tenant-ü", "Observation", "o1");
    let odd_body =
        Bytes::from_static("{ \"resourceType\" : \"Patient\",\n \"name\": [{\"text\": \"Zoë 山田\"}] }\n".as_bytes());
    let recorded_at = datetime!(2024-02-29 23:59:59.123456789 +02:00);
    let first = AppendBatch {
        transaction_id: "tx-exact-1".to_owned(),
        actor: "Practitioner/42".to_owned(),
        recorded_at,
        events: vec![
            NewEvent {
                key: patient.clone(),
                expected: ExpectedVersion::NoStream,
                operation: Operation::Create,
                body: odd_body.clone(),
            },
            create(&observation, "o"),
        ],
    };
    let appended = log.append(first).await.unwrap();

    let stored = log.read_version(&patient, 1).await.unwrap().unwrap();
    assert_eq!(stored.position, appended[0].position);
    assert_eq!(stored.key, patient);
    assert_eq!(stored.version, 1);
    assert_eq!(stored.operation, Operation::Create);
    assert_eq!(stored.recorded_at, recorded_at);
    assert_eq!(stored.recorded_at.unix_timestamp_nanos(), recorded_at.unix_timestamp_nanos());
    assert_eq!(stored.transaction_id, "tx-exact-1");
    assert_eq!(stored.actor, "Practitioner/42");
    assert_eq!(stored.body, odd_body);
    assert_eq!(stored.prev_hash, ZERO_HASH);
    assert_eq!(stored.hash, recompute(&stored));
    assert_eq!(stored.envelope_version, ENVELOPE_VERSION);

    let sibling = log.read_version(&observation, 1).await.unwrap().unwrap();
    assert_eq!(sibling.transaction_id, stored.transaction_id, "one append shares its transaction id");
    assert_eq!(sibling.recorded_at, stored.recorded_at, "one append shares its commit time");

    let deletion = AppendBatch {
        transaction_id: "tx-exact-2".to_owned(),
        actor: "system".to_owned(),
        recorded_at: datetime!(2024-03-01 00:00:00 UTC),
        events: vec![NewEvent {
            key: patient.clone(),
            expected: ExpectedVersion::Exactly(1),
            operation: Operation::Delete,
            body: Bytes::new(),
        }],
    };
    log.append(deletion).await.unwrap();
    let deleted = log.read_latest(&patient).await.unwrap().unwrap();
    assert_eq!(deleted.version, 2);
    assert_eq!(deleted.operation, Operation::Delete);
    assert!(deleted.body.is_empty());
    assert_eq!(deleted.prev_hash, stored.hash, "each version links to the previous one");
    assert_eq!(deleted.hash, recompute(&deleted));
}

/// Positions start after the head, increase by one per event in commit order, and `read_from`
/// pages through everything without gaps or repeats.
pub async fn positions_increase_and_read_from_pages_everything(log: Arc<dyn EventLog>) {
    let start = log.head().await.unwrap();
    let mut expected: Vec<(u64, StreamKey, u64)> = Vec::new();
    for round in 0..25u64 {
        let width = (round % 4) as usize + 1;
        let events = (0..width).map(|index| create(&key("t1", "Patient", &format!("r{round}-{index}")), "x")).collect();
        let appended = log.append(batch(events)).await.unwrap();
        for appended in appended {
            expected.push((appended.position, appended.key, appended.version));
        }
    }
    let positions: Vec<u64> = expected.iter().map(|(position, ..)| *position).collect();
    let contiguous: Vec<u64> = (start + 1..=start + positions.len() as u64).collect();
    assert_eq!(positions, contiguous, "positions are consecutive in commit order");
    assert_eq!(log.head().await.unwrap(), start + positions.len() as u64);

    for page in [1, 7, 1_000] {
        let events = read_all_after(&*log, start, page).await;
        let seen: Vec<(u64, StreamKey, u64)> =
            events.into_iter().map(|event| (event.position, event.key, event.version)).collect();
        assert_eq!(seen, expected, "paging by {page} sees every event once, in order");
    }
    // Round r appended (r % 4) + 1 events: 1, 2, 3, 4, 1, ... Positions start+1..start+10 hold
    // rounds 0 to 3 exactly, so a read of 3 after them ends at the limit, and a read of 3 after
    // start+1 (round 1's two events, then the first of round 2's three) must finish round 2.
    let middle = start + 10;
    let tail = log.read_from(middle, 3).await.unwrap();
    assert_eq!(tail.iter().map(|event| event.position).collect::<Vec<_>>(), [middle + 1, middle + 2, middle + 3]);
    let whole = log.read_from(start + 1, 3).await.unwrap();
    assert_eq!(
        whole.iter().map(|event| event.position).collect::<Vec<_>>(),
        (start + 2..=start + 6).collect::<Vec<_>>(),
        "an append is never split: rounds 1 (2 events) and 2 (3 events)"
    );
    assert!(log.read_from(middle, 0).await.unwrap().is_empty(), "a limit of 0 reads nothing");
    assert!(log.read_from(log.head().await.unwrap(), 10).await.unwrap().is_empty());
    assert!(log.read_from(u64::MAX, 10).await.unwrap().is_empty());
}

/// The point reads agree with each other and with the stream.
pub async fn reads_by_stream_version_latest_and_position(log: Arc<dyn EventLog>) {
    let patient = key("t1", "Patient", "p1");
    let missing = key("t1", "Patient", "missing");
    append_one(&*log, create(&patient, "v1")).await.unwrap();
    append_one(&*log, create(&key("t1", "Patient", "other"), "other")).await.unwrap();
    append_one(&*log, update(&patient, 1, "v2")).await.unwrap();
    let third = append_one(&*log, update(&patient, 2, "v3")).await.unwrap();

    let stream = log.read_stream(&patient).await.unwrap();
    assert_eq!(stream.iter().map(|event| event.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(stream.windows(2).all(|pair| pair[0].position < pair[1].position));
    for event in &stream {
        assert_eq!(log.read_version(&patient, event.version).await.unwrap().as_ref(), Some(event));
    }
    assert_eq!(log.read_latest(&patient).await.unwrap().as_ref(), stream.last());
    assert_eq!(stream[2].position, third.position);
    assert_eq!(stream[2].body, json_body(&patient, "v3"));

    assert!(log.read_version(&patient, 0).await.unwrap().is_none());
    assert!(log.read_version(&patient, 4).await.unwrap().is_none());
    assert!(log.read_version(&patient, u64::MAX).await.unwrap().is_none());
    assert!(log.read_latest(&missing).await.unwrap().is_none());
    assert!(log.read_stream(&missing).await.unwrap().is_empty());

    let asked = [stream[2].position, 999_999, stream[0].position, stream[1].position];
    let found = log.read_positions(&asked).await.unwrap();
    assert_eq!(found, [stream[2].clone(), stream[0].clone(), stream[1].clone()], "in the order asked, missing skipped");
    assert!(log.read_positions(&[]).await.unwrap().is_empty());
}

/// The same type and id in two tenants (and the same id in two types) are independent streams.
pub async fn tenants_are_isolated(log: Arc<dyn EventLog>) {
    let in_a = key("tenant-a", "Patient", "shared");
    let in_b = key("tenant-b", "Patient", "shared");
    let other_type = key("tenant-a", "Group", "shared");
    append_one(&*log, create(&in_a, "a1")).await.unwrap();
    append_one(&*log, create(&in_b, "b1")).await.unwrap();
    append_one(&*log, create(&other_type, "g1")).await.unwrap();
    append_one(&*log, update(&in_a, 1, "a2")).await.unwrap();
    append_one(&*log, update(&in_a, 2, "a3")).await.unwrap();
    assert_conflict(append_one(&*log, update(&in_b, 3, "b-wrong")).await, &in_b);

    let stream_a = log.read_stream(&in_a).await.unwrap();
    let stream_b = log.read_stream(&in_b).await.unwrap();
    assert_eq!(stream_a.len(), 3);
    assert_eq!(stream_b.len(), 1);
    assert!(stream_a.iter().all(|event| event.key == in_a));
    assert_eq!(stream_b[0].key, in_b);
    assert_eq!(stream_b[0].body, json_body(&in_b, "b1"));
    assert_eq!(log.read_latest(&in_b).await.unwrap().unwrap().version, 1);
    assert!(log.read_version(&in_b, 2).await.unwrap().is_none());
    assert_eq!(log.read_stream(&other_type).await.unwrap().len(), 1);
    assert!(log.read_stream(&key("tenant-c", "Patient", "shared")).await.unwrap().is_empty());
}

/// After creates, updates, deletes and multi-stream appends every stream's chain verifies, and
/// so does the whole log.
pub async fn hash_chain_is_valid_after_writes(log: Arc<dyn EventLog>) {
    let keys: Vec<StreamKey> = (0..5).map(|index| key("t1", "Patient", &format!("p{index}"))).collect();
    log.append(batch(keys.iter().map(|key| create(key, "v1")).collect())).await.unwrap();
    for version in 1..4u64 {
        log.append(batch(keys.iter().map(|key| update(key, version, &format!("v{}", version + 1))).collect()))
            .await
            .unwrap();
    }
    for version in 4..7u64 {
        append_one(&*log, update(&keys[0], version, "extra")).await.unwrap();
    }
    let deletion = NewEvent {
        key: keys[1].clone(),
        expected: ExpectedVersion::Exactly(4),
        operation: Operation::Delete,
        body: Bytes::new(),
    };
    append_one(&*log, deletion).await.unwrap();
    let tenant_b = key("t2", "Patient", "p0");
    append_one(&*log, create(&tenant_b, "b")).await.unwrap();

    let mut total = 0;
    for key in keys.iter().chain([&tenant_b]) {
        let stream = log.read_stream(key).await.unwrap();
        total += stream.len() as u64;
        verify_stream(&stream).unwrap_or_else(|broken| panic!("chain of {key:?} broken: {broken}"));
    }

    let mut pages = 0;
    let report = verify_log(&*log, |_| pages += 1).await.unwrap();
    assert!(report.is_intact(), "fresh log verifies: {report:?}");
    assert_eq!(report.events_checked, total);
    assert_eq!(report.streams_checked, keys.len() as u64 + 1);
    assert_eq!(report.head, log.head().await.unwrap());
    assert!(pages >= 1, "progress is reported");
}

/// What [`concurrent_updates_to_one_resource`] saw.
#[derive(Clone, Copy, Debug)]
pub struct ContentionOutcome {
    pub successes: u64,
    pub conflicts: u64,
}

/// 32 tasks each try 50 times to update one resource from the version they last read. Every
/// success gets its own version, none is lost, and the conflicts are exactly the rest.
pub async fn concurrent_updates_to_one_resource(log: Arc<dyn EventLog>) -> ContentionOutcome {
    concurrent_updates_to_one_resource_scaled(log, 32, 50).await
}

/// [`concurrent_updates_to_one_resource`] with `task_count` tasks of `attempts` attempts each, for
/// stand-ins too slow for the full size.
pub async fn concurrent_updates_to_one_resource_scaled(log: Arc<dyn EventLog>, task_count: usize, attempts: usize) -> ContentionOutcome {
    let patient = key("t1", "Patient", "contended");
    append_one(&*log, create(&patient, "initial")).await.unwrap();

    let mut tasks = Vec::new();
    for task in 0..task_count {
        let log = Arc::clone(&log);
        let patient = patient.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins: Vec<(u64, Bytes)> = Vec::new();
            let mut conflicts = 0u64;
            for attempt in 0..attempts {
                let latest = log.read_latest(&patient).await.unwrap().unwrap();
                let event = update(&patient, latest.version, &format!("task {task} attempt {attempt}"));
                let body = event.body.clone();
                match append_one(&*log, event).await {
                    Ok(appended) => {
                        assert_eq!(appended.version, latest.version + 1);
                        wins.push((appended.version, body));
                    }
                    Err(LogError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected append error: {other}"),
                }
            }
            (wins, conflicts)
        }));
    }

    let mut wins_by_version: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut conflicts = 0;
    for task in tasks {
        let (wins, task_conflicts) = task.await.unwrap();
        conflicts += task_conflicts;
        for (version, body) in wins {
            assert!(wins_by_version.insert(version, body).is_none(), "version {version} was granted twice");
        }
    }
    let successes = wins_by_version.len() as u64;
    assert_eq!(successes + conflicts, (task_count * attempts) as u64);
    assert!(successes > 0);

    let stream = log.read_stream(&patient).await.unwrap();
    let final_version = stream.last().unwrap().version;
    assert_eq!(successes, final_version - 1, "every version after the first is one success");
    assert_eq!(stream.len() as u64, final_version);
    for event in &stream[1..] {
        assert_eq!(
            wins_by_version.get(&event.version),
            Some(&event.body),
            "version {} holds its writer's body",
            event.version
        );
    }
    verify_stream(&stream).unwrap();
    ContentionOutcome { successes, conflicts }
}

/// 32 tasks each create 50 resources of their own at the same time: all succeed, each event has
/// its own position, and the log holds exactly them. Returns the number of events appended.
pub async fn concurrent_appends_to_different_streams(log: Arc<dyn EventLog>) -> u64 {
    concurrent_appends_to_different_streams_scaled(log, 32, 50).await
}

/// [`concurrent_appends_to_different_streams`] with `task_count` tasks of `appends` appends each, for
/// stand-ins too slow for the full size.
pub async fn concurrent_appends_to_different_streams_scaled(log: Arc<dyn EventLog>, task_count: usize, appends: usize) -> u64 {
    let start = log.head().await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..task_count {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for index in 0..appends {
                let appended =
                    append_one(&*log, create(&key("t1", "Patient", &format!("c{task}-{index}")), "x")).await.unwrap();
                assert_eq!(appended.version, 1);
                positions.push(appended.position);
            }
            positions
        }));
    }
    let mut all_positions = HashSet::new();
    for task in tasks {
        let positions = task.await.unwrap();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "one writer's appends commit in order");
        for position in positions {
            assert!(all_positions.insert(position), "position {position} given twice");
        }
    }
    let total = (task_count * appends) as u64;
    assert_eq!(all_positions.len() as u64, total);
    assert_eq!(log.head().await.unwrap(), start + total);
    let events = read_all_after(&*log, start, 500).await;
    assert_eq!(events.len() as u64, total);
    assert!(events.iter().all(|event| all_positions.contains(&event.position)));
    total
}

/// `watch_head` sees the head move past each append, and `head` is never behind an
/// acknowledged append.
pub async fn watch_head_advances(log: Arc<dyn EventLog>) {
    let mut head = log.watch_head();
    let initial = *head.borrow_and_update();
    assert_eq!(initial, log.head().await.unwrap());

    let waiter = tokio::spawn({
        let mut head = head.clone();
        async move {
            while *head.borrow_and_update() <= initial {
                head.changed().await.unwrap();
            }
            *head.borrow()
        }
    });
    let appended = append_one(&*log, create(&key("t1", "Patient", "w1"), "x")).await.unwrap();
    assert!(log.head().await.unwrap() >= appended.position, "head is never behind an acknowledged append");
    let seen = tokio::time::timeout(PATIENCE, waiter).await.expect("watch_head did not advance").unwrap();
    assert!(seen > initial);

    let second = log
        .append(batch(vec![create(&key("t1", "Patient", "w2"), "x"), create(&key("t1", "Patient", "w3"), "x")]))
        .await
        .unwrap();
    let last = second.last().unwrap().position;
    tokio::time::timeout(PATIENCE, async {
        while *head.borrow_and_update() < last {
            head.changed().await.unwrap();
        }
    })
    .await
    .expect("watch_head did not reach the last append");
    assert_eq!(*head.borrow(), last);
}
