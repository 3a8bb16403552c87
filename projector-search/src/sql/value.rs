//! The condition one searched value puts on one stored value row (alias `t`), by parameter type:
//! ranges for dates, numbers and quantities, prefixes for strings, segments for URIs, the
//! expansion of a value set for `:in`.

use fhir_core::definitions::{r4, SearchParamType};
use fhir_core::instant::unix_millis;
use fhir_core::search::{Modifier, Prefix, SearchValue};

use super::{Result, Sql, Unsupported};

/// Date semantics: the stored range `[low, high)` against the searched range `[start, end)`.
pub(super) fn range_condition(sql: &mut Sql, low: &str, high: &str, prefix: Prefix, start: i64, end: i64) {
    let compare = |sql: &mut Sql, column: &str, operator: &str, value: i64| {
        sql.push(&format!("{column} {operator} "));
        sql.arg(value);
    };
    match prefix {
        Prefix::Eq | Prefix::Ne => {
            if prefix == Prefix::Ne {
                sql.push("NOT ");
            }
            sql.push("(");
            compare(sql, low, ">=", start);
            sql.push(" AND ");
            compare(sql, high, "<=", end);
            sql.push(")");
        }
        Prefix::Gt => compare(sql, high, ">", end),
        Prefix::Lt => compare(sql, low, "<", start),
        Prefix::Ge => compare(sql, high, ">", start),
        Prefix::Le => compare(sql, low, "<", end),
        Prefix::Sa => compare(sql, low, ">=", end),
        Prefix::Eb => compare(sql, high, "<=", start),
        Prefix::Ap => {
            // Approximately: the ranges overlap once the searched one is widened by a tenth of its
            // distance from now (at least its own width).
            let now = unix_millis(fhir_core::instant::now());
            let slack = ((now - start).abs() / 10).max(end - start);
            sql.push("(");
            compare(sql, low, "<", end.saturating_add(slack));
            sql.push(" AND ");
            compare(sql, high, ">", start.saturating_sub(slack));
            sql.push(")");
        }
    }
}

fn number_condition(sql: &mut Sql, column: &str, prefix: Prefix, number: fhir_core::search::Decimal) {
    let compare = |sql: &mut Sql, operator: &str, value: f64| {
        sql.push(&format!("{column} {operator} "));
        sql.arg(value);
    };
    match prefix {
        Prefix::Eq | Prefix::Ne => {
            if prefix == Prefix::Ne {
                sql.push("NOT ");
            }
            sql.push("(");
            compare(sql, ">=", number.low);
            sql.push(" AND ");
            compare(sql, "<", number.high);
            sql.push(")");
        }
        Prefix::Gt | Prefix::Sa => compare(sql, ">", number.value),
        Prefix::Lt | Prefix::Eb => compare(sql, "<", number.value),
        Prefix::Ge => compare(sql, ">=", number.value),
        Prefix::Le => compare(sql, "<=", number.value),
        Prefix::Ap => {
            let slack = (number.value.abs() / 10.0).max(number.high - number.low);
            sql.push("(");
            compare(sql, ">=", number.value - slack);
            sql.push(" AND ");
            compare(sql, "<=", number.value + slack);
            sql.push(")");
        }
    }
}

/// `column` starts with `prefix`, as a range so the index is used.
fn starts_with(sql: &mut Sql, column: &str, prefix: &str) {
    sql.push(&format!("({column} >= "));
    sql.arg(prefix.to_string());
    sql.push(&format!(" AND {column} < "));
    sql.arg(format!("{prefix}\u{10FFFF}"));
    sql.push(")");
}

fn contains(sql: &mut Sql, column: &str, needle: &str) {
    let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    sql.push(&format!("{column} LIKE "));
    sql.arg(format!("%{escaped}%"));
    sql.push(" ESCAPE '\\'");
}

