//! One event as one Kinesis record, and back.
//!
//! The data is a header (one line of JSON: the event without its body) then a newline then the
//! body's bytes as stored. A record may hold at most 1 MiB, so an event whose body does not fit
//! travels as its header alone, marked `by_ref`, and the consumer reads the body from the log.
//! The partition key is the resource (`tenant/type/id`), so one resource's versions go to one
//! shard, in order.
//!
//! A *mark* (`{"mark":P}`, no body) says that every event at or below log position P that
//! belongs in this shard came before it: the relay puts one in every shard after each batch, and
//! a projection's workers record the marks they applied, which gives how far the projection has
//! got as one log position (`consumer::watermark`).

use bytes::{BufMut, Bytes, BytesMut};
use event_log::{Event, EventLog, Operation, StreamKey};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{Result, StreamError};

/// Largest data a record carries (Kinesis allows 1 MiB with the partition key).
pub const MAX_DATA: usize = 1_000_000;

#[derive(Serialize, Deserialize)]
struct Header {
    position: u64,
    tenant: String,
    resource_type: String,
    id: String,
    version: u64,
    operation: Operation,
    recorded_at: String,
    transaction_id: String,
    actor: String,
    hash: String,
    prev_hash: String,
    envelope_version: u32,
    /// The body is not in the record: read it from the log.
    #[serde(default)]
    by_ref: bool,
}

/// The partition key of an event's records: its resource.
pub fn partition_key(key: &StreamKey) -> String {
    format!("{}/{}/{}", key.tenant, key.resource_type, key.id)
}

/// The record data for an event.
pub fn encode(event: &Event) -> Result<Bytes> {
    let recorded_at = event.recorded_at.format(&Rfc3339).map_err(|error| StreamError::Encoding(error.to_string()))?;
    let mut header = Header {
        position: event.position,
        tenant: event.key.tenant.clone(),
        resource_type: event.key.resource_type.clone(),
        id: event.key.id.clone(),
        version: event.version,
        operation: event.operation,
        recorded_at,
        transaction_id: event.transaction_id.clone(),
        actor: event.actor.clone(),
        hash: hex::encode(event.hash),
        prev_hash: hex::encode(event.prev_hash),
        envelope_version: event.envelope_version,
        by_ref: false,
    };
    let mut line = serde_json::to_vec(&header).map_err(|error| StreamError::Encoding(error.to_string()))?;
    if line.len() + 1 + event.body.len() > MAX_DATA {
        header.by_ref = true;
        line = serde_json::to_vec(&header).map_err(|error| StreamError::Encoding(error.to_string()))?;
        return Ok(Bytes::from(line));
    }
    let mut data = BytesMut::with_capacity(line.len() + 1 + event.body.len());
    data.put_slice(&line);
    data.put_u8(b'\n');
    data.put_slice(&event.body);
    Ok(data.freeze())
}

/// An event read from a record: whole, or (for a body too large for a record) to be completed
/// from the log; or a mark.
pub enum Decoded {
    Whole(Event),
    ByRef { key: StreamKey, version: u64 },
    Mark(u64),
}

#[derive(Serialize, Deserialize)]
struct Mark {
    mark: u64,
}

/// The record data of a mark at `position`.
pub fn encode_mark(position: u64) -> Bytes {
    Bytes::from(format!(r#"{{"mark":{position}}}"#))
}

/// Reads record data; an error names what is wrong with it, never its content.
pub fn decode(data: &[u8]) -> Result<Decoded> {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    };
    let bad = |what: &str| StreamError::Encoding(format!("a record's {what} is malformed"));
    if body.is_empty() && line.starts_with(br#"{"mark":"#) {
        let mark: Mark = serde_json::from_slice(line).map_err(|_| bad("mark"))?;
        return Ok(Decoded::Mark(mark.mark));
    }
    let header: Header = serde_json::from_slice(line).map_err(|_| bad("header"))?;
    let key = StreamKey::new(header.tenant, header.resource_type, header.id);
    if header.by_ref {
        return Ok(Decoded::ByRef { key, version: header.version });
    }
    let hash = |text: &str| -> Result<[u8; 32]> {
        let bytes = hex::decode(text).map_err(|_| bad("hash"))?;
        bytes.try_into().map_err(|_| bad("hash"))
    };
    Ok(Decoded::Whole(Event {
        position: header.position,
        key,
        version: header.version,
        operation: header.operation,
        recorded_at: OffsetDateTime::parse(&header.recorded_at, &Rfc3339).map_err(|_| bad("time"))?,
        transaction_id: header.transaction_id,
        actor: header.actor,
        body: Bytes::copy_from_slice(body),
        hash: hash(&header.hash)?,
        prev_hash: hash(&header.prev_hash)?,
        envelope_version: header.envelope_version,
    }))
}

/// What a record carries, complete.
#[derive(Debug)]
pub enum Resolved {
    Event(Box<Event>),
    Mark(u64),
}

/// Decodes record data, reading a body that travelled by reference from the log.
pub async fn resolve(data: &[u8], log: &dyn EventLog) -> Result<Resolved> {
    match decode(data)? {
        Decoded::Whole(event) => Ok(Resolved::Event(Box::new(event))),
        Decoded::Mark(position) => Ok(Resolved::Mark(position)),
        Decoded::ByRef { key, version } => log
            .read_version(&key, version)
            .await?
            .map(|event| Resolved::Event(Box::new(event)))
            .ok_or_else(|| StreamError::Encoding(format!("a record names version {version} of a resource the log does not hold"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &[u8]) -> Event {
        Event {
            position: 42,
            key: StreamKey::new("t1", "Patient", "p1"),
            version: 3,
            operation: Operation::Update,
            recorded_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap(),
            transaction_id: "tx".into(),
            actor: "someone".into(),
            body: Bytes::copy_from_slice(body),
            hash: [7; 32],
            prev_hash: [9; 32],
            envelope_version: 1,
        }
    }

    #[test]
    fn an_event_round_trips_with_its_body_as_stored() {
        let original = event(b"{\"resourceType\":\"Patient\",\n\"id\":\"p1\"}");
        let Decoded::Whole(back) = decode(&encode(&original).unwrap()).unwrap() else { panic!("whole") };
        assert_eq!(back, original);
    }

    #[test]
    fn a_body_too_large_for_a_record_travels_by_reference() {
        let original = event(&vec![b' '; MAX_DATA]);
        let data = encode(&original).unwrap();
        assert!(data.len() < 1000);
        let Decoded::ByRef { key, version } = decode(&data).unwrap() else { panic!("by reference") };
        assert_eq!((key, version), (original.key, 3));
    }

    #[test]
    fn a_mark_round_trips() {
        let Decoded::Mark(position) = decode(&encode_mark(1234)).unwrap() else { panic!("a mark") };
        assert_eq!(position, 1234);
    }

    #[test]
    fn malformed_data_is_an_error_that_does_not_echo_it() {
        for data in [&b"secret"[..], b"{\"position\":1}\nsecret", b""] {
            let StreamError::Encoding(message) = decode(data).err().unwrap() else { panic!("encoding error") };
            assert!(!message.contains("secret"));
        }
    }
}
