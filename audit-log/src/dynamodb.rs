//! The audit trail in a DynamoDB table: partition key the tenant, sort key the time and the
//! request id, the record as JSON. Records are only ever put, never updated.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use crate::{AuditError, AuditQuery, AuditRecord, AuditStore};

/// Items per BatchWriteItem (DynamoDB's limit).
const BATCH: usize = 25;

pub struct DynamoAuditStore {
    client: Client,
    table: String,
}

fn failed(error: impl std::error::Error) -> AuditError {
    AuditError(format!("DynamoDB: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error)))
}

/// The sort key: the time, zero-padded so that keys sort by it, then the request id.
fn sort_key(at_ms: i64, request_id: &str) -> String {
    format!("{:020}#{request_id}", at_ms.max(0))
}

impl DynamoAuditStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAuditStore { client, table: table.into() }
    }

    /// Creates the table (on-demand) if it does not exist.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), AuditError> {
        event_log::dynamodb::create_table(client, table).await.map_err(|error| AuditError(error.to_string()))
    }
}

#[async_trait]
impl AuditStore for DynamoAuditStore {
    async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        for chunk in records.chunks(BATCH) {
            let mut requests = Vec::with_capacity(chunk.len());
            for record in chunk {
                let json = serde_json::to_string(record).map_err(|error| AuditError(error.to_string()))?;
                let put = PutRequest::builder()
                    .item("pk", AttributeValue::S(record.tenant.clone()))
                    .item("sk", AttributeValue::S(sort_key(record.at_ms, &record.request_id)))
                    .item("record", AttributeValue::S(json))
                    .build()
                    .map_err(failed)?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(requests);
            while let Some(requests) = pending.take().filter(|requests| !requests.is_empty()) {
                let written = self.client.batch_write_item().request_items(&self.table, requests).send().await.map_err(failed)?;
                pending = written.unprocessed_items.and_then(|mut items| items.remove(&self.table));
            }
        }
        Ok(())
    }

    async fn query(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let from = sort_key(query.since_ms.unwrap_or(0), "");
        let to = sort_key(query.until_ms.unwrap_or(i64::MAX / 2), "~");
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :tenant AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":tenant", AttributeValue::S(tenant.to_string()))
                .expression_attribute_values(":from", AttributeValue::S(from.clone()))
                .expression_attribute_values(":to", AttributeValue::S(to.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed)?;
            for item in page.items() {
                let Some(AttributeValue::S(json)) = item.get("record") else { continue };
                let record: AuditRecord = serde_json::from_str(json).map_err(|error| AuditError(error.to_string()))?;
                if query.matches(&record) {
                    found.push(record);
                    if found.len() >= query.limit {
                        return Ok(found);
                    }
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }
}
