//! A projection as a Lambda function on the Kinesis stream: `history` (DynamoDB) or `search`
//! (OpenSearch). The event source mapping needs `FunctionResponseTypes:
//! ReportBatchItemFailures`: the answer names the batch's first failing record, and Lambda retries
//! from it. The highest mark applied goes into the shard's lease, so that the API's
//! read-your-writes waits see the function's progress.

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

/// Where a function records its progress: leases under one owner name for all the
/// projection's functions, and the stream's name.
pub struct Marks {
    pub leases: event_stream::Leases,
    pub stream: String,
}

impl Marks {
    pub fn new(stores: &fhir_server::aws::Stores, config: &fhir_server::Config, projection: &dyn StreamProjection) -> Marks {
        let owner = format!("lambda-{}", projection.name());
        let leases = event_stream::Leases::new(stores.clients.dynamodb.clone(), &config.aws.leases_table, owner, std::time::Duration::from_secs(60));
        Marks { leases, stream: config.aws.stream.clone() }
    }
}

/// Applies one batch of one shard's records, and records the marks it applied.
pub async fn handle(event: &KinesisEvent, log: &dyn EventLog, projection: &dyn StreamProjection, marks: &Marks) -> KinesisEventResponse {
    let response = event_stream::lambda::handle(event, log, projection).await;
    if let Err(error) = event_stream::lambda::record_marks(event, &response, &marks.leases, projection.name(), &marks.stream).await {
        // The batch is applied; only the watermark lags until the next batch.
        tracing::warn!(%error, projection = projection.name(), "cannot record the batch's mark");
    }
    response
}
