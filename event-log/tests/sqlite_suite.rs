//! The behaviour suite against [`SqliteEventLog`], plus what only the SQLite file can show:
//! group commit, tampering with stored rows, closing and reopening.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use event_log::hash::{verify_log, BreakKind, PositionGap};
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{suite, AppendBatch, EventLog, ExpectedVersion, LogError, NewEvent, Operation, StreamKey};
use tempfile::TempDir;
use time::OffsetDateTime;

async fn fresh_log() -> (Arc<dyn EventLog>, TempDir) {
    let (log, directory) = fresh_sqlite(SqliteOptions::default());
    (log, directory)
}

fn fresh_sqlite(options: SqliteOptions) -> (Arc<SqliteEventLog>, TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let log = SqliteEventLog::open(log_path(directory.path()), options).unwrap();
    (Arc::new(log), directory)
}

fn log_path(directory: &Path) -> PathBuf {
    directory.join("log").join("events.db")
}

event_log::event_log_suite!(fresh_log);

fn patient(id: &str) -> StreamKey {
    StreamKey::new("t1", "Patient", id)
}

fn batch(events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch {
        transaction_id: "tx".to_owned(),
        actor: "test".to_owned(),
        recorded_at: OffsetDateTime::now_utc(),
        events,
    }
}

