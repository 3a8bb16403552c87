//! The search projection on OpenSearch (AWS mode).
//!
//! - One index per tenant and resource type, behind an alias ([`names`]), created on the first
//!   write with the mapping generated from the type's SearchParameters ([`mapping`]).
//! - One document per resource: its current version's index values ([`document`]), written with
//!   *external versioning* (the resource's version), so a replay or an out-of-order delivery
//!   never makes a document older; a delete leaves a tombstone.
//! - Fed by the event stream (`event_stream::StreamProjection`), or from the log by
//!   [`OpenSearchIndex::reindex`], which builds the next generation of every index by replay and
//!   then moves the aliases, with no downtime.
//!
//! - [`search`] answers queries of the shared query model with the query DSL.

pub mod document;
pub mod mapping;
pub mod names;
mod reindex;
pub mod search;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use event_log::Event;
use opensearch::http::request::JsonBody;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::http::Url;
use opensearch::indices::{IndicesCreateParts, IndicesGetAliasParts, IndicesPutMappingParts, IndicesRefreshParts};
use opensearch::{BulkParts, OpenSearch};
use serde_json::{json, Value};

pub use names::Names;
pub use reindex::Reindexed;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("OpenSearch: {0}")]
    OpenSearch(String),
    #[error("the body of the event at position {0} is not JSON")]
    BadBody(u64),
    #[error(transparent)]
    Log(#[from] event_log::LogError),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

fn opensearch_error(error: impl std::fmt::Display) -> IndexError {
    IndexError::OpenSearch(error.to_string())
}

/// The search indexes of one deployment.
pub struct OpenSearchIndex {
    client: OpenSearch,
    names: Names,
    /// Aliases known to exist.
    aliases: Mutex<HashSet<String>>,
}

impl OpenSearchIndex {
    /// An index at `url` whose names start with `prefix` (lower case letters, digits, `-`).
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        Self::build(url, prefix, None)
    }

    /// The same, with every request signed with AWS SigV4 for `service` (`es` for a domain,
    /// `aoss` for a Serverless collection), with the credentials and region of `aws`.
    pub fn signed(url: &str, prefix: &str, aws: &aws_config::SdkConfig, service: &str) -> Result<Self> {
        let credentials = opensearch::auth::Credentials::try_from(aws).map_err(|error| IndexError::Config(format!("cannot sign OpenSearch requests: {error}")))?;
        Self::build(url, prefix, Some((credentials, service)))
    }

    fn build(url: &str, prefix: &str, signing: Option<(opensearch::auth::Credentials, &str)>) -> Result<Self> {
        let valid = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !prefix.starts_with('-');
        if !valid {
            return Err(IndexError::Config(format!("the index prefix {prefix:?} must be lower case letters, digits and '-'")));
        }
        let url = Url::parse(url).map_err(|error| IndexError::Config(format!("the OpenSearch URL is not valid: {error}")))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url)).disable_proxy();
        if let Some((credentials, service)) = signing {
            builder = builder.auth(credentials).service_name(service);
        }
        let transport = builder.build().map_err(opensearch_error)?;
        Ok(Self { client: OpenSearch::new(transport), names: Names::new(prefix), aliases: Mutex::new(HashSet::new()) })
    }

    pub fn client(&self) -> &OpenSearch {
        &self.client
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Creates the first generation of an alias's index, with the alias, unless it exists.
    async fn ensure_alias(&self, alias: &str, resource_type: &str) -> Result<()> {
        if self.aliases.lock().unwrap_or_else(|p| p.into_inner()).contains(alias) {
            return Ok(());
        }
        if self.current_indexes().await?.contains_key(alias) {
            self.update_mapping(alias, resource_type).await?;
            self.aliases.lock().unwrap_or_else(|p| p.into_inner()).insert(alias.to_string());
            return Ok(());
        }
        let index = self.names.index(alias, 1);
        self.create_index(&index, resource_type, Some(alias)).await?;
        self.aliases.lock().unwrap_or_else(|p| p.into_inner()).insert(alias.to_string());
        Ok(())
    }

    /// Adds to an existing index the fields of search parameters installed since it was made
    /// (custom ones, from Implementation Guides); fields already there are unchanged. A field
    /// whose type changed cannot be updated: `fhir-server reindex` builds new indexes.
    async fn update_mapping(&self, alias: &str, resource_type: &str) -> Result<()> {
        let mappings = mapping::mappings(resource_type);
        let response = self.client.indices().put_mapping(IndicesPutMappingParts::Index(&[alias])).body(mappings).send().await.map_err(opensearch_error)?;
        let status = response.status_code();
        if status.is_success() {
            return Ok(());
        }
        let answer: Value = response.json().await.map_err(opensearch_error)?;
        Err(IndexError::OpenSearch(format!("updating the mapping of {alias} answered {status}: {}; rebuild the indexes (`fhir-server reindex`)", answer["error"]["reason"])))
    }

    /// Creates a concrete index with the type's mapping (and an alias); one that exists already is
    /// left as it is.
    async fn create_index(&self, index: &str, resource_type: &str, alias: Option<&str>) -> Result<()> {
        let mappings = mapping::mappings(resource_type);
        let mut body = json!({ "settings": mapping::settings(&mappings), "mappings": mappings });
        if let Some(alias) = alias {
            body["aliases"] = json!({ alias: {} });
        }
        let response = self.client.indices().create(IndicesCreateParts::Index(index)).body(body).send().await.map_err(opensearch_error)?;
        let status = response.status_code();
        if status.is_success() {
            return Ok(());
        }
        let answer: Value = response.json().await.map_err(opensearch_error)?;
        if answer["error"]["type"] == "resource_already_exists_exception" {
            return Ok(());
        }
        Err(IndexError::OpenSearch(format!("creating {index} answered {status}: {}", answer["error"]["reason"])))
    }

    /// Every alias of this deployment and the concrete index it points at.
    pub async fn current_indexes(&self) -> Result<BTreeMap<String, String>> {
        let pattern = format!("{}.*", self.names.prefix());
        let response = self.client.indices().get_alias(IndicesGetAliasParts::Index(&[&pattern])).send().await.map_err(opensearch_error)?;
        if response.status_code().as_u16() == 404 {
            return Ok(BTreeMap::new());
        }
        let answer: Value = response.json().await.map_err(opensearch_error)?;
        let mut current = BTreeMap::new();
        for (index, description) in answer.as_object().into_iter().flatten() {
            for alias in description["aliases"].as_object().into_iter().flat_map(|aliases| aliases.keys()) {
                current.insert(alias.clone(), index.clone());
            }
        }
        Ok(current)
    }

    /// Writes the events' documents through the aliases (creating indexes as needed).
    pub async fn apply(&self, events: &[Event]) -> Result<()> {
        let mut targets = Vec::with_capacity(events.len());
        for event in events {
            let alias = self.names.alias(&event.key.tenant, &event.key.resource_type);
            self.ensure_alias(&alias, &event.key.resource_type).await?;
            targets.push(alias);
        }
        self.bulk(events.iter().zip(targets.iter().map(String::as_str))).await
    }

    /// Indexes each event into the index or alias paired with it, versioned externally. A
    /// version conflict means the document is already newer: that is success.
    async fn bulk<'a>(&self, writes: impl Iterator<Item = (&'a Event, &'a str)>) -> Result<()> {
        let mut body: Vec<JsonBody<Value>> = Vec::new();
        for (event, index) in writes {
            let action = json!({"index": {"_index": index, "_id": event.key.id, "version": event.version, "version_type": "external"}});
            body.push(action.into());
            body.push(document::document(event)?.into());
        }
        if body.is_empty() {
            return Ok(());
        }
        let response = self.client.bulk(BulkParts::None).body(body).send().await.map_err(opensearch_error)?;
        let status = response.status_code();
        let answer: Value = response.json().await.map_err(opensearch_error)?;
        if !status.is_success() {
            return Err(IndexError::OpenSearch(format!("bulk answered {status}: {}", answer["error"]["reason"])));
        }
        if answer["errors"] == true {
            let failed = answer["items"].as_array().into_iter().flatten().map(|item| &item["index"]).find(|item| {
                let conflict = item["status"] == 409 && item["error"]["type"] == "version_conflict_engine_exception";
                item.get("error").is_some() && !conflict
            });
            if let Some(item) = failed {
                return Err(IndexError::OpenSearch(format!("indexing {} failed: {}", item["_index"], item["error"]["reason"])));
            }
        }
        Ok(())
    }

    /// Makes every write so far visible to searches (tests and reindex use it).
    pub async fn refresh(&self) -> Result<()> {
        let pattern = format!("{}.*", self.names.prefix());
        self.client.indices().refresh(IndicesRefreshParts::Index(&[&pattern])).send().await.map_err(opensearch_error)?.error_for_status_code().map_err(opensearch_error)?;
        Ok(())
    }
}

#[async_trait]
impl event_stream::StreamProjection for OpenSearchIndex {
    fn name(&self) -> &str {
        "opensearch"
    }

    async fn apply(&self, events: &[Event]) -> std::result::Result<(), String> {
        OpenSearchIndex::apply(self, events).await.map_err(|error| error.to_string())
    }
}
