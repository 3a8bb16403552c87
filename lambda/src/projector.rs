//! A projection as a Lambda function on the Kinesis stream: `history` (DynamoDB) or `search`
//! (OpenSearch). The event source mapping needs `FunctionResponseTypes:
//! ReportBatchItemFailures`: the answer names the batch's first failing record, and Lambda retries
//! from it.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use event_log::EventLog;
use event_stream::StreamProjection;

/// Which projection a function applies.
pub fn projection(stores: &fhir_server::aws::Stores, name: &str) -> anyhow::Result<Arc<dyn StreamProjection>> {
    match name {
        "history" => Ok(stores.history.clone()),
        "search" => Ok(stores.search.clone()),
        other => anyhow::bail!("no projection '{other}' (history, search)"),
    }
}

/// Applies one batch of one shard's records.
pub async fn handle(event: &KinesisEvent, log: &dyn EventLog, projection: &dyn StreamProjection) -> KinesisEventResponse {
    event_stream::lambda::handle(event, log, projection).await
}
