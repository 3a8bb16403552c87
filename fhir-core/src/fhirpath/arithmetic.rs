//! `+ - * / div mod &` on numbers, strings and same-unit quantities.
//!
//! Integer overflow and division by zero give empty, as the specification asks. Date
//! arithmetic (`@2020 + 1 year`) is not supported and is an error.

use super::ast::BinaryOp;
use super::compare::{scalar, Scalar};
use super::error::FhirPathError;
use super::eval::{invalid, singleton, Collection};
use super::item::{Item, ItemType, ItemValue, SystemType};

pub(crate) fn apply<'a>(op: BinaryOp, left: &[Item<'a>], right: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let operation = op.symbol();
    if op == BinaryOp::Concatenate {
        let text = |items: &[Item<'a>]| -> Result<String, FhirPathError> {
            match singleton(items, operation)? {
                None => Ok(String::new()),
                Some(item) => match scalar(item) {
                    Some(Scalar::String(text)) => Ok(text.to_string()),
                    None => Ok(String::new()),
                    Some(_) => Err(invalid(operation, "the operands must be strings")),
                },
            }
        };
        return Ok(vec![Item::string(text(left)? + &text(right)?)]);
    }
    let (Some(a), Some(b)) = (singleton(left, operation)?, singleton(right, operation)?) else {
        return Ok(Vec::new());
    };
    let (Some(a), Some(b)) = (scalar(a), scalar(b)) else {
        return Ok(Vec::new());
    };
    let result = match (a, b) {
        (Scalar::Integer(x), Scalar::Integer(y)) => integers(op, x, y),
        (Scalar::Integer(_) | Scalar::Decimal(_), Scalar::Integer(_) | Scalar::Decimal(_)) => {
            decimals(op, as_f64(a), as_f64(b))
        }
        (Scalar::String(x), Scalar::String(y)) if op == BinaryOp::Add => Some(Item::string(format!("{x}{y}"))),
        (Scalar::Quantity(x, unit_x), Scalar::Quantity(y, unit_y))
            if unit_x == unit_y && matches!(op, BinaryOp::Add | BinaryOp::Subtract) =>
        {
            let value = if op == BinaryOp::Add { x + y } else { x - y };
            Some(Item::new(ItemValue::Quantity { value, unit: unit_x.into() }, ItemType::System(SystemType::Quantity)))
        }
        _ => return Err(invalid(operation, "unsupported operand types")),
    };
    Ok(result.into_iter().collect())
}

fn as_f64(scalar: Scalar<'_>) -> f64 {
    match scalar {
        Scalar::Integer(value) => value as f64,
        Scalar::Decimal(value) => value,
        _ => f64::NAN,
    }
}

fn integers<'a>(op: BinaryOp, x: i64, y: i64) -> Option<Item<'a>> {
    match op {
        BinaryOp::Add => x.checked_add(y).map(Item::integer),
        BinaryOp::Subtract => x.checked_sub(y).map(Item::integer),
        BinaryOp::Multiply => x.checked_mul(y).map(Item::integer),
        BinaryOp::Divide => (y != 0).then(|| Item::decimal(x as f64 / y as f64)),
        BinaryOp::IntegerDivide => x.checked_div(y).map(Item::integer),
        BinaryOp::Modulo => x.checked_rem(y).map(Item::integer),
        _ => None,
    }
}

fn decimals<'a>(op: BinaryOp, x: f64, y: f64) -> Option<Item<'a>> {
    let value = match op {
        BinaryOp::Add => x + y,
        BinaryOp::Subtract => x - y,
        BinaryOp::Multiply => x * y,
        BinaryOp::Divide if y != 0.0 => x / y,
        BinaryOp::IntegerDivide if y != 0.0 => {
            let quotient = (x / y).trunc();
            return (quotient.abs() < i64::MAX as f64).then_some(Item::integer(quotient as i64));
        }
        BinaryOp::Modulo if y != 0.0 => x % y,
        _ => return None,
    };
    value.is_finite().then_some(Item::decimal(value))
}
