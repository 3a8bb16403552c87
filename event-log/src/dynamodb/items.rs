//! The table's items: their keys and how an event becomes an item and back.
//!
//! One table, string keys `pk` and `sk`:
//!
//! | item | `pk` | `sk` | holds |
//! |---|---|---|---|
//! | version | `S|tenant|type|id` | `V|version` (20 digits) | the event: `tx`, `idx`, `op`, `at`, `actor`, `env`, `body` (or `blob`, its S3 object), `hash`, `prev`, `staged` |
//! | pointer | `T|transaction` | `E|idx` (8 digits) | `s` (the version's `pk`) and `v` (its version) |
//! | commit | `T|transaction` | `H` | `status` (`committed` or `aborted`), `pos` (first position), `n` |
//! | log | `L|bucket` | position (20 digits) | `tx` and `n`: the commit that starts at that position |
//! | head | `C` | `C` | `head`: the last position committed |
//!
//! A version item is *staged* until its transaction's commit item says `committed`; readers
//! ignore staged and aborted versions. An event's position is its commit's `pos` plus its `idx`.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::hash::canonical_time;
use crate::model::{Event, Operation, StreamKey};
use crate::{LogError, Result};

pub type Item = HashMap<String, AttributeValue>;

/// Positions per log partition (`L|bucket`).
pub const BUCKET: u64 = 4096;
pub const HEAD_PK: &str = "C";
pub const COMMIT_SK: &str = "H";
pub const COMMITTED: &str = "committed";
pub const ABORTED: &str = "aborted";

pub fn stream_pk(key: &StreamKey) -> String {
    format!("S|{}|{}|{}", key.tenant, key.resource_type, key.id)
}

pub fn version_sk(version: u64) -> String {
    format!("V|{version:020}")
}

pub fn transaction_pk(transaction: &str) -> String {
    format!("T|{transaction}")
}

pub fn pointer_sk(index: usize) -> String {
    format!("E|{index:08}")
}

pub fn log_pk(position: u64) -> String {
    format!("L|{}", position / BUCKET)
}

pub fn log_sk(position: u64) -> String {
    format!("{position:020}")
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn corrupt(what: &str) -> LogError {
    LogError::Storage(format!("malformed item in the event table: {what}"))
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    item.get(name).and_then(|value| value.as_s().ok()).map(String::as_str).ok_or_else(|| corrupt(name))
}

pub fn get_n(item: &Item, name: &str) -> Result<u64> {
    item.get(name).and_then(|value| value.as_n().ok()).and_then(|text| text.parse().ok()).ok_or_else(|| corrupt(name))
}

fn get_hash(item: &Item, name: &str) -> Result<[u8; 32]> {
    item.get(name)
        .and_then(|value| value.as_b().ok())
        .and_then(|blob| <[u8; 32]>::try_from(blob.as_ref()).ok())
        .ok_or_else(|| corrupt(name))
}

/// A staged version's fields, everything but the position.
pub struct Version {
    pub key: StreamKey,
    pub version: u64,
    pub operation: Operation,
    pub recorded_at: OffsetDateTime,
    pub transaction_id: String,
    pub actor: String,
    pub body: Bytes,
    pub hash: [u8; 32],
    pub prev_hash: [u8; 32],
    pub envelope_version: u32,
    /// Place in its transaction.
    pub index: usize,
}

/// The version item of `version`, staged at `staged` (unix seconds); with `blob`, the body is
/// that S3 object rather than in the item.
pub fn version_item(version: &Version, staged: i64, blob: Option<&str>) -> Item {
    let mut item = key(stream_pk(&version.key), version_sk(version.version));
    item.insert("tenant".into(), s(&version.key.tenant));
    item.insert("type".into(), s(&version.key.resource_type));
    item.insert("id".into(), s(&version.key.id));
    item.insert("version".into(), n(version.version));
    item.insert("tx".into(), s(&version.transaction_id));
    item.insert("idx".into(), n(version.index));
    item.insert("op".into(), s(version.operation.as_str()));
    item.insert("at".into(), s(canonical_time(version.recorded_at)));
    item.insert("actor".into(), s(&version.actor));
    item.insert("env".into(), n(version.envelope_version));
    if let Some(name) = blob {
        item.insert("blob".into(), s(name));
    } else if !version.body.is_empty() {
        item.insert("body".into(), AttributeValue::B(Blob::new(version.body.to_vec())));
    }
    item.insert("hash".into(), AttributeValue::B(Blob::new(version.hash.to_vec())));
    item.insert("prev".into(), AttributeValue::B(Blob::new(version.prev_hash.to_vec())));
    item.insert("staged".into(), n(staged));
    item
}

/// The event a committed version item holds, at `position` (without its body if that is in S3).
pub fn event_of(item: &Item, position: u64) -> Result<Event> {
    let operation = Operation::parse(get_s(item, "op")?).ok_or_else(|| corrupt("op"))?;
    let recorded_at = OffsetDateTime::parse(get_s(item, "at")?, &Rfc3339).map_err(|_| corrupt("at"))?;
    let body = match item.get("body") {
        Some(value) => Bytes::copy_from_slice(value.as_b().map_err(|_| corrupt("body"))?.as_ref()),
        None => Bytes::new(),
    };
    Ok(Event {
        position,
        key: StreamKey::new(get_s(item, "tenant")?, get_s(item, "type")?, get_s(item, "id")?),
        version: get_n(item, "version")?,
        operation,
        recorded_at,
        transaction_id: get_s(item, "tx")?.to_string(),
        actor: get_s(item, "actor")?.to_string(),
        body,
        hash: get_hash(item, "hash")?,
        prev_hash: get_hash(item, "prev")?,
        envelope_version: u32::try_from(get_n(item, "env")?).map_err(|_| corrupt("env"))?,
    })
}
