//! Appending: stage every version conditionally, then hand the append to the group committer
//! (see the module docs of [`super`]), and clear versions that crashed writers left staged.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};

use super::items::{get_s, key, n, pointer_sk, s, stream_pk, transaction_pk, version_item, version_sk, Version, ABORTED, COMMITTED, COMMIT_SK};
use super::{storage, DynamoEventLog};
use crate::hash::{event_hash, Envelope, ZERO_HASH};
use crate::model::{AppendBatch, Appended, ExpectedVersion, StreamKey, ENVELOPE_VERSION};
use crate::{LogError, Result};

/// Events staged at once per chunk (BatchWriteItem takes at most 25 items).
const STAGE_CHUNK: usize = 25;
/// Reads of expected versions in flight at once.
const PREVIOUS_READS: usize = 16;
/// Times an append clears an abandoned version in its way and tries again.
const CLEARING_ROUNDS: usize = 3;

/// Why staging stopped.
enum Staging {
    /// A version this append needs is taken.
    Taken(StreamKey, u64),
    Failed(LogError),
}

pub(super) async fn append(log: &DynamoEventLog, batch: AppendBatch) -> Result<Vec<Appended>> {
    if batch.events.is_empty() {
        return Err(LogError::EmptyAppend);
    }
    let mut seen = HashSet::new();
    if let Some(event) = batch.events.iter().find(|event| !seen.insert(&event.key)) {
        return Err(LogError::DuplicateStream { key: event.key.clone() });
    }
    let versions = prepare(log, &batch).await?;
    let mut rounds = 0;
    loop {
        match stage(log, &versions).await {
            Ok(()) => break,
            Err(Staging::Taken(key, version)) => {
                if rounds < CLEARING_ROUNDS && clear_abandoned(log, &key, version).await? {
                    rounds += 1;
                    continue;
                }
                let expected = version - 1;
                return Err(LogError::Conflict { key, expected: expected.to_string(), actual: "a later version".into() });
            }
            Err(Staging::Failed(error)) => return Err(error),
        }
    }
    let first = match log.commit(&batch.transaction_id, versions.len() as u64).await {
        Ok(first) => first,
        Err(error) => settle(log, &batch.transaction_id, &versions, error).await?,
    };
    log.remember_commit(&batch.transaction_id, first);
    Ok(versions
        .iter()
        .map(|version| Appended { position: first + version.index as u64, key: version.key.clone(), version: version.version })
        .collect())
}

/// After a failed commit: the commit may still have happened (an error after DynamoDB applied
/// it) or may happen later (a retry in flight). An aborted commit item settles it either way:
/// written, the append can never commit and is unstaged; refused, it committed, at the position
/// returned.
async fn settle(log: &DynamoEventLog, transaction: &str, versions: &[Version], error: LogError) -> Result<u64> {
    match abort(log, transaction).await {
        Ok(true) => {}
        Ok(false) => {
            if let Some((status, first)) = log.commit_status(transaction).await? {
                if status == COMMITTED {
                    return Ok(first);
                }
            }
        }
        // Unknown either way: leave the staged versions to be cleared as abandoned.
        Err(other) => return Err(LogError::Storage(format!("{error}; and the append could not be settled: {other}"))),
    }
    unstage(log, versions).await;
    Err(error)
}

/// Writes `transaction`'s commit item as aborted, on the condition a commit is written on, so
/// that it can never commit after. False if it already has a commit item (of either status).
async fn abort(log: &DynamoEventLog, transaction: &str) -> Result<bool> {
    let mut aborted = key(transaction_pk(transaction), COMMIT_SK);
    aborted.insert("status".into(), s(ABORTED));
    let outcome = log.client.put_item().table_name(log.table()).set_item(Some(aborted)).condition_expression("attribute_not_exists(pk)").send().await;
    match outcome {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(error) => Err(storage(error)),
    }
}

/// Every event as a version: its number, and its hash over the expected version's hash.
async fn prepare(log: &DynamoEventLog, batch: &AppendBatch) -> Result<Vec<Version>> {
    // Collected first: a lazy iterator of futures here trips the compiler's lifetime inference
    // inside the boxed future of an async trait method.
    let reads: Vec<_> = batch.events.iter().map(|event| previous_hash(log, &event.key, event.expected)).collect();
    let previous = futures::stream::iter(reads)
        .buffered(PREVIOUS_READS)
        .try_collect::<Vec<[u8; 32]>>()
        .await?;
    Ok(batch
        .events
        .iter()
        .zip(previous)
        .enumerate()
        .map(|(index, (event, prev_hash))| {
            let version = event.expected.next_version();
            let envelope = Envelope::of_new(event, version, batch);
            Version {
                key: event.key.clone(),
                version,
                operation: event.operation,
                recorded_at: batch.recorded_at,
                transaction_id: batch.transaction_id.clone(),
                actor: batch.actor.clone(),
                hash: event_hash(&prev_hash, &envelope, &event.body),
                body: event.body.clone(),
                prev_hash,
                envelope_version: ENVELOPE_VERSION,
                index,
            }
        })
        .collect())
}

/// The hash of the version an event expects to follow; a conflict if that version is not the
/// stream's committed state.
async fn previous_hash(log: &DynamoEventLog, key: &StreamKey, expected: ExpectedVersion) -> Result<[u8; 32]> {
    let ExpectedVersion::Exactly(version) = expected else { return Ok(ZERO_HASH) };
    match log.stream_events(key, Some(version)).await?.pop() {
        Some(event) => Ok(event.hash),
        None => Err(LogError::Conflict { key: key.clone(), expected: version.to_string(), actual: "an earlier version".into() }),
    }
}

