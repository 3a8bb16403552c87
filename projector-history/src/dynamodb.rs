//! The history read model on DynamoDB (AWS mode), fed from the event stream.
//!
//! One table, keys `pk` (string) and `sk` (number); every item holds `pos` (log position), `at`
//! (recorded, Unix ms) and, once a later version exists, `sup` (when it was superseded):
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | version | `V|tenant|type|id` | version |
//! | type history | `T|tenant|type` | position |
//! | system history | `S|tenant` | position |
//!
//! A page is one Query, newest first. The stream delivers a resource's versions in order but
//! possibly more than once, and different resources in any order: writing an item is
//! idempotent (the same key, the same values), and `sup` is set from either side, whichever
//! version arrives second: a version finds its successor's time if the successor came first, and
//! sets its predecessor's `sup` if the predecessor is there.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;
use event_log::Event;
use fhir_core::history::{HistoryPage, HistoryQuery, HistoryScope};

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB history: {0}")]
pub struct DynamoHistoryError(String);

type Result<T> = std::result::Result<T, DynamoHistoryError>;

fn dynamo(error: impl std::error::Error) -> DynamoHistoryError {
    DynamoHistoryError(aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn unix_millis(event: &Event) -> i64 {
    (event.recorded_at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn version_pk(tenant: &str, resource_type: &str, id: &str) -> String {
    format!("V|{tenant}|{resource_type}|{id}")
}

fn type_pk(tenant: &str, resource_type: &str) -> String {
    format!("T|{tenant}|{resource_type}")
}

fn system_pk(tenant: &str) -> String {
    format!("S|{tenant}")
}

/// Creates the history table (nothing if it exists).
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let attribute = |name: &str, kind| AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(dynamo);
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(dynamo);
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?);
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
        Err(error) => Err(dynamo(error)),
    }
}

/// The history table.
pub struct DynamoHistory {
    client: Client,
    table: String,
}

impl DynamoHistory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn get(&self, pk: String, sk: u64) -> Result<Option<Item>> {
        let output = self.client.get_item().table_name(&self.table).key("pk", AttributeValue::S(pk)).key("sk", n(sk)).consistent_read(true).send().await.map_err(dynamo)?;
        Ok(output.item)
    }

    async fn put(&self, pk: String, sk: u64, position: u64, at: i64, superseded: Option<i64>) -> Result<()> {
        let mut request = self.client.put_item().table_name(&self.table).item("pk", AttributeValue::S(pk)).item("sk", n(sk)).item("pos", n(position)).item("at", n(at));
        if let Some(superseded) = superseded {
            request = request.item("sup", n(superseded));
        }
        request.send().await.map_err(dynamo)?;
        Ok(())
    }

    async fn supersede(&self, pk: String, sk: u64, at: i64) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", n(sk))
            .update_expression("SET sup = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(error) => Err(dynamo(error)),
        }
    }

    /// Records the events' versions (idempotent, in any order across resources).
    pub async fn apply(&self, events: &[Event]) -> Result<()> {
        for event in events {
            let key = &event.key;
            let at = unix_millis(event);
            let versions = version_pk(&key.tenant, &key.resource_type, &key.id);
            let successor = self.get(versions.clone(), event.version + 1).await?;
            let superseded = successor.as_ref().and_then(|item| number(item, "at"));
            self.put(versions.clone(), event.version, event.position, at, superseded).await?;
            self.put(type_pk(&key.tenant, &key.resource_type), event.position, event.position, at, superseded).await?;
            self.put(system_pk(&key.tenant), event.position, event.position, at, superseded).await?;
            if event.version > 1 {
                if let Some(previous) = self.get(versions.clone(), event.version - 1).await? {
                    let Some(position) = number(&previous, "pos").map(|p| p as u64) else { continue };
                    self.supersede(versions.clone(), event.version - 1, at).await?;
                    self.supersede(type_pk(&key.tenant, &key.resource_type), position, at).await?;
                    self.supersede(system_pk(&key.tenant), position, at).await?;
                }
            }
        }
        Ok(())
    }

    /// One page of `query` for `tenant`: log positions, newest first.
    pub async fn history(&self, tenant: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        let pk = match &query.scope {
            HistoryScope::System => system_pk(tenant),
            HistoryScope::Type(resource_type) => type_pk(tenant, resource_type),
            HistoryScope::Instance(resource_type, id) => version_pk(tenant, resource_type, id),
        };
        // Instance items are keyed by version, the others by position.
        let by_position = !matches!(query.scope, HistoryScope::Instance(..));
        let mut key_condition = String::from("pk = :pk");
        let mut filters = Vec::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::from([(":pk".to_string(), AttributeValue::S(pk))]);
        if let Some(before) = query.before {
            values.insert(":before".into(), n(before));
            if by_position {
                key_condition.push_str(" AND sk < :before");
            } else {
                filters.push("pos < :before");
            }
        }
        if let Some(since) = query.since {
            values.insert(":since".into(), n(since.unix_timestamp_nanos() / 1_000_000));
            filters.push("#at >= :since");
        }
        if let Some((start, end)) = query.at {
            values.insert(":start".into(), n(start.unix_timestamp_nanos() / 1_000_000));
            values.insert(":end".into(), n(end.unix_timestamp_nanos() / 1_000_000));
            filters.push("#at < :end AND (attribute_not_exists(sup) OR sup > :start)");
        }
        let mut positions = Vec::new();
        let mut start_key = None;
        while positions.len() <= query.count {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&key_condition)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((query.count + 1) as i32)
                .set_exclusive_start_key(start_key.take());
            if !filters.is_empty() {
                request = request.filter_expression(filters.join(" AND "));
            }
            if filters.iter().any(|filter| filter.contains("#at")) {
                request = request.expression_attribute_names("#at", "at");
            }
            let output = request.send().await.map_err(dynamo)?;
            positions.extend(output.items().iter().filter_map(|item| number(item, "pos")).map(|p| p as u64));
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        let next_before = if positions.len() > query.count {
            positions.truncate(query.count);
            positions.last().copied()
        } else {
            None
        };
        Ok(HistoryPage { positions, next_before })
    }
}

#[async_trait]
impl event_stream::StreamProjection for DynamoHistory {
    fn name(&self) -> &str {
        "history"
    }

    async fn apply(&self, events: &[Event]) -> std::result::Result<(), String> {
        DynamoHistory::apply(self, events).await.map_err(|error| error.to_string())
    }
}
