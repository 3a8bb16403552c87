//! Conversion functions: `toBoolean`, `toInteger`, `toDecimal`, `toString`, `toDate`,
//! `toDateTime`, `toTime`, `toQuantity`, and the `convertsToX()` that tell whether `toX()` would
//! give a value.
//!
//! Each takes a single-item input: empty input gives empty, several items are an error. A value
//! that does not convert gives empty (and `convertsToX()` false), as FHIRPath N1 asks. Strings
//! convert only in the forms N1 gives (`'1.5'` is a decimal, `' 1'` and `'1e3'` are not).
//! `toQuantity(unit)` does no unit conversion: it gives the quantity only when it is already in
//! that unit (UCUM conversion would need the UCUM tables).

use std::sync::Arc;

use super::ast::Function;
use super::compare::{scalar, Scalar};
use super::error::FhirPathError;
use super::eval::{invalid, singleton, Collection};
use super::item::{Item, ItemType, ItemValue, SystemType};
use super::literals::is_calendar_unit;

/// Whether `function` is one of these: `Some(false)` for `toX()`, `Some(true)` for
/// `convertsToX()`, which asks whether `toX()` would give a value.
pub(crate) fn asks_whether(function: Function) -> Option<bool> {
    match function {
        Function::ToString
        | Function::ToInteger
        | Function::ToDecimal
        | Function::ToBoolean
        | Function::ToDate
        | Function::ToDateTime
        | Function::ToTime
        | Function::ToQuantity => Some(false),
        Function::ConvertsToString
        | Function::ConvertsToInteger
        | Function::ConvertsToDecimal
        | Function::ConvertsToBoolean
        | Function::ConvertsToDate
        | Function::ConvertsToDateTime
        | Function::ConvertsToTime
        | Function::ConvertsToQuantity => Some(true),
        _ => None,
    }
}

pub(crate) fn call<'a>(
    function: Function,
    input: &[Item<'a>],
    args: &[Collection<'a>],
) -> Result<Collection<'a>, FhirPathError> {
    let name = function.name();
    let asks_whether = asks_whether(function).ok_or_else(|| invalid(name, "not a conversion function"))?;
    let Some(item) = singleton(input, name)? else {
        return Ok(Vec::new());
    };
    let unit = match args.first() {
        None => None,
        Some(unit) => match singleton(unit, name)? {
            // `toQuantity({})`: an unknown unit gives an unknown result.
            None => return Ok(Vec::new()),
            Some(unit) => Some(unit.as_str().ok_or_else(|| invalid(name, "the unit must be a string"))?.to_string()),
        },
    };
    let converted = match function {
        Function::ToString | Function::ConvertsToString => to_string(item).map(Item::string),
        Function::ToInteger | Function::ConvertsToInteger => to_integer(item).map(Item::integer),
        Function::ToDecimal | Function::ConvertsToDecimal => to_decimal(item).map(Item::decimal),
        Function::ToBoolean | Function::ConvertsToBoolean => to_boolean(item).map(Item::boolean),
        Function::ToDate | Function::ConvertsToDate => {
            to_date(item).map(|text| Item::new(ItemValue::Date(text.into()), ItemType::System(SystemType::Date)))
        }
        Function::ToDateTime | Function::ConvertsToDateTime => to_date_time(item)
            .map(|text| Item::new(ItemValue::DateTime(text.into()), ItemType::System(SystemType::DateTime))),
        Function::ToTime | Function::ConvertsToTime => {
            to_time(item).map(|text| Item::new(ItemValue::Time(text.into()), ItemType::System(SystemType::Time)))
        }
        Function::ToQuantity | Function::ConvertsToQuantity => to_quantity(item)
            .filter(|(_, quantity_unit)| unit.as_deref().is_none_or(|unit| unit == &**quantity_unit))
            .map(|(value, unit)| {
                Item::new(ItemValue::Quantity { value, unit }, ItemType::System(SystemType::Quantity))
            }),
        _ => return Err(invalid(name, "not a conversion function")),
    };
    Ok(match asks_whether {
        true => vec![Item::boolean(converted.is_some())],
        false => converted.into_iter().collect(),
    })
}

