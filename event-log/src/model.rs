//! The event envelope and the requests that append events.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the envelope layout. Bump it when the envelope changes and teach readers to upcast.
pub const ENVELOPE_VERSION: u32 = 1;

/// The identity of one resource's stream of versions. The tenant is part of every key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamKey {
    pub tenant: String,
    pub resource_type: String,
    pub id: String,
}

impl StreamKey {
    pub fn new(tenant: impl Into<String>, resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self { tenant: tenant.into(), resource_type: resource_type.into(), id: id.into() }
    }
}

/// What a write did to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "create" => Some(Operation::Create),
            "update" => Some(Operation::Update),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// The version a writer expects the stream to be at before its event is appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet (the new event is version 1).
    NoStream,
    /// The stream's last version must be exactly this one (the new event is this + 1).
    Exactly(u64),
}

impl ExpectedVersion {
    /// The version number the appended event receives.
    pub fn next_version(self) -> u64 {
        match self {
            ExpectedVersion::NoStream => 1,
            ExpectedVersion::Exactly(version) => version + 1,
        }
    }
}

/// One event to append: the caller has already placed `meta.versionId` (= `expected.next_version()`)
/// and `meta.lastUpdated` (= `recorded_at`) in the body, so that a read returns the stored bytes as-is.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub key: StreamKey,
    pub expected: ExpectedVersion,
    pub operation: Operation,
    /// The resource JSON; empty for a delete.
    pub body: Bytes,
}

/// A set of events that commit together or not at all, sharing one transaction id and commit time.
#[derive(Clone, Debug)]
pub struct AppendBatch {
    pub transaction_id: String,
    pub actor: String,
    /// The commit time recorded in every event (and in each body's `meta.lastUpdated`).
    pub recorded_at: OffsetDateTime,
    pub events: Vec<NewEvent>,
}

/// A committed, immutable event, as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the whole log; strictly increasing in commit order, starting at 1.
    pub position: u64,
    pub key: StreamKey,
    pub version: u64,
    pub operation: Operation,
    pub recorded_at: OffsetDateTime,
    pub transaction_id: String,
    pub actor: String,
    pub body: Bytes,
    /// SHA-256 over the previous event's hash, the envelope fields and the body (see [`crate::hash`]).
    pub hash: [u8; 32],
    /// The hash of the previous version of this stream; all zeroes for version 1.
    pub prev_hash: [u8; 32],
    pub envelope_version: u32,
}

/// What a successful append tells the writer about each appended event, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub position: u64,
    pub key: StreamKey,
    pub version: u64,
}
