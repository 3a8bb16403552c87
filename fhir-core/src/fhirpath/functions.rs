//! The function library: filtering and projection, existence, subsetting, combining and set
//! operations, tree navigation and utilities. String functions are in `strings`, conversions
//! (`toX()`, `convertsToX()`) in `conversions`, the FHIR-specific ones (`extension`, `resolve`,
//! `memberOf`) in `fhir`, `htmlChecks` in `xhtml`.
//!
//! Arguments of `where`, `select`, `repeat`, `all` and `exists` are evaluated once per input
//! item with that item as `$this`; other arguments are evaluated once, in the caller's focus.

use std::collections::HashSet;

use serde_json::Value;

use super::ast::{Call, Expr, Function};
use super::distinct::DistinctItems;
use super::error::FhirPathError;
use super::eval::{boolean_collection, eval, invalid, same_item, singleton, to_boolean, Collection, Env, Focus};
use super::item::{Item, ItemType, ItemValue, SystemType};
use super::{conversions, fhir, navigate, strings, xhtml};

/// The most items `repeat()`/`descendants()` may collect: above the node count of any
/// resource the server accepts, low enough to stop a runaway `repeat` over computed values.
const REPEAT_LIMIT: usize = 1_000_000;

/// The most computed values `repeat()` may produce: `repeat($this & 'a')` never ends, and each
/// value is compared with all before it.
const COMPUTED_REPEAT_LIMIT: usize = 1_000;

pub(crate) fn call<'a>(
    call: &Call,
    target: &Expr,
    env: &Env<'a>,
    focus: Focus<'_, 'a>,
) -> Result<Collection<'a>, FhirPathError> {
    // Kept small, with the work in separate functions: this frame is on the stack once per level
    // of nested calls.
    let input = eval(target, env, focus)?;
    match call.function {
        Function::Where | Function::Select | Function::Repeat | Function::All | Function::Exists => {
            lambda(call, input, env)
        }
        Function::Iif => iif(call, &input, env, focus),
        // Trace output would be patient data in logs: the input passes through unchanged, and
        // the name and projection arguments are not even evaluated.
        Function::Trace => Ok(input),
        _ => {
            let mut args = Vec::with_capacity(call.args.len());
            for arg in &call.args {
                args.push(eval(arg, env, focus)?);
            }
            plain(call, input, args, env)
        }
    }
}

/// The functions whose argument is evaluated once per input item, with it as `$this`.
#[inline(never)]
fn lambda<'a>(call: &Call, input: Collection<'a>, env: &Env<'a>) -> Result<Collection<'a>, FhirPathError> {
    let name = call.function.name();
    let Some(arg) = call.args.first() else {
        // Only `exists()` may come without its criterion.
        return Ok(vec![Item::boolean(!input.is_empty())]);
    };
    match call.function {
        Function::Where => {
            let mut out = Vec::new();
            for (i, item) in input.into_iter().enumerate() {
                if criterion(arg, env, &item, i, name)? == Some(true) {
                    out.push(item);
                }
            }
            Ok(out)
        }
        Function::Select => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(eval(arg, env, Focus { this: item, index: Some(i) })?);
            }
            Ok(out)
        }
        Function::Repeat => repeat(&input, REPEAT_LIMIT, |item, out| {
            out.extend(eval(arg, env, Focus { this: item, index: None })?);
            Ok(())
        }),
        Function::All => {
            for (i, item) in input.iter().enumerate() {
                if criterion(arg, env, item, i, name)? != Some(true) {
                    return Ok(vec![Item::boolean(false)]);
                }
            }
            Ok(vec![Item::boolean(true)])
        }
        _ => {
            for (i, item) in input.iter().enumerate() {
                if criterion(arg, env, item, i, name)? == Some(true) {
                    return Ok(vec![Item::boolean(true)]);
                }
            }
            Ok(vec![Item::boolean(false)])
        }
    }
}

