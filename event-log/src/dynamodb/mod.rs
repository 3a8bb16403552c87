//! The event log on DynamoDB: one item per resource version, conditional writes so a version is
//! never written twice, and atomic appends of any size.
//!
//! TransactWriteItems holds at most 100 items, so an append is not one DynamoDB transaction. It
//! commits in two steps (see [`items`] for the layout):
//!
//! 1. **Stage.** Every event's version item is written (PutItem) with the condition that the
//!    version does not exist yet (after checking that the expected version exists), and a pointer
//!    from the transaction to it (BatchWriteItem), many at once. A version already there is a
//!    conflict: what this append staged is deleted again and nothing shows.
//! 2. **Commit.** One TransactWriteItems moves the head item from `h` to `h + n` (on the
//!    condition that it is still `h`), writes the commit item (on the condition that none exists)
//!    and the log item at position `h + 1`. From that moment every staged version is visible at
//!    `h + 1 + idx`; before it, none is. A task commits the appends staged at the same moment in
//!    one such transaction (`commit`: group commit).
//!
//! Readers check each version's commit item (cached once seen committed). Positions are
//! allocated only at commit, under the head item's condition, so they have no gaps and follow
//! commit order; the cost is that commits from all writers take turns on that one item.
//!
//! A writer that dies after staging leaves versions that block their streams. The next writer
//! that conflicts with such a version, once it is older than [`DynamoOptions::abandon_after`],
//! marks its transaction aborted (a commit item with status `aborted`, written on the same
//! no-commit-item condition, so exactly one of commit and abort wins) and deletes it.
//!
//! A commit that fails with an error may still have been applied: the writer then writes its own
//! commit item as aborted, on the same condition, and either that succeeds (nothing was applied,
//! it unstages and reports the error) or it finds the commit and reports success.
//!
//! Bodies larger than an item allows go to S3 first (see `bodies`); the item points at them.

mod append;
mod bodies;
mod commit;
pub mod items;
mod read;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::bodies::{create_bucket, INLINE_LIMIT};
use crate::model::{AppendBatch, Appended, Event, StreamKey};
use crate::{EventLog, LogError, Result};

/// How the DynamoDB log is reached and behaves.
#[derive(Clone, Debug)]
pub struct DynamoOptions {
    pub table: String,
    /// The S3 bucket for bodies larger than an item allows (see [`INLINE_LIMIT`]).
    pub bucket: String,
    /// Staged versions older than this, of transactions that never committed, are removed by the
    /// next writer they block.
    pub abandon_after: Duration,
    /// How often the head is polled for [`EventLog::watch_head`] (other writers' commits).
    pub head_poll: Duration,
    /// Chunks of 25 events staged at once for one append.
    pub staging_concurrency: usize,
}

impl DynamoOptions {
    pub fn new(table: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self { table: table.into(), bucket: bucket.into(), abandon_after: Duration::from_secs(120), head_poll: Duration::from_millis(200), staging_concurrency: 8 }
    }
}

/// The DynamoDB [`EventLog`].
pub struct DynamoEventLog {
    client: Client,
    s3: aws_sdk_s3::Client,
    options: DynamoOptions,
    /// Commit positions of transactions seen committed (they never change).
    committed: Mutex<HashMap<String, u64>>,
    head: Arc<watch::Sender<u64>>,
    commits: mpsc::Sender<commit::Request>,
}

/// Committed transactions remembered; the cache starts over beyond this.
const COMMIT_CACHE: usize = 100_000;

impl DynamoEventLog {
    /// A log over an existing table and bucket (see [`create_table`], [`create_bucket`]). Starts a task that follows the head;
    /// it ends with the log.
    pub async fn open(client: Client, s3: aws_sdk_s3::Client, options: DynamoOptions) -> Result<Arc<Self>> {
        let head = Arc::new(watch::channel(commit::read_head(&client, &options.table).await?).0);
        let (commits, requests) = mpsc::channel(1024);
        tokio::spawn(commit::run(client.clone(), options.table.clone(), requests, head.clone()));
        let log = Arc::new(Self { client, s3, options, committed: Mutex::new(HashMap::new()), head, commits });
        tokio::spawn(follow_head(Arc::downgrade(&log)));
        Ok(log)
    }

    fn table(&self) -> &str {
        &self.options.table
    }

    fn advance_head(&self, position: u64) {
        commit::advance(&self.head, position);
    }

    /// Commits a staged append of `count` events; returns its first position.
    async fn commit(&self, transaction: &str, count: u64) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        let request = commit::Request { transaction: transaction.to_string(), count, reply };
        self.commits.send(request).await.map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn remember_commit(&self, transaction: &str, position: u64) {
        let mut committed = self.committed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if committed.len() >= COMMIT_CACHE {
            committed.clear();
        }
        committed.insert(transaction.to_string(), position);
    }
}

/// Polls the head so that `watch_head` also sees other writers' commits.
async fn follow_head(log: Weak<DynamoEventLog>) {
    loop {
        let Some(log) = log.upgrade() else { return };
        let pause = log.options.head_poll;
        match log.read_head().await {
            Ok(head) => log.advance_head(head),
            Err(error) => tracing::warn!(%error, "cannot read the event log's head"),
        }
        drop(log);
        tokio::time::sleep(pause).await;
    }
}

/// Creates the log's table (on-demand capacity) if it does not exist.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let attribute = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk").map_err(storage)?)
        .attribute_definitions(attribute("sk").map_err(storage)?)
        .key_schema(key("pk", KeyType::Hash).map_err(storage)?)
        .key_schema(key("sk", KeyType::Range).map_err(storage)?);
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
        Err(error) => Err(storage(error)),
    }
}

/// Any AWS error, with its details.
pub(crate) fn storage(error: impl std::error::Error) -> LogError {
    LogError::Storage(format!("DynamoDB: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error)))
}

#[async_trait]
impl EventLog for DynamoEventLog {
    async fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        append::append(self, batch).await
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<Event>> {
        self.stream_events(key, None).await
    }

    async fn read_version(&self, key: &StreamKey, version: u64) -> Result<Option<Event>> {
        Ok(self.stream_events(key, Some(version)).await?.pop())
    }

    async fn read_latest(&self, key: &StreamKey) -> Result<Option<Event>> {
        self.latest(key).await
    }

    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.events_after(after, limit).await
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(positions.len());
        for &position in positions {
            if let Some(event) = self.event_at(position).await? {
                events.push(event);
            }
        }
        Ok(events)
    }

    async fn head(&self) -> Result<u64> {
        let head = self.read_head().await?;
        self.advance_head(head);
        Ok(head)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
