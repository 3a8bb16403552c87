//! Reads: the head, commit items, versions of a stream, and events by position.
//! Every read is strongly consistent; staged and aborted versions are never returned.

use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::items::{
    get_n, get_s, key, log_pk, log_sk, pointer_sk, s, stream_pk, transaction_pk, version_sk, Item, BUCKET, COMMITTED,
    COMMIT_SK,
};
use super::{storage, DynamoEventLog};
use crate::model::{Event, StreamKey};
use crate::Result;

/// BatchGetItem takes at most this many keys.
const BATCH_GET: usize = 100;

/// A commit item: where its transaction's events start, and how many there are.
#[derive(Clone, Debug)]
pub(super) struct Commit {
    pub transaction: String,
    pub position: u64,
    pub count: u64,
}

impl DynamoEventLog {
    pub(super) async fn read_head(&self) -> Result<u64> {
        super::commit::read_head(&self.client, self.table()).await
    }

    /// The commit item of `transaction`, if any: `(status, first position)`.
    pub(super) async fn commit_status(&self, transaction: &str) -> Result<Option<(String, u64)>> {
        let request = self.client.get_item().table_name(self.table()).set_key(Some(key(transaction_pk(transaction), COMMIT_SK)));
        let output = request.consistent_read(true).send().await.map_err(storage)?;
        let Some(item) = output.item() else { return Ok(None) };
        let status = get_s(item, "status")?.to_string();
        let position = if status == COMMITTED { get_n(item, "pos")? } else { 0 };
        Ok(Some((status, position)))
    }

    /// The first position of `transaction` if it committed.
    async fn committed_at(&self, transaction: &str) -> Result<Option<u64>> {
        if let Some(position) = self.committed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(transaction) {
            return Ok(Some(*position));
        }
        match self.commit_status(transaction).await? {
            Some((status, position)) if status == COMMITTED => {
                self.remember_commit(transaction, position);
                Ok(Some(position))
            }
            _ => Ok(None),
        }
    }

    /// The event a version item holds, if its transaction committed.
    async fn committed_event(&self, item: &Item) -> Result<Option<Event>> {
        match self.committed_at(get_s(item, "tx")?).await? {
            Some(start) => Ok(Some(self.event_from(item, start + get_n(item, "idx")?).await?)),
            None => Ok(None),
        }
    }

