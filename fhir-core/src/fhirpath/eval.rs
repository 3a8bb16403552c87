//! The evaluator: walks the syntax tree over collections of items.
//!
//! Every node yields a collection (`Vec<Item>`). The focus (`$this`) is the start item at the
//! top level and each input item inside `where`, `select`, `all`, `exists` and `repeat`.
//! Operators follow FHIRPath's empty-propagation: an empty operand gives an empty result, and
//! the logical operators use three-valued logic.

use std::cmp::Ordering;

use super::ast::{BinaryOp, Expr, Literal, Name, TypeOp};
use super::compare;
use super::distinct::DistinctItems;
use super::error::FhirPathError;
use super::functions;
use super::item::{Item, ItemType, ItemValue, SystemType};
use super::navigate;
use super::types::{fhir_is_a, is_of_type, TypeSpec};

/// What stays the same for a whole evaluation.
pub(crate) struct Env<'a> {
    /// `%rootResource`: the resource that contains `%resource`, or `%resource` itself when that
    /// one is not contained. Contained references (`#id`) resolve against it.
    pub root_resource: Item<'a>,
    /// `%resource`: the resource the evaluation started from.
    pub resource: Item<'a>,
    /// `%context`: the item the evaluation started from.
    pub context: Item<'a>,
}

/// The current item (`$this`) and its position in its collection (`$index`).
#[derive(Clone, Copy)]
pub(crate) struct Focus<'f, 'a> {
    pub this: &'f Item<'a>,
    pub index: Option<usize>,
}

pub(crate) type Collection<'a> = Vec<Item<'a>>;

pub(crate) fn eval<'a>(expr: &Expr, env: &Env<'a>, focus: Focus<'_, 'a>) -> Result<Collection<'a>, FhirPathError> {
    // Each recursive case is its own function so that this frame, on the stack once per level
    // of the tree, stays small (debug builds give every match arm's locals their own slots).
    match expr {
        Expr::Literal(literal) => Ok(vec![literal_item(literal)]),
        Expr::Empty => Ok(Vec::new()),
        Expr::This => Ok(vec![focus.this.clone()]),
        Expr::Index => Ok(focus.index.map(|i| Item::integer(i as i64)).into_iter().collect()),
        Expr::Resource => Ok(vec![env.resource.clone()]),
        Expr::RootResource => Ok(vec![env.root_resource.clone()]),
        Expr::Context => Ok(vec![env.context.clone()]),
        Expr::Identifier(name) => Ok(identifier(name, focus.this)),
        Expr::Member(target, name) => Ok(member(eval(target, env, focus)?, name)),
        Expr::Indexer(target, index) => {
            let input = eval(target, env, focus)?;
            let index = eval(index, env, focus)?;
            indexer(input, &index)
        }
        Expr::Call(target, call) => functions::call(call, target, env, focus),
        Expr::Type(op, target, spec) => type_operation(*op, eval(target, env, focus)?, *spec),
        Expr::Negate(operand) => negate(&eval(operand, env, focus)?),
        Expr::Union(terms) => {
            let mut out = DistinctItems::default();
            for term in terms {
                out.extend(eval(term, env, focus)?);
            }
            Ok(out.into_vec())
        }
        Expr::Binary(op, left, right) => binary(*op, left, right, env, focus),
    }
}

#[inline(never)]
fn identifier<'a>(name: &Name, this: &Item<'a>) -> Collection<'a> {
    if let (Some(type_name), ItemType::Fhir(fhir)) = (name.type_name, this.item_type) {
        return match fhir_is_a(fhir.name, type_name) {
            true => vec![this.clone()],
            false => Vec::new(),
        };
    }
    let mut out = Vec::new();
    navigate::child(this, name, &mut out);
    out
}

#[inline(never)]
fn member<'a>(input: Collection<'a>, name: &Name) -> Collection<'a> {
    let mut out = Vec::with_capacity(input.len());
    for item in &input {
        navigate::child(item, name, &mut out);
    }
    out
}

#[inline(never)]
fn indexer<'a>(input: Collection<'a>, index: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let Some(index) = singleton(index, "[]")? else {
        return Ok(Vec::new());
    };
    let Some(index) = index.as_i64() else {
        return Err(invalid("[]", "the index must be an integer"));
    };
    Ok(usize::try_from(index).ok().and_then(|i| input.into_iter().nth(i)).into_iter().collect())
}

