//! Shard workers: several processes share a stream's shards, one lease per shard and projection.
//!
//! Each worker, every [`ConsumerOptions::balance_every`]: lists the shards and the leases, and
//! takes free or expired leases of *ready* shards until it holds its share (the ready shards
//! divided by the workers holding live leases, itself included). A shard is ready when it is not
//! finished and each of its parents (after a split or a merge) is finished or gone from the
//! stream: a resource's older versions, in the parent, are always applied before its newer
//! ones, in a child.
//!
//! For each lease it holds, a task reads the shard after the lease's checkpoint, applies the
//! records to the projection (retrying until it succeeds), and then moves the checkpoint, with
//! the condition that it still holds the lease. A worker that dies stops renewing; when its
//! leases expire other workers take them and start from the checkpoints, so the records after
//! the last checkpoint are applied again (at least once). A shard read to its end (closed by
//! resharding) is marked finished, which readies its children.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use event_log::{Event, EventLog};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::leases::{now_ms, Lease, Leases};
use crate::record::{resolve, Resolved};
use crate::{kinesis_error, Result, StreamError, StreamProjection};

#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    pub stream: String,
    /// How often leases are balanced and shards listed.
    pub balance_every: Duration,
    /// How long a shard task waits after reading nothing.
    pub idle_poll: Duration,
    /// Records per GetRecords.
    pub batch: i32,
}

impl ConsumerOptions {
    pub fn new(stream: impl Into<String>) -> Self {
        Self { stream: stream.into(), balance_every: Duration::from_secs(2), idle_poll: Duration::from_millis(500), batch: 1000 }
    }
}

/// One worker of one projection.
pub struct Consumer {
    kinesis: aws_sdk_kinesis::Client,
    leases: Leases,
    log: Arc<dyn EventLog>,
    projection: Arc<dyn StreamProjection>,
    options: ConsumerOptions,
    /// Shards the last listing showed closed (they get no more records).
    closed: Mutex<HashSet<String>>,
}

/// What the readiness rule needs to know of a shard.
struct ShardLine<'a> {
    id: &'a str,
    parents: [Option<&'a str>; 2],
    closed: bool,
}

/// The shards to read now: not finished, and each parent finished or gone from the stream
/// (trimmed after the retention period).
fn ready_shards<'a>(shards: &[ShardLine<'a>], finished: &HashSet<String>) -> Vec<&'a str> {
    let listed: HashSet<&str> = shards.iter().map(|s| s.id).collect();
    let done = |parent: &Option<&str>| parent.is_none_or(|parent| finished.contains(parent) || !listed.contains(parent));
    shards.iter().filter(|s| !finished.contains(s.id) && s.parents.iter().all(done)).map(|s| s.id).collect()
}

impl Consumer {
    pub fn new(kinesis: aws_sdk_kinesis::Client, leases: Leases, log: Arc<dyn EventLog>, projection: Arc<dyn StreamProjection>, options: ConsumerOptions) -> Arc<Self> {
        Arc::new(Self { kinesis, leases, log, projection, options, closed: Mutex::new(HashSet::new()) })
    }

    fn lease_name(&self, shard: &str) -> String {
        format!("{}|{}|{}", self.projection.name(), self.options.stream, shard)
    }

    fn prefix(&self) -> String {
        format!("{}|{}|", self.projection.name(), self.options.stream)
    }