pub(super) fn value_sql(sql: &mut Sql, t: &str, kind: SearchParamType, modifier: Option<&Modifier>, value: &SearchValue) -> Result<()> {
    match (kind, value) {
        (SearchParamType::String, SearchValue::Text(text)) => match modifier {
            Some(Modifier::Exact) => {
                // The exact form folds to the stored folded one, which the value index finds.
                sql.push(&format!("({t}.norm = "));
                sql.arg(fhir_core::search::normalize(text));
                sql.push(&format!(" AND {t}.exact = "));
                sql.arg(text.clone());
                sql.push(")");
            }
            Some(Modifier::Contains) => contains(sql, &format!("{t}.norm"), &fhir_core::search::normalize(text)),
            _ => starts_with(sql, &format!("{t}.norm"), &fhir_core::search::normalize(text)),
        },
        (SearchParamType::Token, SearchValue::Text(text)) => match modifier {
            Some(Modifier::Text) => starts_with(sql, &format!("{t}.norm"), &fhir_core::search::normalize(text)),
            Some(Modifier::In | Modifier::NotIn) => value_set_sql(sql, t, text)?,
            _ => return Err(Unsupported("unexpected token value".into())),
        },
        (SearchParamType::Token | SearchParamType::Reference, SearchValue::Token { system, code }) => {
            sql.push("(1");
            match system.as_deref() {
                None => {}
                Some("") => sql.push(&format!(" AND {t}.system IS NULL")),
                Some(system) => {
                    sql.push(&format!(" AND {t}.system = "));
                    sql.arg(system.to_string());
                }
            }
            if let Some(code) = code {
                sql.push(&format!(" AND {t}.code = "));
                sql.arg(code.clone());
            }
            sql.push(")");
        }
        (SearchParamType::Token, SearchValue::OfType { system, code, value }) => {
            sql.push(&format!("({t}.system = "));
            sql.arg(system.clone());
            sql.push(&format!(" AND {t}.code = "));
            sql.arg(code.clone());
            sql.push(&format!(" AND {t}.value = "));
            sql.arg(value.clone());
            sql.push(")");
        }
        (SearchParamType::Date, SearchValue::Date { prefix, start, end }) => {
            range_condition(sql, &format!("{t}.low"), &format!("{t}.high"), *prefix, unix_millis(*start), unix_millis(*end));
        }
        (SearchParamType::Number, SearchValue::Number { prefix, number }) => number_condition(sql, &format!("{t}.value"), *prefix, *number),
        (SearchParamType::Quantity, SearchValue::Quantity { prefix, number, system, code }) => {
            sql.push("(");
            number_condition(sql, &format!("{t}.value"), *prefix, *number);
            if let Some(system) = system {
                sql.push(&format!(" AND {t}.system = "));
                sql.arg(system.clone());
            }
            if let Some(code) = code {
                sql.push(&format!(" AND {t}.code = "));
                sql.arg(code.clone());
            }
            sql.push(")");
        }
        (SearchParamType::Reference, SearchValue::Reference(reference)) => {
            // `subject:Patient=Group/1` names another type than the modifier: nothing matches.
            if let (Some(Modifier::Type(target)), Some(resource_type)) = (modifier, &reference.resource_type) {
                if target != resource_type {
                    sql.push("0");
                    return Ok(());
                }
            }
            sql.push("(");
            let mut any = false;
            if let Some(url) = &reference.url {
                sql.push(&format!("({t}.url = "));
                sql.arg(url.clone());
                // A canonical `url|version` is stored as its url and version; an absolute
                // `.../_history/n` is stored whole.
                if let (Some(version), false) = (&reference.version, url.contains("/_history/")) {
                    sql.push(&format!(" AND {t}.version = "));
                    sql.arg(version.clone());
                }
                sql.push(")");
                any = true;
            }
            if let Some(id) = &reference.id {
                if any {
                    sql.push(" OR ");
                }
                sql.push(&format!("({t}.target_id = "));
                sql.arg(id.clone());
                if let Some(resource_type) = &reference.resource_type {
                    sql.push(&format!(" AND {t}.target_type = "));
                    sql.arg(resource_type.clone());
                }
                if let Some(version) = &reference.version {
                    sql.push(&format!(" AND {t}.version = "));
                    sql.arg(version.clone());
                }
                sql.push(")");
                any = true;
            }
            if !any {
                sql.push("0");
            }
            sql.push(")");
        }
        (SearchParamType::Uri, SearchValue::Text(uri)) => match modifier {
            // Below and above work on whole path segments: `.../alpha` is above `.../alpha/sub`,
            // not above `.../alphabet`.
            Some(Modifier::Below) if uri.ends_with('/') => starts_with(sql, &format!("{t}.uri"), uri),
            Some(Modifier::Below) => {
                sql.push(&format!("({t}.uri = "));
                sql.arg(uri.clone());
                sql.push(" OR ");
                starts_with(sql, &format!("{t}.uri"), &format!("{uri}/"));
                sql.push(")");
            }
            Some(Modifier::Above) => {
                sql.push(&format!("({t}.uri = "));
                sql.arg(uri.clone());
                sql.push(" OR substr(");
                sql.arg(uri.clone());
                sql.push(&format!(", 1, length({t}.uri) + 1) = {t}.uri || '/' OR (substr({t}.uri, -1) = '/' AND substr("));
                sql.arg(uri.clone());
                sql.push(&format!(", 1, length({t}.uri)) = {t}.uri))"));
            }
            Some(Modifier::Contains) => contains(sql, &format!("{t}.uri"), uri),
            _ => {
                sql.push(&format!("{t}.uri = "));
                sql.arg(uri.clone());
            }
        },
        _ => return Err(Unsupported("this value does not fit the parameter's type".into())),
    }
    Ok(())
}

/// `:in` / `:not-in`: membership in a value set the server can expand.
fn value_set_sql(sql: &mut Sql, t: &str, url: &str) -> Result<()> {
    let value_set = r4()
        .value_set(url)
        .filter(|value_set| value_set.is_checkable())
        .ok_or_else(|| Unsupported(format!("value set '{}' cannot be expanded by this server", url.chars().take(200).collect::<String>())))?;
    if value_set.is_empty() {
        sql.push("0");
        return Ok(());
    }
    sql.push(&format!("(({t}.system, {t}.code) IN (VALUES "));
    for (index, (system, code)) in value_set.codes().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.push("(");
        sql.arg(system.to_string());
        sql.push(", ");
        sql.arg(code.to_string());
        sql.push(")");
    }
    // A bare code (a `code` element whose binding does not name one system) is in the value set
    // when one of its systems has that code.
    sql.push(&format!(") OR ({t}.system IS NULL AND {t}.code IN ("));
    let codes: std::collections::BTreeSet<&str> = value_set.codes().map(|(_, code)| code).collect();
    for (index, code) in codes.into_iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.arg(code.to_string());
    }
    sql.push(")))");
    Ok(())
}
