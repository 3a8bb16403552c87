//! One resource version as an OpenSearch document: its identity, version and log position, and
//! its index values (`fhir_core::search::extract`) under `p`, one nested object per value. A
//! deleted resource stays as a document marked `deleted` (a tombstone with the delete's version),
//! so that a late, older version can never bring it back (OpenSearch forgets deleted documents'
//! versions after a while; a tombstone's version it keeps).

use std::collections::BTreeMap;

use event_log::{Event, Operation};
use fhir_core::search::{IndexEntry, IndexValue};
use serde_json::{json, Map, Value};

use crate::{IndexError, Result};

fn unix_millis(event: &Event) -> i64 {
    (event.recorded_at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The document for an event: its values, or a tombstone for a delete.
pub fn document(event: &Event) -> Result<Value> {
    let entries = if event.operation == Operation::Delete {
        Vec::new()
    } else {
        let resource: Value = serde_json::from_slice(&event.body).map_err(|_| IndexError::BadBody(event.position))?;
        fhir_core::search::extract::extract(&resource)
    };
    Ok(document_of(event, &entries))
}

pub fn document_of(event: &Event, entries: &[IndexEntry]) -> Value {
    let mut parameters: Map<String, Value> = Map::new();
    // Composite occurrences by (parameter, group): their component values by component.
    let mut composites: BTreeMap<(&str, u32), Map<String, Value>> = BTreeMap::new();
    for entry in entries {
        if let Some((composite, component)) = entry.param.split_once('$') {
            let occurrence = composites.entry((composite, entry.group)).or_default();
            push(occurrence, component, value(entry));
        } else {
            push(&mut parameters, &entry.param, value(entry));
        }
    }
    for ((composite, group), mut components) in composites {
        components.insert("g".into(), json!(group));
        push(&mut parameters, composite, Value::Object(components));
    }
    json!({
        "id": event.key.id,
        "type": event.key.resource_type,
        "version": event.version,
        "position": event.position,
        "last_updated": unix_millis(event),
        "deleted": event.operation == Operation::Delete,
        "p": parameters,
    })
}

fn push(into: &mut Map<String, Value>, name: &str, value: Value) {
    match into.get_mut(name) {
        Some(Value::Array(values)) => values.push(value),
        _ => {
            into.insert(name.to_string(), Value::Array(vec![value]));
        }
    }
}

fn value(entry: &IndexEntry) -> Value {
    let mut object = Map::new();
    object.insert("g".into(), json!(entry.group));
    let mut put = |name: &str, value: Value| {
        if !value.is_null() {
            object.insert(name.into(), value);
        }
    };
    match &entry.value {
        IndexValue::String { normalized, exact } => {
            put("norm", json!(normalized));
            put("exact", json!(exact));
        }
        IndexValue::Token { system, code } => {
            put("system", json!(system));
            put("code", json!(code));
        }
        IndexValue::Text { normalized } => put("text", json!(normalized)),
        IndexValue::OfType { system, code, value } => {
            put("system", json!(system));
            put("code", json!(code));
            put("value", json!(value));
        }
        IndexValue::Date { low, high } => {
            put("low", json!(low));
            put("high", json!(high));
        }
        IndexValue::Number { value, low, high } => {
            put("value", json!(value));
            put("low", json!(low));
            put("high", json!(high));
        }
        IndexValue::Quantity { value, low, high, system, code, unit } => {
            put("value", json!(value));
            put("low", json!(low));
            put("high", json!(high));
            put("system", json!(system));
            put("code", json!(code));
            put("unit", json!(unit));
        }
        IndexValue::Reference { resource_type, id, version, url } => {
            put("type", json!(resource_type));
            put("id", json!(id));
            put("version", json!(version));
            put("url", json!(url));
        }
        IndexValue::Uri(uri) => put("uri", json!(uri)),
    }
    Value::Object(object)
}