#[inline(never)]
fn type_operation<'a>(op: TypeOp, input: Collection<'a>, spec: TypeSpec) -> Result<Collection<'a>, FhirPathError> {
    match op {
        // `{} is T` is empty in FHIRPath N1 ("in all other cases this operator returns the empty
        // collection"); FHIRPath 3.0 made it false.
        TypeOp::Is => Ok(match singleton(&input, "is")? {
            Some(item) => vec![Item::boolean(is_of_type(item.item_type, spec))],
            None => Vec::new(),
        }),
        TypeOp::As | TypeOp::OfType => Ok(input.into_iter().filter(|item| is_of_type(item.item_type, spec)).collect()),
    }
}

#[inline(never)]
fn negate<'a>(input: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let Some(item) = singleton(input, "unary -")? else {
        return Ok(Vec::new());
    };
    match compare::scalar(item) {
        Some(compare::Scalar::Integer(value)) => Ok(value.checked_neg().map(Item::integer).into_iter().collect()),
        Some(compare::Scalar::Decimal(value)) => Ok(vec![Item::decimal(-value)]),
        Some(compare::Scalar::Quantity(value, unit)) => Ok(vec![quantity(-value, unit)]),
        None => Ok(Vec::new()),
        Some(_) => Err(invalid("unary -", "the operand must be a number or quantity")),
    }
}

fn literal_item<'a>(literal: &Literal) -> Item<'a> {
    match literal {
        Literal::Boolean(value) => Item::boolean(*value),
        Literal::String(text) => Item::string(text.clone()),
        Literal::Integer(value) => Item::integer(*value),
        Literal::Decimal(value) => Item::decimal(*value),
        Literal::Date(text) => Item::new(ItemValue::Date(text.clone()), ItemType::System(SystemType::Date)),
        Literal::DateTime(text) => Item::new(ItemValue::DateTime(text.clone()), ItemType::System(SystemType::DateTime)),
        Literal::Time(text) => Item::new(ItemValue::Time(text.clone()), ItemType::System(SystemType::Time)),
        Literal::Quantity(value, unit) => {
            Item::new(ItemValue::Quantity { value: *value, unit: unit.clone() }, ItemType::System(SystemType::Quantity))
        }
    }
}

fn quantity<'a>(value: f64, unit: &str) -> Item<'a> {
    Item::new(ItemValue::Quantity { value, unit: unit.into() }, ItemType::System(SystemType::Quantity))
}

pub(crate) fn invalid(operation: &'static str, message: &str) -> FhirPathError {
    FhirPathError::InvalidOperand { operation, message: message.to_string() }
}

/// The only item of a collection, `None` when it is empty, an error when it has several.
pub(crate) fn singleton<'c, 'a>(
    items: &'c [Item<'a>],
    operation: &'static str,
) -> Result<Option<&'c Item<'a>>, FhirPathError> {
    match items {
        [] => Ok(None),
        [item] => Ok(Some(item)),
        _ => Err(FhirPathError::NotSingleton { operation, count: items.len() }),
    }
}

/// A collection as a boolean: empty is unknown, a boolean is itself, any other single item is
/// true (FHIRPath's singleton evaluation), several items are an error.
pub(crate) fn to_boolean(items: &[Item<'_>], operation: &'static str) -> Result<Option<bool>, FhirPathError> {
    Ok(singleton(items, operation)?.map(|item| item.as_bool().unwrap_or(true)))
}

pub(crate) fn boolean_collection<'a>(value: Option<bool>) -> Collection<'a> {
    value.map(Item::boolean).into_iter().collect()
}

/// Whether two items are the same for `|`, `distinct()` and `repeat()`: the same node, or equal.
pub(crate) fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    if let (ItemValue::Json(x), ItemValue::Json(y)) = (&a.value, &b.value) {
        if std::ptr::eq(*x, *y) {
            return true;
        }
    }
    compare::equal(a, b) == Some(true)
}

