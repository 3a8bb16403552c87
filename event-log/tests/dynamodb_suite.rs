//! The behaviour suite against [`DynamoEventLog`] on moto's DynamoDB (`scripts/test` starts
//! `moto_server` and sets `FHIR_TEST_DYNAMODB_ENDPOINT`), plus what only this implementation
//! shows: appends larger than a DynamoDB transaction, bodies larger than an item, and versions
//! left staged by a writer that died.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use event_log::dynamodb::items::{self, Version};
use event_log::dynamodb::{create_bucket, create_table, DynamoEventLog, DynamoOptions, INLINE_LIMIT};
use event_log::{AppendBatch, EventLog, ExpectedVersion, LogError, NewEvent, Operation, StreamKey};
use time::OffsetDateTime;

/// Regions to spread the tests over: moto copies every table of a region on each
/// TransactWriteItems, so tests that share a region slow each other down.
const REGIONS: [&str; 16] = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1",
    "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1",
];

/// DynamoDB and S3 clients for moto, in `region`.
async fn clients(region: &'static str) -> (Client, aws_sdk_s3::Client) {
    let endpoint = std::env::var("FHIR_TEST_DYNAMODB_ENDPOINT")
        .expect("FHIR_TEST_DYNAMODB_ENDPOINT is not set: run the tests with scripts/test, which starts moto_server");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    // moto serves buckets by path, not by host name.
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    (Client::new(&config), s3)
}

/// A log over a new table of its own.
async fn log_with(configure: impl FnOnce(&mut DynamoOptions)) -> (Arc<DynamoEventLog>, Client, String) {
    let unique = uuid::Uuid::new_v4();
    let (client, s3) = clients(REGIONS[unique.as_bytes()[0] as usize % REGIONS.len()]).await;
    let table = format!("events-{}", unique.simple());
    create_table(&client, &table).await.expect("create the table");
    let bucket = format!("bodies-{}", unique.simple());
    create_bucket(&s3, &bucket).await.expect("create the bucket");
    let mut options = DynamoOptions::new(&table, &bucket);
    configure(&mut options);
    let log = DynamoEventLog::open(client.clone(), s3, options).await.expect("open the log");
    (log, client, table)
}

async fn fresh_log() -> (Arc<dyn EventLog>, ()) {
    let (log, _, _) = log_with(|_| {}).await;
    (log, ())
}

