//! Turns the typed [`SearchQuery`] into SQL over the index tables: each criterion becomes a
//! `row IN (subquery)` driven by the value indexes, chains join through `ix_reference` to the
//! target's rows, `_has` joins the other way, and every resource row is filtered to the search's
//! snapshot position.

use fhir_core::definitions::{r4, SearchParamType};
use fhir_core::instant::unix_millis;
use fhir_core::search::{Criterion, Modifier, ParamPath, ParamRef, Prefix, SearchQuery, SearchValue, SortKey};
use rusqlite::types::Value;

use crate::schema::table_for;

/// SQL text with its positional arguments.
#[derive(Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Value>,
    aliases: usize,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn arg(&mut self, value: impl Into<Value>) {
        self.text.push('?');
        self.args.push(value.into());
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }
}

/// A criterion the index cannot answer: the caller turns it into a 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

type Result<T> = std::result::Result<T, Unsupported>;

/// Appends `alias` visible at `snapshot`.
fn visible(sql: &mut Sql, alias: &str, snapshot: u64) {
    sql.push(&format!("({alias}.position <= "));
    sql.arg(snapshot as i64);
    sql.push(&format!(" AND ({alias}.superseded_at IS NULL OR {alias}.superseded_at > "));
    sql.arg(snapshot as i64);
    sql.push("))");
}

/// `FROM resources r WHERE ...` for the query's types and criteria, at `snapshot`.
pub fn from_where(query: &SearchQuery, tenant: &str, snapshot: u64) -> Result<Sql> {
    let mut sql = Sql::default();
    sql.push(" FROM resources r WHERE r.tenant = ");
    sql.arg(tenant.to_string());
    if !query.types.is_empty() {
        sql.push(" AND r.resource_type IN (");
        for (index, resource_type) in query.types.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.arg(resource_type.clone());
        }
        sql.push(")");
    }
    sql.push(" AND ");
    visible(&mut sql, "r", snapshot);
    if let Some(compartment) = &query.compartment {
        sql.push(" AND ");
        compartment_sql(&mut sql, compartment);
    }
    for criterion in &query.criteria {
        sql.push(" AND ");
        criterion_sql(&mut sql, "r", tenant, snapshot, criterion)?;
    }
    Ok(sql)
}

/// Members of one resource's compartment: per member type, a reference through one of its
/// compartment parameters to the resource.
fn compartment_sql(sql: &mut Sql, compartment: &fhir_core::search::CompartmentFilter) {
    sql.push("(0");
    if compartment.include_self {
        sql.push(" OR (r.resource_type = ");
        sql.arg(compartment.resource_type.clone());
        sql.push(" AND r.id = ");
        sql.arg(compartment.id.clone());
        sql.push(")");
    }
    for (member, params) in &compartment.members {
        sql.push(" OR (r.resource_type = ");
        sql.arg(member.clone());
        sql.push(" AND r.row IN (SELECT row FROM ix_reference WHERE target_id = ");
        sql.arg(compartment.id.clone());
        sql.push(" AND target_type = ");
        sql.arg(compartment.resource_type.clone());
        sql.push(" AND param IN (");
        for (index, param) in params.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.arg(param.clone());
        }
        sql.push(")))");
    }
    sql.push(")");
}

fn criterion_sql(sql: &mut Sql, alias: &str, tenant: &str, snapshot: u64, criterion: &Criterion) -> Result<()> {
    path_sql(sql, alias, tenant, snapshot, &criterion.path, &criterion.values)
}

fn path_sql(sql: &mut Sql, alias: &str, tenant: &str, snapshot: u64, path: &ParamPath, values: &[SearchValue]) -> Result<()> {
    match path {
        ParamPath::Direct { param, modifier } => direct_sql(sql, alias, param, modifier.as_ref(), values),
        ParamPath::Chain { via, target_types, next } => {
            let (reference, target) = (sql.alias("ref"), sql.alias("t"));
            sql.push(&format!(
                "{alias}.row IN (SELECT {reference}.row FROM ix_reference {reference} JOIN resources {target} ON {target}.tenant = "
            ));
            sql.arg(tenant.to_string());
            sql.push(&format!(
                " AND {target}.resource_type = {reference}.target_type AND {target}.id = {reference}.target_id WHERE {reference}.param = "
            ));
            sql.arg(via.code.clone());
            sql.push(&format!(" AND {reference}.target_type IN ("));
            for (index, target_type) in target_types.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.arg(target_type.clone());
            }
            sql.push(") AND ");
            visible(sql, &target, snapshot);
            sql.push(" AND ");
            path_sql(sql, &target, tenant, snapshot, next, values)?;
            sql.push(")");
            Ok(())
        }
        ParamPath::Has { source_type, via, next } => {
            let (reference, source) = (sql.alias("ref"), sql.alias("s"));
            sql.push(&format!(
                "({alias}.resource_type, {alias}.id) IN (SELECT {reference}.target_type, {reference}.target_id FROM ix_reference {reference} \
                 JOIN resources {source} ON {source}.row = {reference}.row WHERE {reference}.param = "
            ));
            sql.arg(via.code.clone());
            sql.push(&format!(" AND {source}.tenant = "));
            sql.arg(tenant.to_string());
            sql.push(&format!(" AND {source}.resource_type = "));
            sql.arg(source_type.clone());
            sql.push(" AND ");
            visible(sql, &source, snapshot);
            sql.push(" AND ");
            path_sql(sql, &source, tenant, snapshot, next, values)?;
            sql.push(")");
            Ok(())
        }
    }
}

