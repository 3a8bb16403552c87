//! Equality (`=`), equivalence (`~`) and ordering (`<` ...) of items.
//!
//! Each item is first read as a [`Scalar`]: JSON primitives by their FHIR type (a `date` string
//! is a date, a `decimal` number a decimal), objects of a Quantity type as quantities, other
//! objects as themselves. Dates compare by the time ranges they cover at their precision, so
//! `@2012 = @2012-01-01` is empty (unknown) rather than false, and `@2012 < @2013-06` is true.

use std::cmp::Ordering;

use serde_json::Value;

use super::item::{Item, ItemType, ItemValue, SystemType};
use super::types::fhir_is_a;

/// A value as comparisons see it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'x> {
    Boolean(bool),
    String(&'x str),
    Integer(i64),
    Decimal(f64),
    Date(&'x str),
    DateTime(&'x str),
    Time(&'x str),
    Quantity(f64, &'x str),
    /// An object or array compared structurally.
    Node(&'x Value),
}

/// The scalar an item stands for; `None` for a primitive that has no value (only extensions).
pub(crate) fn scalar<'x>(item: &'x Item<'_>) -> Option<Scalar<'x>> {
    Some(match &item.value {
        ItemValue::Boolean(value) => Scalar::Boolean(*value),
        ItemValue::String(text) => Scalar::String(text),
        ItemValue::Integer(value) => Scalar::Integer(*value),
        ItemValue::Decimal(value) => Scalar::Decimal(*value),
        ItemValue::Date(text) => Scalar::Date(text),
        ItemValue::DateTime(text) => Scalar::DateTime(text),
        ItemValue::Time(text) => Scalar::Time(text),
        ItemValue::Quantity { value, unit } => Scalar::Quantity(*value, unit),
        ItemValue::UnresolvedReference(node) => Scalar::Node(node),
        ItemValue::Json(node) => json_scalar(node, item.item_type)?,
    })
}

fn json_scalar(node: &Value, item_type: ItemType) -> Option<Scalar<'_>> {
    let primitive = match item_type {
        ItemType::Fhir(fhir) => fhir.primitive.map(SystemType::of_primitive),
        _ => None,
    };
    Some(match node {
        Value::Null => return None,
        Value::Bool(value) => Scalar::Boolean(*value),
        Value::Number(number) => match (primitive, number.as_i64()) {
            (Some(SystemType::Decimal), _) | (_, None) => Scalar::Decimal(number.as_f64()?),
            (_, Some(integer)) => Scalar::Integer(integer),
        },
        Value::String(text) => match primitive {
            Some(SystemType::Date) => Scalar::Date(text),
            Some(SystemType::DateTime) => Scalar::DateTime(text),
            Some(SystemType::Time) => Scalar::Time(text),
            _ => Scalar::String(text),
        },
        Value::Object(object) => {
            // The numeric `value` is checked first: it is cheaper than walking the type's bases.
            let quantity_value = object
                .get("value")
                .and_then(Value::as_f64)
                .filter(|_| matches!(item_type, ItemType::Fhir(fhir) if fhir_is_a(fhir.name, "Quantity")));
            match quantity_value {
                Some(value) => {
                    let unit = object.get("code").or_else(|| object.get("unit")).and_then(Value::as_str);
                    Scalar::Quantity(value, unit.unwrap_or("1"))
                }
                None => Scalar::Node(node),
            }
        }
        Value::Array(_) => Scalar::Node(node),
    })
}

/// `=` on two items: `None` when the answer is unknown (a missing value, dates of different
/// precision that overlap).
pub(crate) fn equal(left: &Item<'_>, right: &Item<'_>) -> Option<bool> {
    let (left, right) = (scalar(left)?, scalar(right)?);
    match (left, right) {
        (Scalar::Boolean(a), Scalar::Boolean(b)) => Some(a == b),
        (Scalar::String(a), Scalar::String(b)) => Some(a == b),
        (Scalar::Node(a), Scalar::Node(b)) => Some(a == b),
        (Scalar::Quantity(a, unit_a), Scalar::Quantity(b, unit_b)) => Some(unit_a == unit_b && a == b),
        (Scalar::Time(a), Scalar::Time(b)) => order_ranges(time_range(a)?, time_range(b)?).map(|o| o.is_eq()),
        _ => match (number(left), number(right)) {
            (Some(a), Some(b)) => Some(a == b),
            _ => match (date_range(left), date_range(right)) {
                // Overlapping ranges of different precision are unknown; disjoint ones differ.
                (Some(a), Some(b)) => order_ranges(a, b).map(Ordering::is_eq),
                _ => Some(false),
            },
        },
    }
}

/// `~`: like `=`, but strings ignore case and runs of whitespace, and an unknown answer is
/// false.
pub(crate) fn equivalent(left: &Item<'_>, right: &Item<'_>) -> bool {
    match (scalar(left), scalar(right)) {
        (None, None) => true,
        (Some(Scalar::String(a)), Some(Scalar::String(b))) => normalize(a) == normalize(b),
        (Some(Scalar::Decimal(a)), Some(Scalar::Decimal(b))) => equivalent_decimals(a, b),
        (Some(_), Some(_)) => equal(left, right) == Some(true),
        _ => false,
    }
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Decimals are equivalent when equal at the precision of the less precise one; without the
/// written precision at hand, a relative tolerance stands in.
fn equivalent_decimals(a: f64, b: f64) -> bool {
    (a - b).abs() <= f64::EPSILON * 16.0 * a.abs().max(b.abs()).max(1.0)
}

/// `<`, `>` ...: `Ok(None)` when the answer is unknown, an error for values that cannot be
/// ordered against each other.
pub(crate) fn order(left: &Item<'_>, right: &Item<'_>) -> Result<Option<Ordering>, String> {
    let (Some(a), Some(b)) = (scalar(left), scalar(right)) else {
        return Ok(None);
    };
    match (a, b) {
        (Scalar::String(x), Scalar::String(y)) => Ok(Some(x.cmp(y))),
        (Scalar::Quantity(x, unit_x), Scalar::Quantity(y, unit_y)) => {
            if unit_x == unit_y {
                Ok(x.partial_cmp(&y))
            } else {
                // Without UCUM conversion, quantities in different units cannot be ordered.
                Ok(None)
            }
        }
        (Scalar::Time(x), Scalar::Time(y)) => match (time_range(x), time_range(y)) {
            (Some(x), Some(y)) => Ok(order_ranges(x, y)),
            _ => Ok(None),
        },
        _ => {
            if let (Some(x), Some(y)) = (number(a), number(b)) {
                return Ok(x.partial_cmp(&y));
            }
            if let (Some(x), Some(y)) = (date_range(a), date_range(b)) {
                return Ok(order_ranges(x, y));
            }
            Err(format!("cannot order {} against {}", kind(a), kind(b)))
        }
    }
}

fn kind(scalar: Scalar<'_>) -> &'static str {
    match scalar {
        Scalar::Boolean(_) => "a boolean",
        Scalar::String(_) => "a string",
        Scalar::Integer(_) => "an integer",
        Scalar::Decimal(_) => "a decimal",
        Scalar::Date(_) => "a date",
        Scalar::DateTime(_) => "a dateTime",
        Scalar::Time(_) => "a time",
        Scalar::Quantity(..) => "a quantity",
        Scalar::Node(_) => "a complex value",
    }
}

fn number(scalar: Scalar<'_>) -> Option<f64> {
    match scalar {
        Scalar::Integer(value) => Some(value as f64),
        Scalar::Decimal(value) => Some(value),
        _ => None,
    }
}

/// A range `[start, end)` in nanoseconds.
type Range = (i128, i128);

fn date_range(scalar: Scalar<'_>) -> Option<Range> {
    let text = match scalar {
        Scalar::Date(text) | Scalar::DateTime(text) => text,
        _ => return None,
    };
    let (start, end) = crate::instant::parse_range(text)?;
    Some((start.unix_timestamp_nanos(), end.unix_timestamp_nanos()))
}

/// Where a date, dateTime or time value starts, in nanoseconds: equal values start together.
pub(crate) fn date_or_time_start(scalar: Scalar<'_>) -> Option<i128> {
    match scalar {
        Scalar::Time(text) => time_range(text).map(|range| range.0),
        other => date_range(other).map(|range| range.0),
    }
}

const SECOND: i128 = 1_000_000_000;

/// The range of a time of day, `HH[:MM[:SS[.fff]]]`, in nanoseconds since midnight.
pub(crate) fn time_range(text: &str) -> Option<Range> {
    let mut fields = text.split(':');
    let hour: i128 = two_digits(fields.next()?)?;
    let (minute, minute_precision) = match fields.next() {
        Some(minute) => (two_digits(minute)?, true),
        None => (0, false),
    };
    let (second, width) = match fields.next() {
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let whole = two_digits(whole)?;
            if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let nanos: i128 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
            let width = if fraction.is_empty() { SECOND } else { 10i128.pow(9 - fraction.len() as u32) };
            (whole * SECOND + nanos, width)
        }
        None if minute_precision => (0, 60 * SECOND),
        None => (0, 3600 * SECOND),
    };
    if fields.next().is_some() || hour > 23 || minute > 59 || second >= 61 * SECOND {
        return None;
    }
    let start = (hour * 3600 + minute * 60) * SECOND + second;
    Some((start, start + width))
}

fn two_digits(text: &str) -> Option<i128> {
    if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Orders two ranges: before, after, the same, or `None` when they overlap at different
/// precisions. Seconds and fractions of a second count as one precision.
fn order_ranges(a: Range, b: Range) -> Option<Ordering> {
    let width_a = a.1 - a.0;
    let width_b = b.1 - b.0;
    if width_a == width_b || (width_a <= SECOND && width_b <= SECOND) {
        return Some(a.0.cmp(&b.0));
    }
    if a.1 <= b.0 {
        Some(Ordering::Less)
    } else if a.0 >= b.1 {
        Some(Ordering::Greater)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_cover_their_precision() {
        assert_eq!(time_range("10"), Some((36_000 * SECOND, 39_600 * SECOND)));
        assert_eq!(time_range("10:30:15.5").map(|(s, e)| e - s), Some(SECOND / 10));
        assert!(time_range("25:00").is_none());
        assert!(time_range("10:3").is_none());
    }

    #[test]
    fn ranges_of_different_precision_order_when_disjoint() {
        const DAY: i128 = 86_400 * SECOND;
        let year = (0, 365 * DAY);
        let day_next_year = (400 * DAY, 401 * DAY);
        let day_in_year = (50 * DAY, 51 * DAY);
        assert_eq!(order_ranges(year, day_next_year), Some(Ordering::Less));
        assert_eq!(order_ranges(day_next_year, year), Some(Ordering::Greater));
        assert_eq!(order_ranges(year, day_in_year), None);
        assert_eq!(order_ranges(day_in_year, (50 * DAY, 51 * DAY)), Some(Ordering::Equal));
        // A second and a millisecond within it are one precision.
        assert_eq!(order_ranges((0, SECOND), (0, SECOND / 1000)), Some(Ordering::Equal));
    }
}