    /// Works until `shutdown` turns true, then stops its shard tasks and releases their leases.
    /// Dropping the future (a killed worker) ends the shard tasks too, without releasing.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<String, AbortHandle> = HashMap::new();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            running.retain(|_, task| !task.is_finished());
            match self.balance(&running).await {
                Ok(taken) => {
                    for (shard, lease) in taken {
                        let task = tasks.spawn(self.clone().consume(shard.clone(), lease, shutdown.clone()));
                        running.insert(shard, task);
                    }
                }
                Err(error) => tracing::warn!(%error, projection = self.projection.name(), "cannot balance shard leases; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.balance_every) => {}
                _ = shutdown.changed() => {}
            }
        }
        tasks.join_all().await;
    }

    async fn shards(&self) -> Result<Vec<Shard>> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let request = match &next {
                Some(token) => self.kinesis.list_shards().next_token(token),
                None => self.kinesis.list_shards().stream_name(&self.options.stream),
            };
            let output = request.send().await.map_err(kinesis_error)?;
            shards.extend(output.shards().iter().cloned());
            match output.next_token {
                Some(token) => next = Some(token),
                None => return Ok(shards),
            }
        }
    }

    /// Takes leases of ready shards up to this worker's share (free or expired ones first, then
    /// one from the worker holding the most, if that is more than its share); returns the ones
    /// taken.
    async fn balance(&self, running: &HashMap<String, AbortHandle>) -> Result<Vec<(String, Lease)>> {
        let shards = self.shards().await?;
        let leases: HashMap<String, Lease> = self.leases.list(&self.prefix()).await?.into_iter().map(|lease| (lease.name.clone(), lease)).collect();
        let finished: HashSet<String> = shards.iter().map(Shard::shard_id).filter(|shard| leases.get(&self.lease_name(shard)).is_some_and(|lease| lease.finished)).map(String::from).collect();
        let listed: Vec<ShardLine> = shards
            .iter()
            .map(|s| ShardLine {
                id: s.shard_id(),
                parents: [s.parent_shard_id(), s.adjacent_parent_shard_id()],
                closed: s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some(),
            })
            .collect();
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = listed.iter().filter(|s| s.closed).map(|s| s.id.to_string()).collect();
        let ready = ready_shards(&listed, &finished);
        let now = now_ms();
        let holder = |shard: &str| leases.get(&self.lease_name(shard)).filter(|lease| lease.is_live(now)).and_then(|lease| lease.owner.clone());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for shard in &ready {
            if let Some(owner) = holder(shard) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        counts.entry(self.leases.owner().to_string()).or_default();
        let share = ready.len().div_ceil(counts.len());
        let mut held = running.len();
        let mut taken = Vec::new();
        for shard in ready.iter().filter(|shard| !running.contains_key(**shard) && holder(shard).is_none_or(|owner| owner == self.leases.owner())) {
            if held >= share {
                break;
            }
            if let Some(lease) = self.leases.take(&self.lease_name(shard)).await? {
                held += 1;
                taken.push((shard.to_string(), lease));
            }
        }
        let busiest = counts.iter().filter(|(owner, _)| owner.as_str() != self.leases.owner()).max_by_key(|(_, count)| **count);
        if let Some((owner, &count)) = busiest.filter(|(_, count)| held < share && **count > share) {
            let shard = ready.iter().find(|shard| holder(shard).as_deref() == Some(owner.as_str()));
            if let Some(shard) = shard {
                if let Some(lease) = self.leases.steal(&self.lease_name(shard), owner).await? {
                    tracing::info!(shard, from = %owner, holds = count, share, "took a shard lease to even out the shares");
                    taken.push((shard.to_string(), lease));
                }
            }
        }
        for (shard, _) in &taken {
            tracing::info!(shard, projection = self.projection.name(), "took a shard lease");
        }
        Ok(taken)
    }

    /// Reads one shard for as long as this worker holds its lease.
    async fn consume(self: Arc<Self>, shard: String, lease: Lease, shutdown: watch::Receiver<bool>) {
        let name = lease.name.clone();
        match self.consume_shard(&shard, &name, lease.checkpoint, shutdown).await {
            Ok(()) | Err(StreamError::Stopped) => {}
            Err(StreamError::LeaseLost(_)) => tracing::info!(%shard, projection = self.projection.name(), "lost a shard lease"),
            Err(error) => tracing::warn!(%error, %shard, projection = self.projection.name(), "shard task stopped; its lease will be taken again"),
        }
        let _ = self.leases.release(&name).await;
    }

    async fn iterator(&self, shard: &str, checkpoint: Option<&str>) -> Result<Option<String>> {
        let request = self.kinesis.get_shard_iterator().stream_name(&self.options.stream).shard_id(shard);
        let request = match checkpoint {
            Some(sequence) => request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        Ok(request.send().await.map_err(kinesis_error)?.shard_iterator)
    }

    async fn consume_shard(&self, shard: &str, name: &str, mut checkpoint: Option<String>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut iterator = self.iterator(shard, checkpoint.as_deref()).await?;
        let mut renewed = Instant::now();
        let renew_every = self.leases.duration() / 3;
        while !*shutdown.borrow() {
            let Some(current) = iterator.take() else {
                // The shard is closed and read to its end.
                return self.leases.renew(name, checkpoint.as_deref(), None, true).await;
            };
            let output = match self.kinesis.get_records().shard_iterator(current).limit(self.options.batch).send().await {
                Ok(output) => output,
                Err(error) => {
                    // An expired iterator, throttling, a network error: start again from the checkpoint.
                    tracing::warn!(error = %kinesis_error(error), shard, "cannot read the shard; retrying");
                    self.pause(&mut shutdown, self.options.idle_poll).await;
                    iterator = self.iterator(shard, checkpoint.as_deref()).await?;
                    continue;
                }
            };
            iterator = output.next_shard_iterator.clone();
            let records = output.records();
            if let Some(last) = records.last() {
                let (events, mark) = self.events(records).await?;
                if !events.is_empty() {
                    self.apply(&events, name, &mut shutdown).await?;
                }
                checkpoint = Some(last.sequence_number().to_string());
                self.leases.renew(name, checkpoint.as_deref(), mark, false).await?;
                renewed = Instant::now();
                continue;
            }
            if self.closed.lock().unwrap_or_else(|p| p.into_inner()).contains(shard) {
                iterator = None;
                continue;
            }
            if renewed.elapsed() >= renew_every {
                self.leases.renew(name, None, None, false).await?;
                renewed = Instant::now();
            }
            self.pause(&mut shutdown, self.options.idle_poll).await;
        }
        Ok(())
    }

    /// The records' events and the highest mark among them; a record that is not one of ours is
    /// logged (never its content) and passed over, since no retry could ever apply it.
    async fn events(&self, records: &[aws_sdk_kinesis::types::Record]) -> Result<(Vec<Event>, Option<u64>)> {
        let (mut events, mut mark) = (Vec::with_capacity(records.len()), None);
        for record in records {
            match resolve(record.data().as_ref(), self.log.as_ref()).await {
                Ok(Resolved::Event(event)) => events.push(*event),
                Ok(Resolved::Mark(position)) => mark = mark.max(Some(position)),
                Err(StreamError::Encoding(why)) => tracing::error!(sequence = record.sequence_number(), %why, "passing over a record that is not an event"),
                Err(error) => return Err(error),
            }
        }
        Ok((events, mark))
    }

    /// Applies until it succeeds, renewing the lease meanwhile; stops if the lease is lost.
    async fn apply(&self, events: &[Event], name: &str, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.projection.apply(events).await {
                Ok(()) => return Ok(()),
                Err(error) => tracing::warn!(%error, projection = self.projection.name(), "cannot apply records; retrying"),
            }
            self.pause(shutdown, backoff).await;
            if *shutdown.borrow() {
                return Err(StreamError::Stopped);
            }
            self.leases.renew(name, None, None, false).await?;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn pause(&self, shutdown: &mut watch::Receiver<bool>, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How far a projection has got, as one log position: every event at or below it has been
/// applied. It is the lowest mark applied over the shards not yet read to their end (a shard
/// without a lease or a mark yet holds it at 0).
pub async fn watermark(kinesis: &aws_sdk_kinesis::Client, leases: &Leases, projection: &str, stream: &str) -> Result<u64> {
    let prefix = format!("{projection}|{stream}|");
    let marks: HashMap<String, Lease> = leases.list(&prefix).await?.into_iter().map(|lease| (lease.name.clone(), lease)).collect();
    let mut lowest: Option<u64> = None;
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let output = request.send().await.map_err(kinesis_error)?;
        for shard in output.shards() {
            let lease = marks.get(&format!("{prefix}{}", shard.shard_id()));
            if lease.is_some_and(|lease| lease.finished) {
                continue;
            }
            let mark = lease.and_then(|lease| lease.mark).unwrap_or(0);
            lowest = Some(lowest.map_or(mark, |lowest| lowest.min(mark)));
        }
        match output.next_token {
            Some(token) => next = Some(token),
            None => return Ok(lowest.unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(id: &'a str, parents: [Option<&'a str>; 2]) -> ShardLine<'a> {
        ShardLine { id, parents, closed: false }
    }

    #[test]
    fn children_wait_until_every_parent_is_finished_or_gone() {
        // 0 was split into 1 and 2; 2 and 3 were merged into 4; 5's parent has been trimmed.
        let shards = [line("0", [None, None]), line("1", [Some("0"), None]), line("2", [Some("0"), None]), line("3", [None, None]), line("4", [Some("2"), Some("3")]), line("5", [Some("gone"), None])];
        let finished = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<HashSet<_>>();
        assert_eq!(ready_shards(&shards, &finished(&[])), vec!["0", "3", "5"]);
        assert_eq!(ready_shards(&shards, &finished(&["0"])), vec!["1", "2", "3", "5"]);
        assert_eq!(ready_shards(&shards, &finished(&["0", "2"])), vec!["1", "3", "5"], "a merge waits for both parents");
        assert_eq!(ready_shards(&shards, &finished(&["0", "2", "3"])), vec!["1", "4", "5"]);
    }
}
