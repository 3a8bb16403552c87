//! The projector against a real event log: it catches up, follows new writes, and a projection
//! rebuilt from zero by replay answers exactly like the one that followed along.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use fhir_core::history::{HistoryQuery, HistoryScope};
use projector_history::HistoryStore;
use tokio::sync::watch;

async fn write(log: &dyn EventLog, key: &StreamKey, expected: ExpectedVersion, operation: Operation) {
    let batch = AppendBatch {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        actor: "test".into(),
        recorded_at: fhir_core::instant::now(),
        events: vec![NewEvent { key: key.clone(), expected, operation, body: Bytes::from_static(b"{}") }],
    };
    log.append(batch).await.expect("append");
}

async fn caught_up(store: &HistoryStore, log: &dyn EventLog) {
    let head = log.head().await.unwrap();
    let mut checkpoint = store.watch_checkpoint();
    tokio::time::timeout(Duration::from_secs(10), checkpoint.wait_for(|applied| *applied >= head))
        .await
        .expect("the projector catches up")
        .unwrap();
}

fn all(store: &HistoryStore, tenant: &str) -> Vec<u64> {
    let query = HistoryQuery { scope: HistoryScope::System, since: None, at: None, count: 1000, before: None };
    store.history(tenant, &query).unwrap().positions
}

#[tokio::test]
async fn follows_the_log_and_rebuilds_identically() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteEventLog::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap());
    for n in 0..100 {
        let key = StreamKey::new("t", "Patient", format!("p{n}"));
        write(log.as_ref(), &key, ExpectedVersion::NoStream, Operation::Create).await;
        if n % 3 == 0 {
            write(log.as_ref(), &key, ExpectedVersion::Exactly(1), Operation::Update).await;
        }
    }

    let store = Arc::new(HistoryStore::open(&dir.path().join("history.db")).unwrap());
    let (stop, stopped) = watch::channel(false);
    let projector = tokio::spawn(projector_history::run(store.clone(), log.clone(), stopped));
    caught_up(&store, log.as_ref()).await;
    assert_eq!(all(&store, "t").len(), 134);

    // New writes after catching up are followed too.
    let key = StreamKey::new("t", "Patient", "p0");
    write(log.as_ref(), &key, ExpectedVersion::Exactly(2), Operation::Delete).await;
    caught_up(&store, log.as_ref()).await;
    assert!(store.current(&key).unwrap().unwrap().deleted);
    stop.send(true).unwrap();
    projector.await.unwrap();

    // A projection rebuilt from zero is identical.
    let rebuilt = Arc::new(HistoryStore::open(&dir.path().join("rebuilt.db")).unwrap());
    let (stop, stopped) = watch::channel(false);
    let projector = tokio::spawn(projector_history::run(rebuilt.clone(), log.clone(), stopped));
    caught_up(&rebuilt, log.as_ref()).await;
    assert_eq!(all(&rebuilt, "t"), all(&store, "t"));
    assert_eq!(rebuilt.checkpoint(), store.checkpoint());
    stop.send(true).unwrap();
    projector.await.unwrap();
}