/// Writes every version item on the condition that it does not exist yet. On failure whatever
/// was staged is deleted again.
async fn stage(log: &DynamoEventLog, versions: &[Version]) -> std::result::Result<(), Staging> {
    let staged_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let chunks: Vec<_> = versions.chunks(STAGE_CHUNK).map(|chunk| stage_chunk(log, chunk, staged_at)).collect();
    let outcomes: Vec<std::result::Result<(), Staging>> = futures::stream::iter(chunks)
        .buffer_unordered(log.options.staging_concurrency.max(1))
        .collect()
        .await;
    let Some(failure) = outcomes.into_iter().find_map(Result::err) else { return Ok(()) };
    unstage(log, versions).await;
    Err(failure)
}

/// One chunk: each version by a conditional PutItem (cheaper than a transaction, and staging
/// needs no atomicity: a failure unstages everything), then the pointers in one BatchWriteItem.
async fn stage_chunk(log: &DynamoEventLog, chunk: &[Version], staged_at: i64) -> std::result::Result<(), Staging> {
    let puts = chunk.iter().map(|version| async move {
        let blob = log.store_large_body(&version.body).await.map_err(Staging::Failed)?;
        let outcome = log
            .client
            .put_item()
            .table_name(log.table())
            .set_item(Some(version_item(version, staged_at, blob.as_deref())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Staging::Taken(version.key.clone(), version.version))
            }
            Err(error) => Err(Staging::Failed(storage(error))),
        }
    });
    futures::future::join_all(puts).await.into_iter().collect::<std::result::Result<Vec<()>, Staging>>()?;
    let mut writes = Vec::with_capacity(chunk.len());
    for version in chunk {
        let mut pointer = key(transaction_pk(&version.transaction_id), pointer_sk(version.index));
        pointer.insert("s".into(), s(stream_pk(&version.key)));
        pointer.insert("v".into(), n(version.version));
        let put = PutRequest::builder().set_item(Some(pointer)).build().map_err(|error| Staging::Failed(storage(error)))?;
        writes.push(WriteRequest::builder().put_request(put).build());
    }
    while !writes.is_empty() {
        let output = log.client.batch_write_item().request_items(log.table(), writes).send().await;
        let output = output.map_err(|error| Staging::Failed(storage(error)))?;
        writes = output.unprocessed_items().and_then(|left| left.get(log.table())).cloned().unwrap_or_default();
    }
    Ok(())
}

/// Deletes what an append may have staged: its version items (only while still its own) and
/// pointers. Best effort: what is left is ignored by readers and cleared as abandoned later.
async fn unstage(log: &DynamoEventLog, versions: &[Version]) {
    let deletions: Vec<_> = versions.iter().map(|version| unstage_one(log, version)).collect();
    futures::stream::iter(deletions).buffer_unordered(16).collect::<Vec<()>>().await;
}

async fn unstage_one(log: &DynamoEventLog, version: &Version) {
    // Refused, as it should be, where the version is someone else's.
    let _ = log
        .client
        .delete_item()
        .table_name(log.table())
        .set_key(Some(key(stream_pk(&version.key), version_sk(version.version))))
        .condition_expression("tx = :tx")
        .expression_attribute_values(":tx", s(&version.transaction_id))
        .send()
        .await;
    let pointer = key(transaction_pk(&version.transaction_id), pointer_sk(version.index));
    if let Err(error) = log.client.delete_item().table_name(log.table()).set_key(Some(pointer)).send().await {
        tracing::warn!(error = %storage(error), "cannot delete a staged pointer");
    }
}

/// If the version item in the way was staged by a transaction that never committed and is older
/// than the abandon time, aborts that transaction and deletes the item. Returns whether the way
/// is clear now.
async fn clear_abandoned(log: &DynamoEventLog, stream: &StreamKey, version: u64) -> Result<bool> {
    let output = log
        .client
        .get_item()
        .table_name(log.table())
        .set_key(Some(key(stream_pk(stream), version_sk(version))))
        .consistent_read(true)
        .send()
        .await
        .map_err(storage)?;
    let Some(item) = output.item() else { return Ok(true) };
    let transaction = get_s(item, "tx")?.to_string();
    match log.commit_status(&transaction).await? {
        Some((status, _)) if status == COMMITTED => return Ok(false),
        Some(_) => {}
        None => {
            let staged = super::items::get_n(item, "staged")? as i64;
            let age = time::OffsetDateTime::now_utc().unix_timestamp() - staged;
            if age < log.options.abandon_after.as_secs() as i64 {
                return Ok(false);
            }
            if !abort(log, &transaction).await? {
                // It committed (or was aborted) just now: look again next round.
                return Ok(true);
            }
            tracing::warn!(transaction, "aborted a transaction whose writer abandoned it");
        }
    }
    let outcome = log
        .client
        .delete_item()
        .table_name(log.table())
        .set_key(Some(key(stream_pk(stream), version_sk(version))))
        .condition_expression("tx = :tx")
        .expression_attribute_values(":tx", s(&transaction))
        .send()
        .await;
    match outcome {
        Ok(_) => Ok(true),
        // Someone else cleared it first.
        Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(true),
        Err(error) => Err(storage(error)),
    }
}
