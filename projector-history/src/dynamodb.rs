//! The history read model on DynamoDB (AWS mode), fed from the event stream.
//!
//! One table, keys `pk` (string) and `sk` (number); every item holds `pos` (log position), `at`
//! (recorded, Unix ms), `del` for a delete and, once a later version exists, `sup` and `supp`
//! (when it was superseded, and the position of the version that did):
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
//! rewrites its predecessor's items with `sup` if the predecessor is there. A batch reads the
//! neighbouring versions it needs in one BatchGetItem and writes its items with BatchWriteItem.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, PutRequest, ScalarAttributeType, WriteRequest};
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

fn recorded(event: &Event) -> Recorded {
    let at = (event.recorded_at.unix_timestamp_nanos() / 1_000_000) as i64;
    Recorded { position: event.position, at, deleted: event.operation == event_log::Operation::Delete }
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

/// Keys per BatchGetItem and items per BatchWriteItem (DynamoDB's limits).
const GET_BATCH: usize = 100;
const WRITE_BATCH: usize = 25;

/// Where a version is in the log, when it was recorded, and whether it is a delete.
#[derive(Clone, Copy)]
struct Recorded {
    position: u64,
    at: i64,
    deleted: bool,
}

/// The three keys of a version's items: under its resource (by version), its type and its tenant
/// (by position).
fn placements(tenant: &str, resource_type: &str, versions: &str, version: u64, position: u64) -> [(String, u64); 3] {
    [(versions.to_string(), version), (type_pk(tenant, resource_type), position), (system_pk(tenant), position)]
}

fn item(pk: String, sk: u64, recorded: Recorded, successor: Option<Recorded>) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk)),
        ("sk".to_string(), n(sk)),
        ("pos".to_string(), n(recorded.position)),
        ("at".to_string(), n(recorded.at)),
    ]);
    if recorded.deleted {
        item.insert("del".into(), AttributeValue::Bool(true));
    }
    if let Some(successor) = successor {
        item.insert("sup".into(), n(successor.at));
        item.insert("supp".into(), n(successor.position));
    }
    item
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

    /// BatchGetItem until nothing is left unprocessed.
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        while !keys.is_empty() {
            let wanted = KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(dynamo)?;
            let output = self.client.batch_get_item().request_items(&self.table, wanted).send().await.map_err(dynamo)?;
            if let Some(found) = output.responses().and_then(|responses| responses.get(&self.table)) {
                items.extend(found.iter().cloned());
            }
            keys = output.unprocessed_keys().and_then(|left| left.get(&self.table)).map(|left| left.keys().to_vec()).unwrap_or_default();
        }
        Ok(items)
    }

    /// BatchWriteItem until nothing is left unprocessed.
    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        let mut writes = items
            .into_iter()
            .map(|item| PutRequest::builder().set_item(Some(item)).build().map(|put| WriteRequest::builder().put_request(put).build()).map_err(dynamo))
            .collect::<Result<Vec<_>>>()?;
        while !writes.is_empty() {
            let output = self.client.batch_write_item().request_items(&self.table, writes).send().await.map_err(dynamo)?;
            writes = output.unprocessed_items().and_then(|left| left.get(&self.table)).cloned().unwrap_or_default();
        }
        Ok(())
    }

    /// Records the events' versions (idempotent, in any order across resources): the batch's
    /// neighbouring versions are read in one go, every item is written in batches.
    pub async fn apply(&self, events: &[Event]) -> Result<()> {
        // Versions by (resource, version): the batch's own, then their neighbours from the table.
        let mut known: HashMap<(String, u64), Recorded> = events
            .iter()
            .map(|event| ((version_pk(&event.key.tenant, &event.key.resource_type, &event.key.id), event.version), recorded(event)))
            .collect();
        let mut wanted: Vec<(String, u64)> = Vec::new();
        for ((resource, version), _) in known.iter() {
            let neighbours = [Some(version + 1), version.checked_sub(1).filter(|previous| *previous > 0)];
            for neighbour in neighbours.into_iter().flatten() {
                if !known.contains_key(&(resource.clone(), neighbour)) {
                    wanted.push((resource.clone(), neighbour));
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        for chunk in wanted.chunks(GET_BATCH) {
            let keys = chunk.iter().map(|(pk, sk)| HashMap::from([("pk".to_string(), AttributeValue::S(pk.clone())), ("sk".to_string(), n(sk))])).collect();
            for item in self.batch_get(keys).await? {
                let (Some(AttributeValue::S(pk)), Some(version), Some(position), Some(at)) = (item.get("pk"), number(&item, "sk"), number(&item, "pos"), number(&item, "at")) else { continue };
                let deleted = matches!(item.get("del"), Some(AttributeValue::Bool(true)));
                known.insert((pk.clone(), version as u64), Recorded { position: position as u64, at, deleted });
            }
        }
        // Each event's three items with its successor's time, and its predecessor's three
        // superseded at its own time; one item per key.
        let mut items: HashMap<(String, u64), Item> = HashMap::new();
        for event in events {
            let key = &event.key;
            let versions = version_pk(&key.tenant, &key.resource_type, &key.id);
            let successor = known.get(&(versions.clone(), event.version + 1)).copied();
            let this = recorded(event);
            for (pk, sk) in placements(&key.tenant, &key.resource_type, &versions, event.version, event.position) {
                items.insert((pk.clone(), sk), item(pk, sk, this, successor));
            }
            if let Some(previous) = event.version.checked_sub(1).and_then(|version| known.get(&(versions.clone(), version)).map(|previous| (version, *previous))) {
                let (version, recorded) = previous;
                for (pk, sk) in placements(&key.tenant, &key.resource_type, &versions, version, recorded.position) {
                    items.insert((pk.clone(), sk), item(pk, sk, recorded, Some(this)));
                }
            }
        }
        let items: Vec<Item> = items.into_values().collect();
        for chunk in items.chunks(WRITE_BATCH) {
            self.batch_put(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// A snapshot of one type as of log position `as_of`, a page at a time: the positions
    /// (ascending, after `after`, at most `limit`) of the versions current at `as_of` (not
    /// superseded by a version at or before it) that are not deletes and were recorded at or after
    /// `since_ms`. The stream must have been applied up to `as_of`.
    pub async fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>> {
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":pk".to_string(), AttributeValue::S(type_pk(tenant, resource_type))),
            (":after".to_string(), n(after)),
            (":as_of".to_string(), n(as_of)),
        ]);
        let mut filter = String::from("attribute_not_exists(del) AND (attribute_not_exists(supp) OR supp > :as_of)");
        if let Some(since) = since_ms {
            values.insert(":since".into(), n(since));
            filter.push_str(" AND #at >= :since");
        }
        let mut positions = Vec::new();
        let mut start_key = None;
        while positions.len() < limit {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :after AND :as_of")
                .filter_expression(&filter)
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .limit(limit as i32)
                .set_exclusive_start_key(start_key.take());
            if since_ms.is_some() {
                request = request.expression_attribute_names("#at", "at");
            }
            let output = request.send().await.map_err(dynamo)?;
            positions.extend(output.items().iter().filter_map(|item| number(item, "pos")).map(|p| p as u64).filter(|p| *p > after));
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        positions.truncate(limit);
        Ok(positions)
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
        Ok(HistoryPage::from_newest(positions, query.count))
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
