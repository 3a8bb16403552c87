//! The DynamoDB history store against moto (`scripts/test` starts it and sets
//! `FHIR_TEST_AWS_ENDPOINT`): the same scopes, order, paging and `_since`/`_at` as the SQLite
//! store, with events delivered again and out of order as the stream may deliver them.

mod common;

use aws_config::{BehaviorVersion, Region};
use common::{event, query, sample, T0};
use event_log::Operation;
use fhir_core::history::{HistoryQuery, HistoryScope};
use projector_history::dynamodb::{create_table, DynamoHistory};
use time::Duration;

async fn store() -> DynamoHistory {
    let endpoint = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, which starts moto_server");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let regions = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"];
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(regions[unique.as_bytes()[0] as usize % regions.len()]))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("history-{unique}");
    create_table(&client, &table).await.unwrap();
    DynamoHistory::new(client, table)
}

async fn positions(store: &DynamoHistory, tenant: &str, query: &HistoryQuery) -> Vec<u64> {
    store.history(tenant, query).await.unwrap().positions
}

#[tokio::test]
async fn scopes_order_and_tenants() {
    let store = store().await;
    store.apply(&sample()).await.unwrap();
    assert_eq!(positions(&store, "t1", &query(HistoryScope::System)).await, vec![6, 4, 3, 2, 1]);
    assert_eq!(positions(&store, "t1", &query(HistoryScope::Type("Patient".into()))).await, vec![6, 4, 2, 1]);
    assert_eq!(positions(&store, "t1", &query(HistoryScope::Instance("Patient".into(), "a".into()))).await, vec![6, 4, 1]);
    assert_eq!(positions(&store, "t2", &query(HistoryScope::System)).await, vec![5], "tenants are separate");
}

#[tokio::test]
async fn repeated_and_reordered_deliveries_give_the_same_history() {
    let store = store().await;
    let events = sample();
    // Other resources in any order; one resource's versions in order, some of them twice.
    let delivered = [&events[4..6], &events[2..3], &events[0..2], &events[3..4], &events[..]].concat();
    store.apply(&delivered).await.unwrap();
    assert_eq!(positions(&store, "t1", &query(HistoryScope::System)).await, vec![6, 4, 3, 2, 1]);
    // `_at` needs each version's successor time, whichever arrived first.
    let at = HistoryQuery { at: Some((T0 + Duration::seconds(150), T0 + Duration::seconds(151))), ..query(HistoryScope::Instance("Patient".into(), "a".into())) };
    assert_eq!(positions(&store, "t1", &at).await, vec![1]);

    let late = store_with_successor_first().await;
    let at = HistoryQuery { at: Some((T0 + Duration::minutes(1), T0 + Duration::minutes(2))), ..query(HistoryScope::Type("Patient".into())) };
    assert_eq!(positions(&late, "t1", &at).await, vec![1], "version 1 was superseded at minute 3, whatever the order they came in");
}

/// Version 2 of a resource applied before version 1.
async fn store_with_successor_first() -> DynamoHistory {
    let store = store().await;
    store.apply(&[event(2, "t1", "Patient", "a", 2, Operation::Update, 3)]).await.unwrap();
    store.apply(&[event(1, "t1", "Patient", "a", 1, Operation::Create, 0)]).await.unwrap();
    let at = HistoryQuery { at: Some((T0 + Duration::minutes(4), T0 + Duration::minutes(5))), ..query(HistoryScope::System) };
    assert_eq!(positions(&store, "t1", &at).await, vec![2]);
    store
}

#[tokio::test]
async fn paging_since_and_at() {
    let store = store().await;
    store.apply(&sample()).await.unwrap();
    let mut page = HistoryQuery { count: 2, ..query(HistoryScope::System) };
    let first = store.history("t1", &page).await.unwrap();
    assert_eq!((first.positions.clone(), first.next_before), (vec![6, 4], Some(4)));
    page.before = first.next_before;
    let second = store.history("t1", &page).await.unwrap();
    assert_eq!((second.positions.clone(), second.next_before), (vec![3, 2], Some(2)));
    page.before = second.next_before;
    let third = store.history("t1", &page).await.unwrap();
    assert_eq!((third.positions, third.next_before), (vec![1], None));

    let instance = HistoryQuery { count: 1, before: Some(6), ..query(HistoryScope::Instance("Patient".into(), "a".into())) };
    assert_eq!(positions(&store, "t1", &instance).await, vec![4], "an instance's pages follow positions too");
    let since = HistoryQuery { since: Some(T0 + Duration::minutes(3)), ..query(HistoryScope::System) };
    assert_eq!(positions(&store, "t1", &since).await, vec![6, 4]);
    let at = HistoryQuery { at: Some((T0 + Duration::minutes(3), T0 + Duration::minutes(6))), ..query(HistoryScope::Instance("Patient".into(), "a".into())) };
    assert_eq!(positions(&store, "t1", &at).await, vec![6, 4]);
}

#[tokio::test]
async fn a_snapshot_of_a_type_as_of_a_position_in_any_delivery_order() {
    let store = store().await;
    let events = sample();
    // Delivered out of order across resources: a resource's later version may arrive first.
    store.apply(&[&events[3..6], &events[0..3]].concat()).await.unwrap();
    let live = |as_of: u64, since_ms: Option<i64>, after: u64, limit: usize| {
        let store = &store;
        async move { store.live_at("t1", "Patient", as_of, since_ms, after, limit).await.unwrap() }
    };
    assert_eq!(live(6, None, 0, 10).await, vec![2], "a is deleted at 6");
    assert_eq!(live(5, None, 0, 10).await, vec![2, 4]);
    assert_eq!(live(3, None, 0, 10).await, vec![1, 2]);
    assert_eq!(live(5, None, 2, 10).await, vec![4], "paged after a position");
    assert_eq!(live(5, None, 0, 1).await, vec![2], "at most the limit");
    let minute_two = fhir_core::instant::unix_millis(T0 + Duration::minutes(2));
    assert_eq!(live(5, Some(minute_two), 0, 10).await, vec![4]);
    assert_eq!(store.live_at("t2", "Patient", 6, None, 0, 10).await.unwrap(), vec![5]);
}