fn direct_sql(sql: &mut Sql, alias: &str, param: &ParamRef, modifier: Option<&Modifier>, values: &[SearchValue]) -> Result<()> {
    if let [SearchValue::Missing(missing)] = values {
        return missing_sql(sql, alias, param, *missing);
    }
    match param.code.as_str() {
        "_id" => return id_sql(sql, alias, modifier, values),
        "_lastUpdated" => return last_updated_sql(sql, alias, values),
        _ => {}
    }
    let (table, negate) = match (param.kind, modifier) {
        (SearchParamType::Token, Some(Modifier::Text)) => ("ix_text", false),
        (SearchParamType::Token, Some(Modifier::OfType)) => ("ix_of_type", false),
        (SearchParamType::Token, Some(Modifier::Not | Modifier::NotIn)) => ("ix_token", true),
        (SearchParamType::Reference, Some(Modifier::Identifier)) => ("ix_token", false),
        (SearchParamType::Composite, _) => return composite_sql(sql, alias, param, values),
        (kind, _) => (table_for(kind), false),
    };
    let stored_param = match modifier {
        Some(Modifier::Identifier) => format!("{}:identifier", param.code),
        Some(Modifier::OfType) => format!("{}:of-type", param.code),
        _ => param.code.clone(),
    };
    let inner = sql.alias("v");
    sql.push(&format!("{alias}.row {}IN (SELECT {inner}.row FROM {table} {inner} WHERE {inner}.param = ", if negate { "NOT " } else { "" }));
    sql.arg(stored_param);
    sql.push(" AND (");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        value_sql(sql, &inner, param.kind, modifier, value)?;
    }
    sql.push("))");
    Ok(())
}

fn missing_sql(sql: &mut Sql, alias: &str, param: &ParamRef, missing: bool) -> Result<()> {
    if param.kind == SearchParamType::Composite {
        return Err(Unsupported(":missing is not supported on composite parameters".into()));
    }
    // Every resource has an id and a lastUpdated, which live in the resource row.
    if matches!(param.code.as_str(), "_id" | "_lastUpdated") {
        sql.push(if missing { "0" } else { "1" });
        return Ok(());
    }
    // A value may be stored beside the parameter's own table: a CodeableConcept with only text
    // (`ix_text`), a reference given only by identifier (`<code>:identifier` in `ix_token`).
    let mut places = vec![(table_for(param.kind), param.code.clone())];
    match param.kind {
        SearchParamType::Token => places.push(("ix_text", param.code.clone())),
        SearchParamType::Reference => places.push(("ix_token", format!("{}:identifier", param.code))),
        _ => {}
    }
    let negate = if missing { "NOT " } else { "" };
    sql.push(&format!("{alias}.row {negate}IN ("));
    for (index, (table, stored_param)) in places.into_iter().enumerate() {
        if index > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push(&format!("SELECT row FROM {table} WHERE param = "));
        sql.arg(stored_param);
    }
    sql.push(")");
    Ok(())
}

fn id_sql(sql: &mut Sql, alias: &str, modifier: Option<&Modifier>, values: &[SearchValue]) -> Result<()> {
    let negate = matches!(modifier, Some(Modifier::Not));
    sql.push(&format!("{alias}.id {}IN (", if negate { "NOT " } else { "" }));
    for (index, value) in values.iter().enumerate() {
        let SearchValue::Token { code: Some(code), .. } = value else {
            return Err(Unsupported("_id takes plain ids".into()));
        };
        if index > 0 {
            sql.push(", ");
        }
        sql.arg(code.clone());
    }
    sql.push(")");
    Ok(())
}

