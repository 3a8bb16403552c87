//! A projection run by Lambda on a Kinesis event source: the batch of one shard's records in
//! order, answered with partial batch failures (the event source mapping needs
//! `FunctionResponseTypes: ReportBatchItemFailures`).
//!
//! The batch is applied whole; if that fails, record by record (the projection is idempotent, so
//! applying the first ones again is harmless), and the first record that fails is reported:
//! Lambda checkpoints the records before it and retries from it, so one bad record holds back
//! only itself and what follows it in its shard, until the mapping's retry limit sends it to the
//! failure destination. Records that are not events are logged and passed over.
//!
//! [`record_marks`] then notes, in the shard's lease, the highest mark the batch applied, as the
//! long-running workers do, so that `consumer::watermark` (and so read-your-writes) follows the
//! functions too.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use event_log::{Event, EventLog};

use crate::record::{decode, resolve, Decoded, Resolved};
use crate::{Leases, StreamError, StreamProjection};

/// Handles one Kinesis event batch.
pub async fn handle(event: &KinesisEvent, log: &dyn EventLog, projection: &dyn StreamProjection) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    let mut events: Vec<(&str, Event)> = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let sequence = record.kinesis.sequence_number.as_str();
        match resolve(&record.kinesis.data, log).await {
            Ok(Resolved::Event(decoded)) => events.push((sequence, *decoded)),
            // Marks tell the long-running workers' watermark; a Lambda keeps no lease to record them in.
            Ok(Resolved::Mark(_)) => {}
            Err(StreamError::Encoding(why)) => tracing::error!(sequence, %why, "passing over a record that is not an event"),
            Err(error) => {
                // The log could not be read for a body sent by reference: retry from here.
                tracing::warn!(%error, sequence, "cannot complete a record from the log");
                apply_each(&events, projection, &mut response).await;
                if response.batch_item_failures.is_empty() {
                    response.add_failure(sequence);
                }
                return response;
            }
        }
    }
    let whole: Vec<Event> = events.iter().map(|(_, event)| event.clone()).collect();
    if let Err(error) = projection.apply(&whole).await {
        tracing::warn!(%error, projection = projection.name(), "the batch failed; applying record by record");
        apply_each(&events, projection, &mut response).await;
    }
    response
}

/// Applies records one at a time up to the first that fails, which is reported.
async fn apply_each(events: &[(&str, Event)], projection: &dyn StreamProjection, response: &mut KinesisEventResponse) {
    for (sequence, event) in events {
        if let Err(error) = projection.apply(std::slice::from_ref(event)).await {
            tracing::warn!(%error, sequence, projection = projection.name(), "a record failed; reporting it");
            response.add_failure(*sequence);
            return;
        }
    }
}

/// Records in the shard's lease (`{projection}|{stream}|{shard}`, as a worker names it) the
/// highest mark among the records before the first failure `response` reports: everything up to
/// that mark is applied. Does nothing for a batch without marks. `leases` should carry one owner
/// name for all the projection's functions (one batch per shard runs at a time).
pub async fn record_marks(event: &KinesisEvent, response: &KinesisEventResponse, leases: &Leases, projection: &str, stream: &str) -> crate::Result<()> {
    let failed = response.batch_item_failures.first().and_then(|failure| failure.item_identifier.as_deref());
    let mut highest = None;
    let mut shard = None;
    for record in &event.records {
        if Some(record.kinesis.sequence_number.as_str()) == failed {
            break;
        }
        if let Ok(Decoded::Mark(position)) = decode(&record.kinesis.data) {
            highest = highest.max(Some(position));
            shard = record.event_id.as_deref().and_then(|id| id.split_once(':')).map(|(shard, _)| shard.to_string());
        }
    }
    let (Some(mark), Some(shard)) = (highest, shard) else { return Ok(()) };
    let name = format!("{projection}|{stream}|{shard}");
    if leases.take(&name).await?.is_some() {
        leases.renew(&name, None, Some(mark), false).await?;
    }
    Ok(())
}