fn binary<'a>(
    op: BinaryOp,
    left: &Expr,
    right: &Expr,
    env: &Env<'a>,
    focus: Focus<'_, 'a>,
) -> Result<Collection<'a>, FhirPathError> {
    if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor | BinaryOp::Implies) {
        return logical(op, left, right, env, focus);
    }
    let left = eval(left, env, focus)?;
    let right = eval(right, env, focus)?;
    apply_binary(op, left, right)
}

#[inline(never)]
fn apply_binary<'a>(
    op: BinaryOp,
    left: Collection<'a>,
    right: Collection<'a>,
) -> Result<Collection<'a>, FhirPathError> {
    match op {
        BinaryOp::Union => {
            let mut out = DistinctItems::with_items(left);
            out.extend(right);
            Ok(out.into_vec())
        }
        BinaryOp::Equal | BinaryOp::NotEqual => {
            let equal = collections_equal(&left, &right);
            Ok(boolean_collection(if op == BinaryOp::Equal { equal } else { equal.map(|e| !e) }))
        }
        BinaryOp::Equivalent | BinaryOp::NotEquivalent => {
            let equivalent = collections_equivalent(&left, &right);
            Ok(vec![Item::boolean(if op == BinaryOp::Equivalent { equivalent } else { !equivalent })])
        }
        BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual => {
            let operation = op.symbol();
            let (Some(a), Some(b)) = (singleton(&left, operation)?, singleton(&right, operation)?) else {
                return Ok(Vec::new());
            };
            let ordering = compare::order(a, b).map_err(|message| invalid(operation, &message))?;
            Ok(boolean_collection(ordering.map(|ordering| match op {
                BinaryOp::Less => ordering == Ordering::Less,
                BinaryOp::LessOrEqual => ordering != Ordering::Greater,
                BinaryOp::Greater => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            })))
        }
        BinaryOp::In | BinaryOp::Contains => {
            let (element, collection) = if op == BinaryOp::In { (&left, &right) } else { (&right, &left) };
            let Some(element) = singleton(element, op.symbol())? else {
                return Ok(Vec::new());
            };
            let found = collection.iter().any(|item| compare::equal(element, item) == Some(true));
            Ok(vec![Item::boolean(found)])
        }
        _ => super::arithmetic::apply(op, &left, &right),
    }
}

/// `=` on collections: empty if either is empty, else item by item in order.
fn collections_equal(left: &[Item<'_>], right: &[Item<'_>]) -> Option<bool> {
    if left.is_empty() || right.is_empty() {
        return None;
    }
    if left.len() != right.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (a, b) in left.iter().zip(right) {
        match compare::equal(a, b) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(true)
    }
}

/// `~` on collections: same size, and each item of one has an equivalent in the other.
fn collections_equivalent(left: &[Item<'_>], right: &[Item<'_>]) -> bool {
    left.len() == right.len()
        && left.iter().all(|a| right.iter().any(|b| compare::equivalent(a, b)))
        && right.iter().all(|b| left.iter().any(|a| compare::equivalent(a, b)))
}

/// `and`, `or`, `xor`, `implies` with three-valued logic, not evaluating the right operand when
/// the left one decides.
fn logical<'a>(
    op: BinaryOp,
    left: &Expr,
    right: &Expr,
    env: &Env<'a>,
    focus: Focus<'_, 'a>,
) -> Result<Collection<'a>, FhirPathError> {
    let operation = op.symbol();
    let a = to_boolean(&eval(left, env, focus)?, operation)?;
    let decided = match (op, a) {
        (BinaryOp::And, Some(false)) => Some(false),
        (BinaryOp::Or, Some(true)) => Some(true),
        (BinaryOp::Implies, Some(false)) => Some(true),
        _ => None,
    };
    if let Some(value) = decided {
        return Ok(vec![Item::boolean(value)]);
    }
    let b = to_boolean(&eval(right, env, focus)?, operation)?;
    let result = match op {
        BinaryOp::And => match (a, b) {
            (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BinaryOp::Or => match (a, b) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BinaryOp::Xor => match (a, b) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        },
        _ => match (a, b) {
            (Some(true), b) => b,
            (None, Some(true)) => Some(true),
            _ => None,
        },
    };
    Ok(boolean_collection(result))
}
