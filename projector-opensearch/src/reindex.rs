//! Reindex by replay, with no downtime: every event of the log goes into the next generation of
//! the indexes (created with the current mappings) while searches and the stream's writes keep
//! using the aliases; then one `_aliases` call moves every alias to its new index at once; then
//! what was committed meanwhile is replayed through the aliases (external versioning makes the
//! repeats harmless), and the old generation is deleted.

use std::collections::BTreeMap;

use event_log::EventLog;
use opensearch::indices::IndicesDeleteParts;
use serde_json::{json, Value};

use crate::{opensearch_error, IndexError, OpenSearchIndex, Result};

/// Events read from the log per bulk request.
const BATCH: usize = 2000;

/// What a reindex did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reindexed {
    pub generation: u32,
    /// Events replayed into the new generation before the aliases moved.
    pub events: usize,
    /// Indexes of the new generation.
    pub indexes: usize,
}

impl OpenSearchIndex {
    /// Rebuilds every index of this deployment from `log` and moves the aliases to the new ones.
    pub async fn reindex(&self, log: &dyn EventLog) -> Result<Reindexed> {
        let before = self.current_indexes().await?;
        let generation = before.values().filter_map(|index| self.names.generation(index)).max().unwrap_or(0) + 1;
        let mut created: BTreeMap<String, String> = BTreeMap::new();
        let (mut after, mut events_replayed) = (0, 0);
        loop {
            let events = log.read_from(after, BATCH).await?;
            let Some(last) = events.last() else { break };
            let mut targets = Vec::with_capacity(events.len());
            for event in &events {
                let alias = self.names.alias(&event.key.tenant, &event.key.resource_type);
                if !created.contains_key(&alias) {
                    let index = self.names.index(&alias, generation);
                    self.create_index(&index, &event.key.resource_type, None).await?;
                    created.insert(alias.clone(), index);
                }
                targets.push(created[&alias].clone());
            }
            self.bulk(events.iter().zip(targets.iter().map(String::as_str))).await?;
            after = last.position;
            events_replayed += events.len();
        }

        let mut actions: Vec<Value> = Vec::new();
        for (alias, index) in &created {
            if let Some(old) = before.get(alias) {
                actions.push(json!({"remove": {"index": old, "alias": alias}}));
            }
            actions.push(json!({"add": {"index": index, "alias": alias}}));
        }
        if !actions.is_empty() {
            let response = self.client.indices().update_aliases().body(json!({ "actions": actions })).send().await.map_err(opensearch_error)?;
            let status = response.status_code();
            if !status.is_success() {
                let answer: Value = response.json().await.map_err(opensearch_error)?;
                return Err(IndexError::OpenSearch(format!("moving the aliases answered {status}: {}", answer["error"]["reason"])));
            }
        }
        self.aliases.lock().unwrap_or_else(|p| p.into_inner()).extend(created.keys().cloned());

        loop {
            let events = log.read_from(after, BATCH).await?;
            let Some(last) = events.last() else { break };
            self.apply(&events).await?;
            after = last.position;
        }
        let old: Vec<&str> = before.iter().filter(|(alias, _)| created.contains_key(*alias)).map(|(_, index)| index.as_str()).collect();
        if !old.is_empty() {
            self.client.indices().delete(IndicesDeleteParts::Index(&old)).send().await.map_err(opensearch_error)?.error_for_status_code().map_err(opensearch_error)?;
        }
        self.refresh().await?;
        Ok(Reindexed { generation, events: events_replayed, indexes: created.len() })
    }
}