/// The other functions, given their evaluated arguments.
#[inline(never)]
fn plain<'a>(
    call: &Call,
    input: Collection<'a>,
    args: Vec<Collection<'a>>,
    env: &Env<'a>,
) -> Result<Collection<'a>, FhirPathError> {
    let name = call.function.name();
    let argument = |i: usize| -> &[Item<'a>] { args.get(i).map_or(&[], Vec::as_slice) };
    match call.function {
        Function::Empty => Ok(vec![Item::boolean(input.is_empty())]),
        Function::Not => Ok(boolean_collection(to_boolean(&input, name)?.map(|b| !b))),
        Function::AllTrue => Ok(vec![Item::boolean(input.iter().all(|i| i.as_bool() == Some(true)))]),
        Function::AnyTrue => Ok(vec![Item::boolean(input.iter().any(|i| i.as_bool() == Some(true)))]),
        Function::AllFalse => Ok(vec![Item::boolean(input.iter().all(|i| i.as_bool() == Some(false)))]),
        Function::AnyFalse => Ok(vec![Item::boolean(input.iter().any(|i| i.as_bool() == Some(false)))]),
        Function::Count => Ok(vec![Item::integer(input.len() as i64)]),
        Function::Distinct => Ok(distinct(input)),
        Function::IsDistinct => {
            let count = input.len();
            Ok(vec![Item::boolean(distinct(input).len() == count)])
        }
        Function::HasValue => Ok(vec![Item::boolean(matches!(input.as_slice(), [item] if item.has_value()))]),
        Function::First => Ok(input.into_iter().take(1).collect()),
        Function::Last => Ok(input.into_iter().last().into_iter().collect()),
        Function::Tail => Ok(input.into_iter().skip(1).collect()),
        Function::Skip => {
            let count = integer_argument(argument(0), name)?.unwrap_or(0);
            Ok(input.into_iter().skip(usize::try_from(count).unwrap_or(0)).collect())
        }
        Function::Take => {
            let count = integer_argument(argument(0), name)?.unwrap_or(0);
            Ok(input.into_iter().take(usize::try_from(count).unwrap_or(0)).collect())
        }
        Function::Single => Ok(singleton(&input, name)?.cloned().into_iter().collect()),
        Function::Union => {
            let mut out = DistinctItems::with_items(input);
            out.extend(argument(0).iter().cloned());
            Ok(out.into_vec())
        }
        Function::Combine => {
            let mut out = input;
            out.extend(argument(0).iter().cloned());
            Ok(out)
        }
        Function::Intersect => {
            let other = argument(0);
            let mut out = DistinctItems::default();
            out.extend(input.into_iter().filter(|item| contains_item(other, item)));
            Ok(out.into_vec())
        }
        Function::Exclude => {
            let other = argument(0);
            Ok(input.into_iter().filter(|item| !contains_item(other, item)).collect())
        }
        Function::SubsetOf => {
            let other = argument(0);
            Ok(vec![Item::boolean(input.iter().all(|item| contains_item(other, item)))])
        }
        Function::SupersetOf => Ok(vec![Item::boolean(argument(0).iter().all(|item| contains_item(&input, item)))]),
        Function::Children => {
            let mut out = Vec::new();
            for item in &input {
                navigate::children(item, &mut out);
            }
            Ok(out)
        }
        Function::Descendants => repeat(&input, REPEAT_LIMIT, |item, out| {
            navigate::children(item, out);
            Ok(())
        }),
        Function::Extension => fhir::extension(&input, argument(0)),
        Function::HasExtension => Ok(vec![Item::boolean(!fhir::extension(&input, argument(0))?.is_empty())]),
        Function::Resolve => Ok(fhir::resolve(input, env)),
        Function::MemberOf => fhir::member_of(&input, argument(0)),
        Function::HtmlChecks => xhtml::html_checks(&input),
        Function::Today => {
            let today = crate::instant::now().date();
            let text = format!("{:04}-{:02}-{:02}", today.year(), today.month() as u8, today.day());
            Ok(vec![Item::new(ItemValue::Date(text.into()), ItemType::System(SystemType::Date))])
        }
        Function::Now => {
            let now = crate::instant::format_instant(crate::instant::now());
            Ok(vec![Item::new(ItemValue::DateTime(now.into()), ItemType::System(SystemType::DateTime))])
        }
        function if conversions::asks_whether(function).is_some() => conversions::call(function, &input, &args),
        _ => strings::call(call, &input, &args),
    }
}