fn to_string(item: &Item<'_>) -> Option<String> {
    Some(match scalar(item)? {
        Scalar::Boolean(value) => value.to_string(),
        Scalar::String(text) | Scalar::Date(text) | Scalar::DateTime(text) | Scalar::Time(text) => text.to_string(),
        Scalar::Integer(value) => value.to_string(),
        Scalar::Decimal(value) => match &item.value {
            // A JSON decimal keeps its written form (`1.50`) only as far as serde_json does.
            ItemValue::Json(serde_json::Value::Number(number)) => number.to_string(),
            _ => value.to_string(),
        },
        Scalar::Quantity(value, unit) => format!("{value} '{unit}'"),
        Scalar::Node(_) => return None,
    })
}

fn to_integer(item: &Item<'_>) -> Option<i64> {
    match scalar(item)? {
        Scalar::Integer(value) => Some(value),
        Scalar::Boolean(value) => Some(i64::from(value)),
        Scalar::String(text) if is_integer_text(text) => text.parse().ok(),
        _ => None,
    }
}

fn to_decimal(item: &Item<'_>) -> Option<f64> {
    match scalar(item)? {
        Scalar::Integer(value) => Some(value as f64),
        Scalar::Decimal(value) => Some(value),
        Scalar::Boolean(value) => Some(if value { 1.0 } else { 0.0 }),
        Scalar::String(text) if is_decimal_text(text) => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

fn to_boolean(item: &Item<'_>) -> Option<bool> {
    match scalar(item)? {
        Scalar::Boolean(value) => Some(value),
        Scalar::Integer(1) => Some(true),
        Scalar::Integer(0) => Some(false),
        Scalar::Decimal(1.0) => Some(true),
        Scalar::Decimal(0.0) => Some(false),
        Scalar::String(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A date: a date itself, the date of a dateTime, or a string in the date format.
fn to_date(item: &Item<'_>) -> Option<String> {
    let text = match scalar(item)? {
        Scalar::Date(text) => return Some(text.to_string()),
        Scalar::DateTime(text) => text.split('T').next().unwrap_or(text),
        Scalar::String(text) if !text.contains('T') => text,
        _ => return None,
    };
    crate::instant::parse_range(text).map(|_| text.to_string())
}

/// A dateTime: a dateTime itself, a date (at date precision), or a string in either format.
fn to_date_time(item: &Item<'_>) -> Option<String> {
    match scalar(item)? {
        Scalar::Date(text) | Scalar::DateTime(text) => Some(text.to_string()),
        Scalar::String(text) => crate::instant::parse_range(text).map(|_| text.to_string()),
        _ => None,
    }
}

fn to_time(item: &Item<'_>) -> Option<String> {
    match scalar(item)? {
        Scalar::Time(text) => Some(text.to_string()),
        Scalar::String(text) => super::compare::time_range(text).map(|_| text.to_string()),
        _ => None,
    }
}

/// A quantity: a number has the unit `'1'`, a string is `number` or `number 'unit'` (or a
/// calendar duration word: `4 days`).
fn to_quantity(item: &Item<'_>) -> Option<(f64, Arc<str>)> {
    match scalar(item)? {
        Scalar::Quantity(value, unit) => Some((value, unit.into())),
        Scalar::Integer(value) => Some((value as f64, "1".into())),
        Scalar::Decimal(value) => Some((value, "1".into())),
        Scalar::Boolean(value) => Some((if value { 1.0 } else { 0.0 }, "1".into())),
        Scalar::String(text) => {
            let (number, unit) = match text.split_once(' ') {
                Some((number, unit)) => (number, unit.trim_start()),
                None => (text, ""),
            };
            if !is_decimal_text(number) {
                return None;
            }
            let unit = if unit.is_empty() {
                "1"
            } else if let Some(quoted) = unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
                quoted
            } else if is_calendar_unit(unit) {
                unit
            } else {
                return None;
            };
            Some((number.parse().ok().filter(|v: &f64| v.is_finite())?, unit.into()))
        }
        _ => None,
    }
}

/// `(\+|-)?\d+`
fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `(\+|-)?\d+(\.\d+)?`
fn is_decimal_text(text: &str) -> bool {
    match text.split_once('.') {
        Some((whole, fraction)) => {
            is_integer_text(whole) && !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        None => is_integer_text(text),
    }
}
