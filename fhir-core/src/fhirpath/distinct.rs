//! Collections without duplicates, for `|`, `union()` and `distinct()`.
//!
//! Items are duplicates when they are the same node or equal by `=`. Small collections are
//! checked item by item; past [`LINEAR_LIMIT`] items a hash consistent with `=` narrows the
//! check to one bucket, so `ValueSet.expansion.contains.code | ...` over thousands of codes stays
//! linear.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::compare::{date_or_time_start, scalar, Scalar};
use super::eval::same_item;
use super::item::{Item, ItemValue};

const LINEAR_LIMIT: usize = 16;

#[derive(Default)]
pub(crate) struct DistinctItems<'a> {
    items: Vec<Item<'a>>,
    /// Indexes into `items` by hash, once there are more than [`LINEAR_LIMIT`] items.
    buckets: Option<HashMap<u64, Vec<usize>>>,
}

impl<'a> DistinctItems<'a> {
    pub fn with_items(items: Vec<Item<'a>>) -> Self {
        let mut distinct = DistinctItems::default();
        distinct.extend(items);
        distinct
    }

    pub fn extend(&mut self, items: impl IntoIterator<Item = Item<'a>>) {
        for item in items {
            self.push(item);
        }
    }

    pub fn push(&mut self, item: Item<'a>) {
        if self.buckets.is_none() && self.items.len() >= LINEAR_LIMIT {
            let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
            for (i, existing) in self.items.iter().enumerate() {
                buckets.entry(equality_hash(existing)).or_default().push(i);
            }
            self.buckets = Some(buckets);
        }
        match &mut self.buckets {
            None => {
                if !self.items.iter().any(|existing| same_item(existing, &item)) {
                    self.items.push(item);
                }
            }
            Some(buckets) => {
                let bucket = buckets.entry(equality_hash(&item)).or_default();
                if !bucket.iter().any(|&i| same_item(&self.items[i], &item)) {
                    bucket.push(self.items.len());
                    self.items.push(item);
                }
            }
        }
    }

    pub fn into_vec(self) -> Vec<Item<'a>> {
        self.items
    }
}

/// A hash under which items that [`same_item`] calls the same always collide.
fn equality_hash(item: &Item<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    match scalar(item) {
        // Without a value an item only equals itself.
        None => match item.value {
            ItemValue::Json(node) => (0u8, node as *const Value as usize).hash(&mut hasher),
            _ => 0u8.hash(&mut hasher),
        },
        Some(Scalar::Boolean(value)) => (1u8, value).hash(&mut hasher),
        Some(Scalar::String(text)) => (2u8, text).hash(&mut hasher),
        // 1 = 1.0, so integers hash as decimals.
        Some(Scalar::Integer(value)) => (3u8, normalized_bits(value as f64)).hash(&mut hasher),
        Some(Scalar::Decimal(value)) => (3u8, normalized_bits(value)).hash(&mut hasher),
        // Equal dates and times start at the same instant (`10:00Z` = `11:00+01:00`).
        Some(scalar @ (Scalar::Date(_) | Scalar::DateTime(_) | Scalar::Time(_))) => {
            (4u8, date_or_time_start(scalar)).hash(&mut hasher)
        }
        Some(Scalar::Quantity(value, unit)) => (5u8, normalized_bits(value), unit).hash(&mut hasher),
        Some(Scalar::Node(node)) => (6u8, json_hash(node)).hash(&mut hasher),
    }
    hasher.finish()
}

fn normalized_bits(value: f64) -> u64 {
    if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

/// A structural hash of JSON, independent of object key order (as JSON equality is).
fn json_hash(node: &Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    match node {
        Value::Null => 0u8.hash(&mut hasher),
        Value::Bool(value) => (1u8, value).hash(&mut hasher),
        Value::Number(number) => (2u8, number.to_string()).hash(&mut hasher),
        Value::String(text) => (3u8, text).hash(&mut hasher),
        Value::Array(values) => {
            4u8.hash(&mut hasher);
            for value in values {
                json_hash(value).hash(&mut hasher);
            }
        }
        Value::Object(object) => {
            let mut combined = 0u64;
            for (key, value) in object {
                let mut entry = DefaultHasher::new();
                (key, json_hash(value)).hash(&mut entry);
                combined = combined.wrapping_add(entry.finish());
            }
            (5u8, object.len(), combined).hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fhirpath::item::{ItemType, SystemType};

    #[test]
    fn json_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": [true, "x"]}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"b": [true, "x"], "a": 1}"#).expect("json");
        assert_eq!(a, b);
        assert_eq!(json_hash(&a), json_hash(&b));
        assert_ne!(json_hash(&a), json_hash(&json!({"a": 2, "b": [true, "x"]})));
    }

    #[test]
    fn large_collections_deduplicate_like_small_ones() {
        let mut items: Vec<Item<'_>> = (0..100).map(|i| Item::string(format!("code{}", i % 40))).collect();
        items.push(Item::integer(7));
        items.push(Item::decimal(7.0));
        items.push(Item::new(
            ItemValue::DateTime("2020-01-01T10:00:00Z".into()),
            ItemType::System(SystemType::DateTime),
        ));
        items.push(Item::new(
            ItemValue::DateTime("2020-01-01T11:00:00+01:00".into()),
            ItemType::System(SystemType::DateTime),
        ));
        let distinct = DistinctItems::with_items(items).into_vec();
        assert_eq!(distinct.len(), 42);
        assert_eq!(distinct[39].as_str(), Some("code39"));
    }
}