/// Whether `item` is in `collection`, as `intersect`, `exclude`, `subsetOf` and `supersetOf`
/// see it: the same node, or an equal value.
fn contains_item(collection: &[Item<'_>], item: &Item<'_>) -> bool {
    collection.iter().any(|other| same_item(other, item))
}

/// A lambda argument evaluated for one item, as a boolean.
fn criterion<'a>(
    arg: &Expr,
    env: &Env<'a>,
    item: &Item<'a>,
    index: usize,
    operation: &'static str,
) -> Result<Option<bool>, FhirPathError> {
    to_boolean(&eval(arg, env, Focus { this: item, index: Some(index) })?, operation)
}

fn integer_argument(items: &[Item<'_>], operation: &'static str) -> Result<Option<i64>, FhirPathError> {
    match singleton(items, operation)? {
        None => Ok(None),
        Some(item) => item.as_i64().map(Some).ok_or_else(|| invalid(operation, "the argument must be an integer")),
    }
}

fn distinct(input: Collection<'_>) -> Collection<'_> {
    DistinctItems::with_items(input).into_vec()
}

/// Applies `step` to the input, then to what it produced, until nothing new appears; returns
/// everything produced (not the input itself). A node of the resource is new unless that very
/// node was seen; a computed value unless an equal one was.
fn repeat<'a>(
    input: &[Item<'a>],
    limit: usize,
    mut step: impl FnMut(&Item<'a>, &mut Collection<'a>) -> Result<(), FhirPathError>,
) -> Result<Collection<'a>, FhirPathError> {
    let mut out: Collection<'a> = Vec::new();
    let mut seen_nodes: HashSet<*const Value> = HashSet::new();
    let mut computed = 0usize;
    let mut pending: Collection<'a> = input.to_vec();
    while !pending.is_empty() {
        let mut produced = Vec::new();
        for item in &pending {
            step(item, &mut produced)?;
        }
        pending.clear();
        for item in produced {
            let new = match item.value {
                ItemValue::Json(node) => seen_nodes.insert(node as *const Value),
                _ => {
                    computed += 1;
                    if computed > COMPUTED_REPEAT_LIMIT {
                        return Err(FhirPathError::TooManyItems { limit: COMPUTED_REPEAT_LIMIT });
                    }
                    !out.iter().any(|existing| same_item(existing, &item))
                }
            };
            if new {
                out.push(item.clone());
                pending.push(item);
                if out.len() > limit {
                    return Err(FhirPathError::TooManyItems { limit });
                }
            }
        }
    }
    Ok(out)
}

/// `iif(criterion, true-result [, otherwise-result])`: only the chosen branch is evaluated. The
/// criterion is evaluated on the input item when there is one.
fn iif<'a>(
    call: &Call,
    input: &[Item<'a>],
    env: &Env<'a>,
    focus: Focus<'_, 'a>,
) -> Result<Collection<'a>, FhirPathError> {
    let focus = match singleton(input, "iif")? {
        Some(item) => Focus { this: item, index: focus.index },
        None => focus,
    };
    // The parser checked the arity; the pattern keeps that from being a hidden contract.
    let [criterion, when_true, otherwise @ ..] = call.args.as_slice() else {
        return Err(invalid("iif", "needs a criterion and a result"));
    };
    match (to_boolean(&eval(criterion, env, focus)?, "iif")?, otherwise.first()) {
        (Some(true), _) => eval(when_true, env, focus),
        (_, Some(otherwise)) => eval(otherwise, env, focus),
        (_, None) => Ok(Vec::new()),
    }
}
