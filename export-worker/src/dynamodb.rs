//! Export jobs in a DynamoDB table (AWS mode): partition key `tenant`, sort key `id`; the job's
//! JSON in `job`, and beside it what conditions and scans look at (`st` for the state,
//! `created`, `finished`, `lease_owner`, `lease_until`). A tenant's limit of unfinished jobs is
//! counted with a Query before the Put, so two kick-offs at the same instant may both pass.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;

use crate::job::{ExportJob, JobState};
use crate::store::{JobStore, Result, StoreError};

type Item = HashMap<String, AttributeValue>;

fn storage(error: impl std::error::Error) -> StoreError {
    StoreError::Storage(aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Creates the jobs table (nothing if it exists).
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let attribute = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().map_err(storage);
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(storage);
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("tenant")?)
        .attribute_definitions(attribute("id")?)
        .key_schema(key("tenant", KeyType::Hash)?)
        .key_schema(key("id", KeyType::Range)?);
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
        Err(error) => Err(storage(error)),
    }
}

pub struct DynamoJobStore {
    client: Client,
    table: String,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn key(tenant: &str, id: &str) -> Item {
        HashMap::from([("tenant".to_string(), s(tenant)), ("id".to_string(), s(id))])
    }

    /// Every item a scan with `filter` finds.
    async fn scan(&self, filter: &str, values: Item) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .expression_attribute_names("#st", "st")
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(storage)?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

fn decode(item: &Item) -> Result<ExportJob> {
    let json = item.get("job").and_then(|value| value.as_s().ok()).ok_or_else(|| StoreError::Storage("a job item without its job".into()))?;
    let mut job: ExportJob = serde_json::from_str(json).map_err(|error| StoreError::Storage(error.to_string()))?;
    if item.get("st").and_then(|value| value.as_s().ok()).map(String::as_str) == Some(JobState::Cancelled.as_str()) {
        job.state = JobState::Cancelled;
    }
    Ok(job)
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|value| value.as_n().ok()).and_then(|text| text.parse().ok()).unwrap_or(0)
}

fn unfinished() -> Item {
    HashMap::from([(":accepted".to_string(), s(JobState::Accepted.as_str())), (":running".to_string(), s(JobState::Running.as_str()))])
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(&self, job: &ExportJob, limit: usize) -> Result<()> {
        let mut values = unfinished();
        values.insert(":tenant".into(), s(&job.tenant));
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("tenant = :tenant")
            .filter_expression("#st IN (:accepted, :running)")
            .expression_attribute_names("#st", "st")
            .set_expression_attribute_values(Some(values))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage)?;
        if output.items().len() >= limit {
            return Err(StoreError::Busy(limit));
        }
        let mut item = Self::key(&job.tenant, &job.id);
        item.insert("st".into(), s(job.state.as_str()));
        item.insert("created".into(), n(job.created_ms));
        item.insert("lease_until".into(), n(0));
        item.insert("job".into(), s(serde_json::to_string(job).map_err(|error| StoreError::Storage(error.to_string()))?));
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(storage)?;
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<ExportJob>> {
        let output = self.client.get_item().table_name(&self.table).set_key(Some(Self::key(tenant, id))).consistent_read(true).send().await.map_err(storage)?;
        output.item.as_ref().map(decode).transpose()
    }

    async fn save(&self, job: &ExportJob, lease_until_ms: i64) -> Result<()> {
        let json = serde_json::to_string(job).map_err(|error| StoreError::Storage(error.to_string()))?;
        let mut values: Item = HashMap::from([
            (":st".to_string(), s(job.state.as_str())),
            (":job".to_string(), s(json)),
            (":lease".to_string(), n(lease_until_ms)),
            (":finished".to_string(), n(job.finished_ms.unwrap_or(0))),
        ]);
        values.insert(":cancelled".into(), s(JobState::Cancelled.as_str()));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&job.tenant, &job.id)))
            .update_expression("SET #st = :st, job = :job, lease_until = :lease, finished = :finished")
            .condition_expression("attribute_exists(id) AND #st <> :cancelled")
            .expression_attribute_names("#st", "st")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(StoreError::Cancelled),
            Err(error) => Err(storage(error)),
        }
    }

    async fn cancel(&self, tenant: &str, id: &str) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .update_expression("SET #st = :cancelled")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#st", "st")
            .expression_attribute_values(":cancelled", s(JobState::Cancelled.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(error) => Err(storage(error)),
        }
    }

    async fn claim(&self, worker: &str, now_ms: i64, lease_until_ms: i64) -> Result<Option<ExportJob>> {
        let mut values = unfinished();
        values.insert(":now".into(), n(now_ms));
        values.insert(":me".into(), s(worker));
        let filter = "#st IN (:accepted, :running) AND (lease_until < :now OR lease_owner = :me)";
        let mut candidates = self.scan(filter, values.clone()).await?;
        candidates.sort_by_key(|item| number(item, "created"));
        for item in candidates {
            let (Some(tenant), Some(id)) = (item.get("tenant").and_then(|v| v.as_s().ok()), item.get("id").and_then(|v| v.as_s().ok())) else { continue };
            let mut claim_values = values.clone();
            claim_values.insert(":until".into(), n(lease_until_ms));
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(tenant, id)))
                .update_expression("SET lease_owner = :me, lease_until = :until")
                .condition_expression(filter)
                .expression_attribute_names("#st", "st")
                .set_expression_attribute_values(Some(claim_values))
                .send()
                .await;
            match result {
                Ok(_) => return decode(&item).map(Some),
                // Another worker took it first.
                Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => continue,
                Err(error) => return Err(storage(error)),
            }
        }
        Ok(None)
    }

    async fn expired(&self, before_ms: i64) -> Result<Vec<ExportJob>> {
        let values: Item = HashMap::from([
            (":cancelled".to_string(), s(JobState::Cancelled.as_str())),
            (":completed".to_string(), s(JobState::Completed.as_str())),
            (":failed".to_string(), s(JobState::Failed.as_str())),
            (":before".to_string(), n(before_ms)),
        ]);
        let items = self.scan("#st = :cancelled OR (#st IN (:completed, :failed) AND finished < :before)", values).await?;
        items.iter().map(decode).collect()
    }

    async fn remove(&self, tenant: &str, id: &str) -> Result<()> {
        self.client.delete_item().table_name(&self.table).set_key(Some(Self::key(tenant, id))).send().await.map_err(storage)?;
        Ok(())
    }
}