    /// The committed versions of a stream, oldest first; only `only` if given.
    pub(super) async fn stream_events(&self, stream: &StreamKey, only: Option<u64>) -> Result<Vec<Event>> {
        if let Some(version) = only {
            let request = self.client.get_item().table_name(self.table()).set_key(Some(key(stream_pk(stream), version_sk(version))));
            let output = request.consistent_read(true).send().await.map_err(storage)?;
            return match output.item() {
                Some(item) => Ok(self.committed_event(item).await?.into_iter().collect()),
                None => Ok(Vec::new()),
            };
        }
        let mut events = Vec::new();
        for item in self.partition(stream_pk(stream), "V|").await? {
            if let Some(event) = self.committed_event(&item).await? {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// The last committed version of a stream.
    pub(super) async fn latest(&self, stream: &StreamKey) -> Result<Option<Event>> {
        let mut start: Option<Item> = None;
        loop {
            let (items, next) = self.page(stream_pk(stream), None, false, Some(4), start.take()).await?;
            for item in &items {
                if let Some(event) = self.committed_event(item).await? {
                    return Ok(Some(event));
                }
            }
            match next {
                Some(next) => start = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// Every item of a partition whose sort key starts with `prefix`, in sort key order.
    async fn partition(&self, pk: String, prefix: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (page, next) = self.page(pk.clone(), Some(("begins_with(sk, :sk)", prefix.to_string())), true, None, start.take()).await?;
            items.extend(page);
            match next {
                Some(next) => start = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// One page of a strongly consistent query of partition `pk`, its sort key narrowed by
    /// `condition` (an expression on `:sk`, and the value), from `start`; returns the items and
    /// where the next page starts.
    async fn page(
        &self,
        pk: String,
        condition: Option<(&str, String)>,
        forward: bool,
        limit: Option<i32>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>)> {
        let mut request = self
            .client
            .query()
            .table_name(self.table())
            .expression_attribute_values(":pk", s(pk))
            .scan_index_forward(forward)
            .set_limit(limit)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        request = match condition {
            Some((expression, value)) => {
                request.key_condition_expression(format!("pk = :pk AND {expression}")).expression_attribute_values(":sk", s(value))
            }
            None => request.key_condition_expression("pk = :pk"),
        };
        let output = request.send().await.map_err(storage)?;
        Ok((output.items().to_vec(), output.last_evaluated_key().cloned()))
    }

    /// The commit whose positions include `position`, if committed. Commits are contiguous, so
    /// it is the last one starting at or before `position`, looked for bucket by bucket back.
    async fn commit_covering(&self, position: u64) -> Result<Option<Commit>> {
        let mut bucket = position / BUCKET;
        loop {
            let (items, _) = self.page(log_pk(bucket * BUCKET), Some(("sk <= :sk", log_sk(position))), false, Some(1), None).await?;
            if let Some(item) = items.first() {
                let commit = commit_of_log_item(item)?;
                return Ok((commit.position + commit.count > position).then_some(commit));
            }
            if bucket == 0 {
                return Ok(None);
            }
            bucket -= 1;
        }
    }

    /// The events of one committed transaction, in position order.
    async fn transaction_events(&self, commit: &Commit) -> Result<Vec<Event>> {
        let pointers = self.partition(transaction_pk(&commit.transaction), "E|").await?;
        let keys: Vec<Item> = pointers
            .iter()
            .map(|pointer| Ok(key(get_s(pointer, "s")?, version_sk(get_n(pointer, "v")?))))
            .collect::<Result<_>>()?;
        let mut events: Vec<Event> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET) {
            for item in self.batch_get(chunk.to_vec()).await? {
                events.push(self.event_from(&item, commit.position + get_n(&item, "idx")?).await?);
            }
        }
        events.sort_by_key(|event| event.position);
        Ok(events)
    }

    /// BatchGetItem until nothing is left unprocessed.
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        while !keys.is_empty() {
            let wanted = KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(storage)?;
            let output = self.client.batch_get_item().request_items(self.table(), wanted).send().await.map_err(storage)?;
            if let Some(found) = output.responses().and_then(|responses| responses.get(self.table())) {
                items.extend(found.iter().cloned());
            }
            keys = output
                .unprocessed_keys()
                .and_then(|left| left.get(self.table()))
                .map(|left| left.keys().to_vec())
                .unwrap_or_default();
        }
        Ok(items)
    }

    /// Events after `after`, whole transactions, until at least `limit` (or the head).
    pub(super) async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        let head = self.read_head().await?;
        let mut events = Vec::new();
        if after >= head {
            return Ok(events);
        }
        let mut next = after + 1;
        while next <= head && events.len() < limit {
            let Some(commit) = self.commit_covering(next).await? else { break };
            next = commit.position + commit.count;
            events.extend(self.transaction_events(&commit).await?.into_iter().filter(|event| event.position > after));
        }
        Ok(events)
    }

    /// The event at `position`, if committed.
    pub(super) async fn event_at(&self, position: u64) -> Result<Option<Event>> {
        let Some(commit) = self.commit_covering(position).await? else { return Ok(None) };
        let index = (position - commit.position) as usize;
        let request = self.client.get_item().table_name(self.table()).set_key(Some(key(transaction_pk(&commit.transaction), pointer_sk(index))));
        let output = request.consistent_read(true).send().await.map_err(storage)?;
        let Some(pointer) = output.item() else { return Ok(None) };
        let version_key = key(get_s(pointer, "s")?, version_sk(get_n(pointer, "v")?));
        let output = self.client.get_item().table_name(self.table()).set_key(Some(version_key)).consistent_read(true).send().await;
        match output.map_err(storage)?.item() {
            Some(item) => Ok(Some(self.event_from(item, position).await?)),
            None => Ok(None),
        }
    }
}

fn commit_of_log_item(item: &Item) -> Result<Commit> {
    let position = get_s(item, "sk")?.parse().map_err(|_| crate::LogError::Storage("malformed log item position".into()))?;
    Ok(Commit { transaction: get_s(item, "tx")?.to_string(), position, count: get_n(item, "n")? })
}
