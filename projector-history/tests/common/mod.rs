//! Events and queries shared by the history stores' tests.

#![allow(dead_code)]

use bytes::Bytes;
use event_log::{Event, Operation, StreamKey};
use fhir_core::history::{HistoryQuery, HistoryScope};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const T0: OffsetDateTime = datetime!(2024-01-01 00:00 UTC);

pub fn event(position: u64, tenant: &str, resource_type: &str, id: &str, version: u64, operation: Operation, minutes: i64) -> Event {
    Event {
        position,
        key: StreamKey::new(tenant, resource_type, id),
        version,
        operation,
        recorded_at: T0 + Duration::minutes(minutes),
        transaction_id: format!("tx{position}"),
        actor: "test".into(),
        body: Bytes::from_static(b"{}"),
        hash: [0; 32],
        prev_hash: [0; 32],
        envelope_version: 1,
    }
}

pub fn sample() -> Vec<Event> {
    vec![
        event(1, "t1", "Patient", "a", 1, Operation::Create, 0),
        event(2, "t1", "Patient", "b", 1, Operation::Create, 1),
        event(3, "t1", "Observation", "o", 1, Operation::Create, 2),
        event(4, "t1", "Patient", "a", 2, Operation::Update, 3),
        event(5, "t2", "Patient", "a", 1, Operation::Create, 4),
        event(6, "t1", "Patient", "a", 3, Operation::Delete, 5),
    ]
}

pub fn query(scope: HistoryScope) -> HistoryQuery {
    HistoryQuery { scope, since: None, at: None, count: 50, before: None }
}