// The whole suite but its two contention functions, which run below at a smaller size: moto
// copies every table of the region on each TransactWriteItems (each commit), so 1,600 appends
// take many minutes there and its memory grows by gigabytes.
event_log::event_log_suite!(@without_contention fresh_log);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_to_one_resource() {
    let (log, _) = fresh_log().await;
    let outcome = event_log::suite::concurrent_updates_to_one_resource_scaled(log, 8, 6).await;
    assert!(outcome.conflicts > 0, "the tasks did race");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_different_streams() {
    let (log, _) = fresh_log().await;
    assert_eq!(event_log::suite::concurrent_appends_to_different_streams_scaled(log, 8, 8).await, 64);
}

fn patient(id: &str) -> StreamKey {
    StreamKey::new("t1", "Patient", id)
}

fn create(key: &StreamKey) -> NewEvent {
    NewEvent { key: key.clone(), expected: ExpectedVersion::NoStream, operation: Operation::Create, body: Bytes::from_static(b"{}") }
}

fn batch(transaction: &str, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch { transaction_id: transaction.into(), actor: "test".into(), recorded_at: OffsetDateTime::now_utc(), events }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_larger_than_a_dynamodb_transaction_commits_whole_or_not_at_all() {
    let (log, _, _) = log_with(|_| {}).await;
    log.append(batch("taken", vec![create(&patient("taken"))])).await.unwrap();
    let head = log.head().await.unwrap();

    // 249 new streams and, last, one that exists: nothing of it may show.
    let mut events: Vec<NewEvent> = (0..249).map(|i| create(&patient(&format!("lost-{i}")))).collect();
    events.push(create(&patient("taken")));
    match log.append(batch("failing", events)).await {
        Err(LogError::Conflict { key, .. }) => assert_eq!(key, patient("taken")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(log.head().await.unwrap(), head, "no position was used");
    assert!(log.read_from(head, 1000).await.unwrap().is_empty());
    for i in [0, 100, 248] {
        assert_eq!(log.read_latest(&patient(&format!("lost-{i}"))).await.unwrap(), None, "lost-{i} is not there");
    }
    // The streams are free again: the same creates now succeed, as one append of 250.
    let events: Vec<NewEvent> = (0..250).map(|i| create(&patient(&format!("lost-{i}")))).collect();
    let appended = log.append(batch("whole", events)).await.unwrap();
    let positions: Vec<u64> = appended.iter().map(|a| a.position).collect();
    assert_eq!(positions, (head + 1..=head + 250).collect::<Vec<_>>(), "contiguous, in request order");
    let read = log.read_from(head, 10).await.unwrap();
    assert_eq!(read.len(), 250, "one append is never split");
    assert!(read.iter().all(|event| event.transaction_id == "whole"));
}

/// Stages version 1 of `key` as a writer would that then died.
async fn stage_and_die(client: &Client, table: &str, key: &StreamKey, staged_at: i64) {
    let version = Version {
        key: key.clone(),
        version: 1,
        operation: Operation::Create,
        recorded_at: OffsetDateTime::now_utc(),
        transaction_id: "dead".into(),
        actor: "test".into(),
        body: Bytes::from_static(b"{}"),
        hash: [1; 32],
        prev_hash: [0; 32],
        envelope_version: 1,
        index: 0,
    };
    client.put_item().table_name(table).set_item(Some(items::version_item(&version, staged_at, None))).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_staged_by_a_dead_writer_is_invisible_and_cleared_once_old() {
    let (log, client, table) = log_with(|options| options.abandon_after = Duration::from_secs(60)).await;
    let now = OffsetDateTime::now_utc().unix_timestamp();

    stage_and_die(&client, &table, &patient("fresh"), now).await;
    assert_eq!(log.read_latest(&patient("fresh")).await.unwrap(), None, "staged is not committed");
    assert!(log.read_stream(&patient("fresh")).await.unwrap().is_empty());
    match log.append(batch("second", vec![create(&patient("fresh"))])).await {
        Err(LogError::Conflict { key, .. }) => assert_eq!(key, patient("fresh"), "a recent staging may still commit"),
        other => panic!("expected a conflict, got {other:?}"),
    }

    stage_and_die(&client, &table, &patient("old"), now - 3600).await;
    let appended = log.append(batch("after", vec![create(&patient("old"))])).await.unwrap();
    assert_eq!(appended[0].version, 1);
    let latest = log.read_latest(&patient("old")).await.unwrap().expect("the new version");
    assert_eq!(latest.transaction_id, "after");
    let dead = client.get_item().table_name(&table).set_key(Some(items::key("T|dead", "H"))).consistent_read(true).send().await.unwrap();
    assert_eq!(dead.item().and_then(|item| item.get("status")).and_then(|s| s.as_s().ok()).map(String::as_str), Some("aborted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_an_item_round_trips_through_s3() {
    let (log, client, table) = log_with(|_| {}).await;
    let large = format!(r#"{{"resourceType":"Binary","data":"{}"}}"#, "QUJD".repeat(INLINE_LIMIT / 2));
    let key = StreamKey::new("t1", "Binary", "big");
    let event = NewEvent { key: key.clone(), expected: ExpectedVersion::NoStream, operation: Operation::Create, body: Bytes::from(large.clone()) };
    let appended = log.append(batch("large", vec![event, create(&patient("small"))])).await.unwrap();

    let item = client.get_item().table_name(&table).set_key(Some(items::key("S|t1|Binary|big", items::version_sk(1)))).send().await.unwrap();
    let item = item.item().expect("the version item");
    assert!(item.contains_key("blob") && !item.contains_key("body"), "the body is in S3, not in the item");

    let latest = log.read_latest(&key).await.unwrap().expect("the large version");
    assert_eq!(latest.body, Bytes::from(large.clone()));
    assert_eq!(event_log::hash::recompute(&latest), latest.hash, "the hash covers the body read back");
    let from_log = log.read_from(appended[0].position - 1, 10).await.unwrap();
    assert_eq!(from_log[0].body, Bytes::from(large));
    assert_eq!(from_log[1].body, Bytes::from_static(b"{}"), "small bodies stay in the item");
}
