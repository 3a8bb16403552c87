//! Group commit: one task per process takes the head item's turn for every append staged at the
//! same moment. Commits from all writers take turns on the head item, so one TransactWriteItems
//! commits up to [`GROUP`] appends: it moves the head past all of them and writes each one's
//! commit and log items. Appends of one group get consecutive position ranges, in arrival order.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use tokio::sync::{mpsc, oneshot, watch};

use super::items::{key, log_pk, log_sk, n, s, transaction_pk, Item, COMMITTED, COMMIT_SK, HEAD_PK};
use super::storage;
use crate::{LogError, Result};

/// Appends per group: the head update plus two items each stay within TransactWriteItems' 100.
const GROUP: usize = 49;
/// Attempts of one group when other processes keep moving the head first.
const ATTEMPTS: usize = 1_000;

/// One staged append waiting for its positions.
pub(super) struct Request {
    pub transaction: String,
    pub count: u64,
    /// The first position, or why the append cannot commit.
    pub reply: oneshot::Sender<Result<u64>>,
}

/// The head item's last position.
pub(super) async fn read_head(client: &Client, table: &str) -> Result<u64> {
    let output = client.get_item().table_name(table).set_key(Some(key(HEAD_PK, HEAD_PK))).consistent_read(true).send().await;
    let output = output.map_err(storage)?;
    output.item().map_or(Ok(0), |item| super::items::get_n(item, "head"))
}

/// Commits requests until every sender is gone.
pub(super) async fn run(client: Client, table: String, mut requests: mpsc::Receiver<Request>, head: Arc<watch::Sender<u64>>) {
    let mut known_head: Option<u64> = None;
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        known_head = commit_group(&client, &table, group, known_head).await;
        if let Some(position) = known_head {
            advance(&head, position);
        }
    }
}

/// Moves the watched head forward to `position` (never back).
pub(super) fn advance(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|head| {
        let moved = position > *head;
        *head = (*head).max(position);
        moved
    });
}

/// Commits one group, answering every request. Returns the head after it, when known.
async fn commit_group(client: &Client, table: &str, mut group: Vec<Request>, mut known_head: Option<u64>) -> Option<u64> {
    for attempt in 0..ATTEMPTS {
        let current = match known_head {
            Some(head) => head,
            None => match read_head(client, table).await {
                Ok(head) => head,
                Err(error) => return fail_all(group, &error),
            },
        };
        let total: u64 = group.iter().map(|request| request.count).sum();
        let items = match group_items(table, &group, current, total) {
            Ok(items) => items,
            Err(error) => return fail_all(group, &error),
        };
        let Err(error) = client.transact_write_items().set_transact_items(Some(items)).send().await else {
            let mut next = current + 1;
            for request in group {
                let _ = request.reply.send(Ok(next));
                next += request.count;
            }
            return Some(current + total);
        };
        known_head = None;
        match failed_conditions(&error) {
            Some(failed) => {
                // Item 1 + 2i is request i's commit item: it exists only if that append was
                // aborted as abandoned. Those leave the group; the others try again.
                let aborted: Vec<usize> = failed.iter().filter(|&&item| item > 0 && item % 2 == 1).map(|item| (item - 1) / 2).collect();
                for index in aborted.into_iter().rev() {
                    let request = group.remove(index);
                    let message = "the append was abandoned before it could commit (it took too long); retry";
                    let _ = request.reply.send(Err(LogError::Storage(message.into())));
                }
                if group.is_empty() {
                    return None;
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            None => return fail_all(group, &storage(error)),
        }
    }
    fail_all(group, &LogError::Storage("the event log's head is too contended to commit; retry".into()))
}

fn fail_all(group: Vec<Request>, error: &LogError) -> Option<u64> {
    for request in group {
        let _ = request.reply.send(Err(LogError::Storage(error.to_string())));
    }
    None
}

/// The head update (on the condition that the head is still `current`), then each append's
/// commit item (on the condition that it has none) and log item.
fn group_items(table: &str, group: &[Request], current: u64, total: u64) -> Result<Vec<TransactWriteItem>> {
    let move_head = Update::builder()
        .table_name(table)
        .set_key(Some(key(HEAD_PK, HEAD_PK)))
        .update_expression("SET #head = :new")
        .condition_expression("attribute_not_exists(pk) OR #head = :seen")
        .expression_attribute_names("#head", "head")
        .expression_attribute_values(":new", n(current + total))
        .expression_attribute_values(":seen", n(current))
        .build()
        .map_err(storage)?;
    let mut items = vec![TransactWriteItem::builder().update(move_head).build()];
    let mut first = current + 1;
    for request in group {
        let mut commit = key(transaction_pk(&request.transaction), COMMIT_SK);
        commit.insert("status".into(), s(COMMITTED));
        commit.insert("pos".into(), n(first));
        commit.insert("n".into(), n(request.count));
        let mut log = key(log_pk(first), log_sk(first));
        log.insert("tx".into(), s(&request.transaction));
        log.insert("n".into(), n(request.count));
        items.push(put(table, commit, Some("attribute_not_exists(pk)"))?);
        items.push(put(table, log, None)?);
        first += request.count;
    }
    Ok(items)
}

/// A Put for a TransactWriteItems, with an optional condition.
fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
    let put = Put::builder().table_name(table).set_item(Some(item)).set_condition_expression(condition.map(str::to_string)).build();
    Ok(TransactWriteItem::builder().put(put.map_err(storage)?).build())
}

/// A short, growing, jittered pause between attempts (up to about 64 ms).
fn backoff(attempt: usize) -> Duration {
    use std::hash::BuildHasher;
    let ceiling = 1000 * 2u64.pow(attempt.min(6) as u32);
    let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % ceiling;
    Duration::from_micros(500 + jitter)
}

/// For a cancelled transaction, the indexes of the items whose condition failed (empty when it
/// was cancelled for another reason, such as a concurrent transaction); `None` for other errors.
pub(super) fn failed_conditions(error: &SdkError<TransactWriteItemsError>) -> Option<Vec<usize>> {
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = error.as_service_error()? else { return None };
    Some(
        cancelled
            .cancellation_reasons()
            .iter()
            .enumerate()
            .filter(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
            .map(|(index, _)| index)
            .collect(),
    )
}
