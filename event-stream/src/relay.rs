//! The outbox relay: puts every committed event of the log on the Kinesis stream.
//!
//! The log is the outbox. The relay reads it after its checkpoint (a log position, kept in its
//! lease), puts the events on the stream, and only then moves the checkpoint. A relay that dies
//! anywhere in between leaves the checkpoint behind what it put, so the next one puts those
//! events again: delivery is at least once, and nothing committed is ever missing from the
//! stream, whenever the process dies. One relay works at a time (the lease); others wait to take
//! over.
//!
//! Order: events are put in rounds of at most one event per resource, and a round's failed
//! records are retried before the next round starts, so one resource's versions reach its shard
//! in version order (records of one round may land in any order, but they are of different
//! resources).
//!
//! After each batch a mark (`record`) goes to every open shard, which lets a projection's
//! workers tell how far, as a log position, they have applied everything.
//!
//! On AWS, DynamoDB's Kinesis streaming destination could replace the relay, but it streams
//! every item change, including staged versions of transactions that never commit: its
//! consumers would have to honour commit items. The relay sends committed events only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use event_log::{Event, EventLog};
use tokio::sync::watch;

use crate::leases::Leases;
use crate::record::{encode, encode_mark, partition_key};
use crate::{kinesis_error, Result, StreamError};

/// Events read from the log per step.
const READ_BATCH: usize = 2000;
/// Kinesis limits for one PutRecords request.
const MAX_RECORDS: usize = 500;
const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// Attempts at putting one round before the step fails (and is retried from the checkpoint).
const PUT_ATTEMPTS: u32 = 8;

pub struct Relay {
    log: Arc<dyn EventLog>,
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    leases: Leases,
    lease: String,
}

impl Relay {
    /// A relay from `log` to `stream`, its lease named after the stream.
    pub fn new(log: Arc<dyn EventLog>, kinesis: aws_sdk_kinesis::Client, stream: impl Into<String>, leases: Leases) -> Self {
        let stream = stream.into();
        let lease = format!("relay|{stream}");
        Self { log, kinesis, stream, leases, lease }
    }

    /// Relays until `shutdown` turns true; errors are logged and retried from the checkpoint.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut head = self.log.watch_head();
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let wait = match self.step().await {
                Ok(Step::Relayed(_)) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Step::CaughtUp) => None,
                Ok(Step::NotHolder) => Some(self.leases.duration() / 2),
                Err(error) => {
                    tracing::warn!(%error, stream = %self.stream, "relay step failed; retrying from the checkpoint");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    Some(backoff)
                }
            };
            head.mark_unchanged();
            let wait = wait.unwrap_or(self.leases.duration() / 3);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = head.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = self.leases.release(&self.lease).await;
    }

    /// Gives up the lease, so that another relay may take it at once.
    pub async fn release(&self) -> Result<()> {
        self.leases.release(&self.lease).await
    }

    /// How long a lease lasts without renewal.
    pub fn lease_duration(&self) -> Duration {
        self.leases.duration()
    }

    /// One step: takes (or renews) the lease, puts what follows the checkpoint, then moves it.
    pub async fn step(&self) -> Result<Step> {
        let Some(lease) = self.leases.take(&self.lease).await? else { return Ok(Step::NotHolder) };
        let after = lease.checkpoint.as_deref().map(str::parse::<u64>).transpose().map_err(|_| StreamError::Encoding("the relay checkpoint is not a position".into()))?.unwrap_or(0);
        let events = self.log.read_from(after, READ_BATCH).await?;
        let Some(last) = events.last() else { return Ok(Step::CaughtUp) };
        self.publish(&events).await?;
        self.mark(last.position).await?;
        self.leases.renew(&self.lease, Some(&last.position.to_string()), None, false).await?;
        Ok(Step::Relayed(events.len()))
    }

    /// Puts a mark at `position` in every open shard, after the events it covers.
    async fn mark(&self, position: u64) -> Result<()> {
        let mut marks = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let request = match &next {
                Some(token) => self.kinesis.list_shards().next_token(token),
                None => self.kinesis.list_shards().stream_name(&self.stream),
            };
            let output = request.send().await.map_err(kinesis_error)?;
            for shard in output.shards().iter().filter(|shard| shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none()) {
                let starting_hash = shard.hash_key_range().map(|range| range.starting_hash_key().to_string()).unwrap_or_default();
                let entry = PutRecordsRequestEntry::builder()
                    .partition_key("mark")
                    .explicit_hash_key(starting_hash)
                    .data(Blob::new(encode_mark(position)))
                    .build()
                    .map_err(kinesis_error)?;
                marks.push(entry);
            }
            match output.next_token {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        for round in marks.chunks(MAX_RECORDS) {
            self.put_round(round.to_vec()).await?;
        }
        Ok(())
    }

    /// Puts events on the stream in rounds of distinct resources.
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let mut round: Vec<PutRecordsRequestEntry> = Vec::new();
        let mut keys = HashSet::new();
        let mut bytes = 0;
        for event in events {
            let key = partition_key(&event.key);
            let data = encode(event)?;
            let full = round.len() == MAX_RECORDS || bytes + data.len() + key.len() > MAX_REQUEST_BYTES;
            if full || keys.contains(&key) {
                self.put_round(std::mem::take(&mut round)).await?;
                keys.clear();
                bytes = 0;
            }
            bytes += data.len() + key.len();
            let entry = PutRecordsRequestEntry::builder().partition_key(&key).data(Blob::new(data)).build().map_err(kinesis_error)?;
            keys.insert(key);
            round.push(entry);
        }
        if !round.is_empty() {
            self.put_round(round).await?;
        }
        Ok(())
    }

    /// Puts one round, retrying the records Kinesis turned down until all are in.
    async fn put_round(&self, mut entries: Vec<PutRecordsRequestEntry>) -> Result<()> {
        let mut backoff = Duration::from_millis(50);
        for _ in 0..PUT_ATTEMPTS {
            let output = self.kinesis.put_records().stream_name(&self.stream).set_records(Some(entries.clone())).send().await.map_err(kinesis_error)?;
            if output.failed_record_count.unwrap_or(0) == 0 {
                return Ok(());
            }
            entries = entries.into_iter().zip(output.records()).filter(|(_, result)| result.error_code().is_some()).map(|(entry, _)| entry).collect();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        Err(StreamError::Aws(format!("Kinesis turned down {} records {PUT_ATTEMPTS} times", entries.len())))
    }
}

/// What one relay step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Put this many events and moved the checkpoint past them.
    Relayed(usize),
    /// Nothing after the checkpoint.
    CaughtUp,
    /// Another relay holds the lease.
    NotHolder,
}
