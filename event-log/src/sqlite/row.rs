//! Conversions between the envelope's Rust types and SQLite column values.

use bytes::Bytes;
use rusqlite::Row;
use time::OffsetDateTime;

use crate::model::{Event, Operation, StreamKey};
use crate::{LogError, Result};

/// A stored integer that must fit a `u64` (positions, versions).
pub(crate) fn to_u64(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| LogError::Storage(format!("corrupt event log: negative {column} {value}")))
}

/// A `u64` that must fit SQLite's signed integers.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| LogError::Storage(format!("{what} {value} is beyond what the event log stores")))
}

/// Unix nanoseconds, the stored form of `recorded_at` (years 1677 to 2262).
pub(crate) fn to_unix_nanos(instant: OffsetDateTime) -> Result<i64> {
    i64::try_from(instant.unix_timestamp_nanos())
        .map_err(|_| LogError::Storage(format!("recorded_at {instant} is outside the years the event log can store")))
}

pub(crate) fn from_unix_nanos(nanos: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|error| LogError::Storage(format!("corrupt event log: recorded_at {nanos}: {error}")))
}

fn blob<'row>(row: &'row Row<'_>, index: usize) -> Result<&'row [u8]> {
    row.get_ref(index)?
        .as_blob()
        .map_err(|error| LogError::Storage(format!("corrupt event log: column {index}: {error}")))
}

pub(crate) fn to_hash(bytes: &[u8], column: &str) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| LogError::Storage(format!("corrupt event log: {column} has {} bytes, not 32", bytes.len())))
}

/// Reads one event from a row selected with [`super::schema::EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &Row<'_>) -> Result<Event> {
    let operation: String = row.get(5)?;
    let operation = Operation::parse(&operation)
        .ok_or_else(|| LogError::Storage(format!("corrupt event log: unknown operation {operation:?}")))?;
    let envelope_version: i64 = row.get(12)?;
    Ok(Event {
        position: to_u64(row.get(0)?, "position")?,
        key: StreamKey { tenant: row.get(1)?, resource_type: row.get(2)?, id: row.get(3)? },
        version: to_u64(row.get(4)?, "version")?,
        operation,
        recorded_at: from_unix_nanos(row.get(6)?)?,
        transaction_id: row.get(7)?,
        actor: row.get(8)?,
        body: Bytes::copy_from_slice(blob(row, 9)?),
        hash: to_hash(blob(row, 10)?, "hash")?,
        prev_hash: to_hash(blob(row, 11)?, "prev_hash")?,
        envelope_version: u32::try_from(envelope_version)
            .map_err(|_| LogError::Storage(format!("corrupt event log: envelope version {envelope_version}")))?,
    })
}
