//! String functions (`contains`, `startsWith`, `matches`, `matchesFull`, `substring`, ...).
//! `matches` finds the pattern anywhere in the string (FHIRPath N1), `matchesFull` only when it
//! matches the whole string.
//!
//! Each takes a single-item input: empty input gives empty, several items are an error. Positions
//! and lengths count characters, not bytes.

use std::sync::Arc;

use regex::Regex;

use super::ast::{Call, Function};
use super::compare::{scalar, Scalar};
use super::error::FhirPathError;
use super::eval::{invalid, singleton, Collection};
use super::item::Item;
use super::parser::{compile_regex, full_match_pattern};

pub(crate) fn call<'a>(
    call: &Call,
    input: &[Item<'a>],
    args: &[Collection<'a>],
) -> Result<Collection<'a>, FhirPathError> {
    let name = call.function.name();
    let Some(item) = singleton(input, name)? else {
        return Ok(Vec::new());
    };
    let Some(text) = string_of(item) else {
        return Err(invalid(name, "the input must be a string"));
    };
    // A missing (empty) string argument makes the result empty.
    let mut strings = Vec::with_capacity(args.len());
    for arg in args {
        match singleton(arg, name)? {
            None => return Ok(Vec::new()),
            Some(item) => strings.push(item),
        }
    }
    let string_arg = |i: usize| -> Result<&str, FhirPathError> {
        strings.get(i).and_then(|item| string_of(item)).ok_or_else(|| invalid(name, "the argument must be a string"))
    };
    let integer_arg = |i: usize| -> Result<i64, FhirPathError> {
        strings.get(i).and_then(|item| item.as_i64()).ok_or_else(|| invalid(name, "the argument must be an integer"))
    };
    let result = match call.function {
        Function::Contains => Item::boolean(text.contains(string_arg(0)?)),
        Function::StartsWith => Item::boolean(text.starts_with(string_arg(0)?)),
        Function::EndsWith => Item::boolean(text.ends_with(string_arg(0)?)),
        Function::Matches => Item::boolean(regex(call, string_arg(0)?, name)?.is_match(text)),
        Function::MatchesFull => Item::boolean(regex(call, &full_match_pattern(string_arg(0)?), name)?.is_match(text)),
        Function::ReplaceMatches => {
            let regex = regex(call, string_arg(0)?, name)?;
            Item::string(regex.replace_all(text, string_arg(1)?).into_owned())
        }
        Function::Replace => Item::string(text.replace(string_arg(0)?, string_arg(1)?)),
        Function::IndexOf => {
            let needle = string_arg(0)?;
            let index = text.find(needle).map_or(-1, |byte| text[..byte].chars().count() as i64);
            Item::integer(index)
        }
        Function::Substring => {
            let start = integer_arg(0)?;
            let length = if strings.len() > 1 { Some(integer_arg(1)?) } else { None };
            let count = text.chars().count() as i64;
            if start < 0 || start >= count {
                return Ok(Vec::new());
            }
            let take = length.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(0));
            Item::string(text.chars().skip(start as usize).take(take).collect::<String>())
        }
        Function::Lower => Item::string(text.to_lowercase()),
        Function::Upper => Item::string(text.to_uppercase()),
        Function::Length => Item::integer(text.chars().count() as i64),
        _ => return Err(invalid(name, "not a string function")),
    };
    Ok(vec![result])
}

/// The regex of `matches`/`matchesFull`/`replaceMatches`: compiled at compile time for a literal
/// pattern (anchored there for `matchesFull`).
fn regex(call: &Call, pattern: &str, name: &'static str) -> Result<Arc<Regex>, FhirPathError> {
    match &call.regex {
        Some(regex) => Ok(regex.clone()),
        None => compile_regex(pattern).map(Arc::new).map_err(|message| invalid(name, &message)),
    }
}

/// The text of a string-valued item (also `code`, `uri`, dates as written).
fn string_of<'x>(item: &'x Item<'_>) -> Option<&'x str> {
    match scalar(item)? {
        Scalar::String(text) | Scalar::Date(text) | Scalar::DateTime(text) | Scalar::Time(text) => Some(text),
        _ => None,
    }
}
