//! Leases and checkpoints in a DynamoDB table, one item per lease (`lease` is the key): who holds
//! it (`owner`) until when (`expires`, Unix milliseconds), how far its holder got (`checkpoint`),
//! whether its work is over (`finished`, for a shard read to its end), and the last mark applied
//! (`mark`, a log position; see `record`).
//!
//! Every change is conditional on the holder: a worker that lost its lease (it paused longer than
//! the lease lasts, and another took over) cannot move the checkpoint any more, so two workers
//! never both advance one shard. Expiry compares wall clocks, so the workers' clocks must agree to
//! well within the lease time (NTP does; the default lease is 10 seconds).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType};
use aws_sdk_dynamodb::Client;

use crate::{Result, StreamError};

/// One lease as read from the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: Option<String>,
    pub expires_ms: u64,
    pub checkpoint: Option<String>,
    pub finished: bool,
    pub mark: Option<u64>,
}

impl Lease {
    /// Held by someone whose lease has not run out.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.owner.is_some() && self.expires_ms > now_ms
    }
}

/// The lease table, as one worker sees it.
#[derive(Clone)]
pub struct Leases {
    client: Client,
    table: String,
    owner: String,
    duration: Duration,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn dynamo(error: impl std::error::Error) -> StreamError {
    StreamError::Aws(format!("DynamoDB: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error)))
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Lease {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Lease {
        name: text("lease").unwrap_or_default(),
        owner: text("owner"),
        expires_ms: item.get("expires").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0),
        checkpoint: text("checkpoint"),
        finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        mark: item.get("mark").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()),
    }
}

/// Creates the lease table (nothing if it exists).
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("lease").attribute_type(ScalarAttributeType::S).build().map_err(dynamo)?)
        .key_schema(KeySchemaElement::builder().attribute_name("lease").key_type(KeyType::Hash).build().map_err(dynamo)?);
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
        Err(error) => Err(dynamo(error)),
    }
}

impl Leases {
    pub fn new(client: Client, table: impl Into<String>, owner: impl Into<String>, duration: Duration) -> Self {
        Self { client, table: table.into(), owner: owner.into(), duration }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Takes the lease if it is free, expired or already ours (and not finished); returns it,
    /// or `None` if someone else holds it.
    pub async fn take(&self, name: &str) -> Result<Option<Lease>> {
        self.claim(name, "attribute_not_exists(#owner) OR #owner = :me OR expires < :now", None).await
    }

    /// Takes a live lease from `from` (to even out the shares of the workers); `None` if `from`
    /// no longer holds it. The former holder notices at its next renewal and stops.
    pub async fn steal(&self, name: &str, from: &str) -> Result<Option<Lease>> {
        self.claim(name, "#owner = :from", Some(from)).await
    }

    /// Makes this worker the holder of an unfinished lease on `condition` (which may use `:me`,
    /// `:now` and, given `from`, `:from`); `None` if the condition does not hold.
    async fn claim(&self, name: &str, condition: &str, from: Option<&str>) -> Result<Option<Lease>> {
        let now = now_ms();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("lease", s(name))
            .update_expression("SET #owner = :me, expires = :until")
            .condition_expression(format!("({condition}) AND (attribute_not_exists(finished) OR finished = :no)"))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":until", n(now + self.duration.as_millis() as u64))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .return_values(ReturnValue::AllNew);
        request = match from {
            Some(from) => request.expression_attribute_values(":from", s(from)),
            None => request.expression_attribute_values(":now", n(now)),
        };
        match request.send().await {
            Ok(output) => Ok(output.attributes.as_ref().map(from_item)),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(error) => Err(dynamo(error)),
        }
    }

    /// Extends a lease we hold and records how far we got (`checkpoint` and the last `mark`
    /// applied, when given) and whether the work is over. [`StreamError::LeaseLost`] if another
    /// worker holds it now.
    pub async fn renew(&self, name: &str, checkpoint: Option<&str>, mark: Option<u64>, finished: bool) -> Result<()> {
        let mut update = String::from("SET expires = :until");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("lease", s(name))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":until", n(now_ms() + self.duration.as_millis() as u64));
        if let Some(checkpoint) = checkpoint {
            update.push_str(", checkpoint = :checkpoint");
            request = request.expression_attribute_values(":checkpoint", s(checkpoint));
        }
        if let Some(mark) = mark {
            update.push_str(", mark = :mark");
            request = request.expression_attribute_values(":mark", n(mark));
        }
        if finished {
            update.push_str(", finished = :yes");
            request = request.expression_attribute_values(":yes", AttributeValue::Bool(true));
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StreamError::LeaseLost(name.to_string()))
            }
            Err(error) => Err(dynamo(error)),
        }
    }

    /// Gives a lease up at once (on shutdown), so another worker need not wait for it to expire.
    pub async fn release(&self, name: &str) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("lease", s(name))
            .update_expression("SET expires = :zero")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(error) => Err(dynamo(error)),
        }
    }

    /// Every lease whose name starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Lease>> {
        let mut leases = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(lease, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(dynamo)?;
            leases.extend(output.items().iter().map(from_item));
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(leases),
            }
        }
    }
}