fn last_updated_sql(sql: &mut Sql, alias: &str, values: &[SearchValue]) -> Result<()> {
    sql.push("(");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        let SearchValue::Date { prefix, start, end } = value else {
            return Err(Unsupported("_lastUpdated takes dates".into()));
        };
        // A stored instant covers its millisecond.
        let low = format!("{alias}.last_updated");
        let high = format!("({alias}.last_updated + 1)");
        range_condition(sql, &low, &high, *prefix, unix_millis(*start), unix_millis(*end));
    }
    sql.push(")");
    Ok(())
}

/// Date semantics: the stored range `[low, high)` against the searched range `[start, end)`.
fn range_condition(sql: &mut Sql, low: &str, high: &str, prefix: Prefix, start: i64, end: i64) {
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

fn value_sql(sql: &mut Sql, t: &str, kind: SearchParamType, modifier: Option<&Modifier>, value: &SearchValue) -> Result<()> {
    match (kind, value) {
        (SearchParamType::String, SearchValue::Text(text)) => match modifier {
            Some(Modifier::Exact) => {
                sql.push(&format!("{t}.exact = "));
                sql.arg(text.clone());
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

fn composite_sql(sql: &mut Sql, alias: &str, param: &ParamRef, values: &[SearchValue]) -> Result<()> {
    let definition = r4()
        .search_parameters()
        .iter()
        .find(|p| p.core && p.code == param.code && p.kind == SearchParamType::Composite)
        .ok_or_else(|| Unsupported("unknown composite parameter".into()))?;
    let kinds: Vec<SearchParamType> = definition
        .component
        .iter()
        .map(|component| r4().search_parameter_by_url(&component.definition).map(|p| p.kind))
        .collect::<Option<_>>()
        .ok_or_else(|| Unsupported("unknown composite component".into()))?;
    sql.push("(");
    for (index, value) in values.iter().enumerate() {
        let SearchValue::Composite(parts) = value else { return Err(Unsupported("composite values need $".into())) };
        if index > 0 {
            sql.push(" OR ");
        }
        let components: Vec<String> = kinds.iter().map(|_| sql.alias("c")).collect();
        sql.push(&format!("{alias}.row IN (SELECT {}.row FROM ", components[0]));
        for (n, (kind, component)) in kinds.iter().zip(&components).enumerate() {
            if n > 0 {
                sql.push(&format!(" JOIN {} {component} ON {component}.row = {first}.row AND {component}.grp = {first}.grp AND {component}.param = ", table_for(*kind), first = components[0]));
                sql.arg(format!("{}${n}", param.code));
            } else {
                sql.push(&format!("{} {component}", table_for(*kind)));
            }
        }
        sql.push(&format!(" WHERE {}.param = ", components[0]));
        sql.arg(format!("{}$0", param.code));
        for ((kind, component), part) in kinds.iter().zip(&components).zip(parts) {
            sql.push(" AND ");
            value_sql(sql, component, *kind, None, part)?;
        }
        sql.push(")");
    }
    sql.push(")");
    Ok(())
}

/// `ORDER BY` for the sort keys, then insertion order.
pub fn order_by(sql: &mut Sql, sort: &[SortKey]) {
    sql.push(" ORDER BY ");
    for key in sort {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let expression = match key.param.code.as_str() {
            "_id" => "r.id".to_string(),
            "_lastUpdated" => "r.last_updated".to_string(),
            _ => {
                let table = table_for(key.param.kind);
                // With several values, ascending order uses the lowest and descending the
                // highest, so that each direction puts first what matters most to it.
                let aggregate = if key.descending { "MAX" } else { "MIN" };
                let column = match (key.param.kind, key.descending) {
                    (SearchParamType::String, _) => "norm",
                    (SearchParamType::Token, _) => "code",
                    (SearchParamType::Date, false) => "low",
                    (SearchParamType::Date, true) => "high",
                    (SearchParamType::Number | SearchParamType::Quantity, _) => "value",
                    (SearchParamType::Reference, _) => "target_id",
                    (SearchParamType::Uri, _) => "uri",
                    _ => "row",
                };
                let mut expression = format!("(SELECT {aggregate}({column}) FROM {table} WHERE row = r.row AND param = ");
                sql.args.push(Value::Text(key.param.code.clone()));
                expression.push_str("?)");
                // The argument is bound twice: once for the NULL test, once for the order.
                sql.args.push(Value::Text(key.param.code.clone()));
                format!("{expression} IS NULL, {}", expression.clone())
            }
        };
        sql.push(&format!("{expression} {direction}, "));
    }
    sql.push("r.row ASC");
}