fn event(key: &StreamKey, expected: ExpectedVersion, note: &str) -> NewEvent {
    let operation = if expected == ExpectedVersion::NoStream { Operation::Create } else { Operation::Update };
    NewEvent { key: key.clone(), expected, operation, body: Bytes::from(format!(r#"{{"note":"{note}"}}"#)) }
}

/// Creates `id` and updates it to `versions`.
async fn write_versions(log: &dyn EventLog, id: &str, versions: u64) {
    let key = patient(id);
    log.append(batch(vec![event(&key, ExpectedVersion::NoStream, "v1")])).await.unwrap();
    for version in 1..versions {
        log.append(batch(vec![event(&key, ExpectedVersion::Exactly(version), &format!("v{}", version + 1))]))
            .await
            .unwrap();
    }
}

fn raw_connection(directory: &TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(log_path(directory.path())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commit_groups() {
    let (log, _directory) = fresh_sqlite(SqliteOptions::default());
    let events = suite::concurrent_appends_to_different_streams(log.clone()).await;
    let stats = log.stats();
    assert_eq!(stats.events_committed, events);
    assert_eq!(stats.appends_committed, events);
    assert!(stats.groups_committed < events, "group commit should batch concurrent appends: {stats:?}");
    assert_eq!(stats.groups_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_counts_conflicts() {
    let (log, _directory) = fresh_sqlite(SqliteOptions::default());
    let outcome = suite::concurrent_updates_to_one_resource(log.clone()).await;
    let stats = log.stats();
    assert_eq!(stats.conflicts, outcome.conflicts);
    assert_eq!(stats.appends_committed, outcome.successes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_creates_of_one_id_let_exactly_one_win() {
    let (log, _directory) = fresh_sqlite(SqliteOptions::default());
    let key = patient("race");
    let attempts: Vec<_> = (0..64)
        .map(|attempt| {
            let log = log.clone();
            let key = key.clone();
            tokio::spawn(async move {
                log.append(batch(vec![event(&key, ExpectedVersion::NoStream, &format!("{attempt}"))])).await
            })
        })
        .collect();
    let mut wins = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => wins += 1,
            Err(LogError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(log.read_stream(&key).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_rows_are_reported() {
    let (log, directory) = fresh_sqlite(SqliteOptions::default());
    write_versions(&*log, "a", 4).await;
    write_versions(&*log, "b", 3).await;
    assert!(verify_log(&*log, |_| {}).await.unwrap().is_intact());
    let stream_a = log.read_stream(&patient("a")).await.unwrap();
    let raw = raw_connection(&directory);

    // A changed body no longer matches its own hash; the chain after it still links.
    raw.execute(
        "UPDATE events SET body = ?1 WHERE position = ?2",
        (&b"{\"note\":\"forged\"}"[..], stream_a[1].position as i64),
    )
    .unwrap();
    let report = verify_log(&*log, |_| {}).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{report:?}");
    assert_eq!(report.breaks[0].position, stream_a[1].position);
    assert_eq!(report.breaks[0].version, 2);
    assert!(matches!(report.breaks[0].kind, BreakKind::HashMismatch { .. }));

    // Re-hashing the forged event moves the break to the next version's link.
    let mut forged = log.read_version(&patient("a"), 2).await.unwrap().unwrap();
    forged.hash = event_log::hash::recompute(&forged);
    raw.execute("UPDATE events SET hash = ?1 WHERE position = ?2", (&forged.hash[..], forged.position as i64)).unwrap();
    let report = verify_log(&*log, |_| {}).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{report:?}");
    assert_eq!(report.breaks[0].version, 3);
    assert!(matches!(report.breaks[0].kind, BreakKind::PrevHashMismatch { .. }));

    // A deleted event leaves a version gap in its stream and a gap in the positions.
    raw.execute("DELETE FROM events WHERE position = ?1", [stream_a[3].position as i64]).unwrap();
    let stream_b = log.read_stream(&patient("b")).await.unwrap();
    raw.execute("DELETE FROM events WHERE position = ?1", [stream_b[1].position as i64]).unwrap();
    let report = verify_log(&*log, |_| {}).await.unwrap();
    let gaps: Vec<(u64, &BreakKind)> =
        report.breaks.iter().skip(1).map(|broken| (broken.position, &broken.kind)).collect();
    assert_eq!(gaps, [(stream_b[2].position, &BreakKind::VersionGap { expected: 2 })], "{report:?}");
    assert_eq!(
        report.position_gaps,
        [
            PositionGap { after: stream_a[3].position - 1, before: stream_a[3].position + 1 },
            PositionGap { after: stream_b[1].position - 1, before: stream_b[1].position + 1 },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unique_index_refuses_a_reused_version() {
    let (log, directory) = fresh_sqlite(SqliteOptions::default());
    write_versions(&*log, "a", 2).await;
    let raw = raw_connection(&directory);
    let reused = raw.execute(
        "INSERT INTO events (position, tenant, resource_type, id, version, operation, recorded_at, transaction_id, \
         actor, body, hash, prev_hash, envelope_version) \
         SELECT position + 100, tenant, resource_type, id, version, operation, recorded_at, transaction_id, actor, \
         body, hash, prev_hash, envelope_version FROM events WHERE version = 2",
        [],
    );
    assert!(reused.is_err(), "a second version 2 must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_and_continues_positions() {
    let (log, directory) = fresh_sqlite(SqliteOptions::default());
    write_versions(&*log, "a", 3).await;
    write_versions(&*log, "b", 2).await;
    let before = suite_read_all(&*log).await;
    log.close().await;

    match log.append(batch(vec![event(&patient("c"), ExpectedVersion::NoStream, "late")])).await {
        Err(LogError::Closed) => {}
        other => panic!("expected Closed after close, got {other:?}"),
    }
    assert!(matches!(log.read_from(0, 10).await, Err(LogError::Closed)));
    log.close().await;

    let reopened = SqliteEventLog::open(log_path(directory.path()), SqliteOptions::default()).unwrap();
    assert_eq!(reopened.head().await.unwrap(), 5);
    assert_eq!(*reopened.watch_head().borrow(), 5);
    assert_eq!(suite_read_all(&reopened).await, before);

    let next = reopened.append(batch(vec![event(&patient("a"), ExpectedVersion::Exactly(3), "v4")])).await.unwrap();
    assert_eq!((next[0].position, next[0].version), (6, 4));
    let stream = reopened.read_stream(&patient("a")).await.unwrap();
    assert_eq!(stream[3].prev_hash, stream[2].hash, "the chain continues across a reopen");
    assert!(verify_log(&reopened, |_| {}).await.unwrap().is_intact());
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_answers_every_accepted_append() {
    let (log, directory) = fresh_sqlite(SqliteOptions::default());
    let appends: Vec<_> = (0..200)
        .map(|index| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(batch(vec![event(&patient(&format!("p{index}")), ExpectedVersion::NoStream, "x")])).await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    log.close().await;

    let mut acknowledged = Vec::new();
    for append in appends {
        match append.await.unwrap() {
            Ok(appended) => acknowledged.push(appended[0].position),
            Err(LogError::Closed) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    let reopened = SqliteEventLog::open(log_path(directory.path()), SqliteOptions::default()).unwrap();
    let stored = reopened.read_positions(&acknowledged).await.unwrap();
    assert_eq!(stored.len(), acknowledged.len(), "every acknowledged append is in the file");
    assert_eq!(reopened.head().await.unwrap(), acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_log_releases_the_file() {
    let (log, directory) = fresh_sqlite(SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() });
    write_versions(&*log, "a", 2).await;
    drop(log);
    let reopened = SqliteEventLog::open(log_path(directory.path()), SqliteOptions::default()).unwrap();
    assert_eq!(reopened.read_stream(&patient("a")).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_a_conflict_still_commits_the_others() {
    // Tiny groups are not needed: the conflicting appends race the good ones into shared groups.
    let (log, _directory) = fresh_sqlite(SqliteOptions::default());
    write_versions(&*log, "shared", 1).await;
    let tasks: Vec<_> = (0..64)
        .map(|index| {
            let log = log.clone();
            tokio::spawn(async move {
                let good = event(&patient(&format!("g{index}")), ExpectedVersion::NoStream, "x");
                let bad = event(&patient("shared"), ExpectedVersion::NoStream, "dup");
                let good_outcome = log.append(batch(vec![good])).await;
                let bad_outcome = log
                    .append(batch(vec![bad, event(&patient(&format!("h{index}")), ExpectedVersion::NoStream, "x")]))
                    .await;
                (good_outcome.is_ok(), matches!(bad_outcome, Err(LogError::Conflict { .. })))
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), (true, true));
    }
    assert_eq!(log.head().await.unwrap(), 1 + 64);
    assert!(log.read_latest(&patient("h3")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_at_outside_the_storable_range_is_refused() {
    let (log, _directory) = fresh_sqlite(SqliteOptions::default());
    let mut far = batch(vec![event(&patient("a"), ExpectedVersion::NoStream, "x")]);
    far.recorded_at = time::macros::datetime!(2500-01-01 00:00 UTC);
    assert!(matches!(log.append(far).await, Err(LogError::Storage(_))));
    assert_eq!(log.head().await.unwrap(), 0);
}

async fn suite_read_all(log: &dyn EventLog) -> Vec<event_log::Event> {
    log.read_from(0, usize::MAX).await.unwrap()
}
