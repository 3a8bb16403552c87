//! One criterion as SQL on a resource alias, in one of two roles ([`Role`]): the *driver* names
//! the matching rows as a set (`row IN (SELECT ...)`), which SQLite reads from a value index in
//! row order and then looks the resources up by row; a *filter* is tested per candidate resource
//! (`EXISTS (SELECT ... WHERE row = r.row)`), a lookup by key in the clustered value table. So a
//! selective first criterion is never slowed down by a broad second one (`date=ge2020`).

use fhir_core::definitions::SearchParamType;
use fhir_core::instant::unix_millis;
use fhir_core::search::{Modifier, ParamPath, ParamRef, SearchValue};

use super::value::{range_condition, value_sql};
use super::{visible, Result, Sql, Unsupported};
use crate::schema::table_for;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Driver,
    Filter,
    /// The driver's row set alone (`SELECT row FROM ... WHERE ...`), to count how many rows it
    /// lists before choosing it (see [`super::choose_driver`]).
    Probe,
}

/// Whether a criterion's row set can be probed ([`Role::Probe`]) at a cost bounded by the
/// probe's limit: values found by equality or prefix in a value index (every entry read is a
/// match), not ranges or substrings (which may read many entries to find few matches).
pub(super) fn probes(path: &ParamPath, values: &[SearchValue]) -> bool {
    let ParamPath::Direct { param, .. } = path else { return false };
    if !driver_rank(path, values).is_some_and(|rank| (1..=2).contains(&rank)) {
        return false;
    }
    // Each value must be found from the front of its value index: a code (not only a system),
    // a reference by id (not by URL), a string or a URI.
    values.iter().all(|value| match (param.kind, value) {
        (_, SearchValue::Token { code, .. }) => code.is_some(),
        (_, SearchValue::Reference(reference)) => reference.id.is_some() && reference.url.is_none(),
        (SearchParamType::String | SearchParamType::Uri, SearchValue::Text(_)) | (_, SearchValue::OfType { .. }) => true,
        _ => false,
    })
}

/// How well a criterion usually drives a search (lower first), or `None` when it cannot: a
/// negation or a condition on the resource row itself only filters. A reference to one resource
/// usually lists fewer rows than a code (codes such as `status` or `category` take few values),
/// and ranges and partial matches the most.
pub(super) fn driver_rank(path: &ParamPath, values: &[SearchValue]) -> Option<u8> {
    match path {
        ParamPath::Direct { param, modifier } => {
            // `:missing` is tested per resource (and `:missing=false` is rarely selective).
            if let [SearchValue::Missing(_)] = values {
                return None;
            }
            match (param.code.as_str(), modifier) {
                ("_id", Some(Modifier::Not)) | ("_lastUpdated", _) => None,
                ("_id", _) => Some(0),
                (_, Some(Modifier::Not | Modifier::NotIn)) => None,
                (_, Some(Modifier::Contains | Modifier::Text | Modifier::Above | Modifier::Below | Modifier::In)) => Some(4),
                _ => match param.kind {
                    SearchParamType::Reference => Some(1),
                    SearchParamType::Date | SearchParamType::Number | SearchParamType::Quantity => Some(4),
                    _ => Some(2),
                },
            }
        }
        ParamPath::Chain { next, .. } => driver_rank(next, values).map(|rank| rank.max(3)),
        ParamPath::Has { .. } => Some(5),
    }
}

/// Whether the driver of this rank finds resources by row (so the resource table is best read
/// by row, not through its type index).
pub(super) fn drives_by_row(path: &ParamPath, values: &[SearchValue]) -> bool {
    !matches!(path, ParamPath::Has { .. }) && driver_rank(path, values).is_some_and(|rank| rank > 0)
}

/// Whether the criterion is one exact token (system and code): its value index lists the rows
/// holding it in row order, each once (extraction stores a parameter's repeated value once).
pub(super) fn streams_in_row_order(path: &ParamPath, values: &[SearchValue]) -> bool {
    let ParamPath::Direct { param, modifier: None } = path else { return false };
    param.kind == SearchParamType::Token
        && !param.code.starts_with('_')
        && matches!(values, [SearchValue::Token { system: Some(system), code: Some(_) }] if !system.is_empty())
}

/// `ix_token {alias} CROSS JOIN resources r WHERE <the value>`, for a criterion that
/// [`streams_in_row_order`].
pub(super) fn stream_sql(sql: &mut Sql, alias: &str, path: &ParamPath, values: &[SearchValue]) -> Result<()> {
    let (ParamPath::Direct { param, .. }, [value]) = (path, values) else {
        return Err(Unsupported("not a single token".into()));
    };
    sql.push(&format!("ix_token {alias} CROSS JOIN resources r WHERE {alias}.param = "));
    sql.arg(param.code.clone());
    sql.push(" AND ");
    value_sql(sql, alias, param.kind, None, value)
}

/// How a row set's value columns are named in its conditions: as they are, or, in a filter,
/// behind a unary `+` (`+v1.code = ?`), which keeps SQLite from reading the value index for
/// them. A filter reads one resource's values by key (`row`, `param`); the value index would
/// list every resource with the value (all the references to one patient) to find this one.
fn compared(alias: &str, role: Role) -> String {
    match role {
        Role::Filter => format!("+{alias}"),
        Role::Driver | Role::Probe => alias.to_string(),
    }
}

/// Opens a row set: `alias.row IN (SELECT <row> ` or `EXISTS (SELECT 1 `.
fn open(sql: &mut Sql, alias: &str, role: Role, negate: bool, row: &str) {
    let not = if negate { "NOT " } else { "" };
    match role {
        Role::Driver => sql.push(&format!("{alias}.row {not}IN (SELECT {row} ")),
        Role::Filter => sql.push(&format!("{not}EXISTS (SELECT 1 ")),
        Role::Probe => sql.push(&format!("SELECT {row} ")),
    }
}

/// Closes what [`open`] opened, after the `FROM ... WHERE ...` of the row set.
fn close(sql: &mut Sql, alias: &str, role: Role, row: &str) {
    match role {
        Role::Driver => sql.push(")"),
        Role::Filter => sql.push(&format!(" AND {row} = {alias}.row)")),
        Role::Probe => {}
    }
}

pub(super) fn path_sql(sql: &mut Sql, alias: &str, tenant: &str, snapshot: u64, path: &ParamPath, values: &[SearchValue], role: Role) -> Result<()> {
    match path {
        ParamPath::Direct { param, modifier } => direct_sql(sql, alias, param, modifier.as_ref(), values, role),
        ParamPath::Chain { via, target_types, next } => chain_sql(sql, alias, tenant, snapshot, (via, target_types, next), values, role),
        ParamPath::Has { source_type, via, next } => has_sql(sql, alias, tenant, snapshot, (source_type, via, next), values, role),
    }
}

fn type_list(sql: &mut Sql, types: &[String]) {
    sql.push("(");
    for (index, resource_type) in types.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.arg(resource_type.clone());
    }
    sql.push(")");
}

/// `via.next`. As the driver, from the targets that match `next` to the references to them; as
/// a filter, from this resource's references to their targets.
fn chain_sql(
    sql: &mut Sql,
    alias: &str,
    tenant: &str,
    snapshot: u64,
    (via, target_types, next): (&ParamRef, &[String], &ParamPath),
    values: &[SearchValue],
    role: Role,
) -> Result<()> {
    let (reference, target) = (sql.alias("ref"), sql.alias("t"));
    let row = format!("{reference}.row");
    open(sql, alias, role, false, &row);
    match role {
        Role::Driver | Role::Probe => {
            // The targets drive (CROSS JOIN keeps them outside), found by row when `next` can.
            let inner = if drives_by_row(next, values) { Role::Driver } else { Role::Filter };
            let hint = if inner == Role::Driver { "+" } else { "" };
            sql.push(&format!("FROM resources {target} CROSS JOIN ix_reference {reference} WHERE {hint}{target}.tenant = "));
            sql.arg(tenant.to_string());
            sql.push(&format!(" AND {hint}{target}.resource_type IN "));
            type_list(sql, target_types);
            sql.push(" AND ");
            visible(sql, &target, snapshot);
            sql.push(" AND ");
            path_sql(sql, &target, tenant, snapshot, next, values, inner)?;
            sql.push(&format!(
                " AND {reference}.target_id = {target}.id AND {reference}.target_type = {target}.resource_type AND {reference}.param = "
            ));
            sql.arg(via.code.clone());
        }
        Role::Filter => {
            // This resource's references first (by key), then their targets.
            sql.push(&format!("FROM ix_reference {reference} CROSS JOIN resources {target} ON {target}.tenant = "));
            sql.arg(tenant.to_string());
            sql.push(&format!(
                " AND {target}.resource_type = {reference}.target_type AND {target}.id = {reference}.target_id WHERE {reference}.param = "
            ));
            sql.arg(via.code.clone());
            sql.push(&format!(" AND {reference}.target_type IN "));
            type_list(sql, target_types);
            sql.push(" AND ");
            visible(sql, &target, snapshot);
            sql.push(" AND ");
            path_sql(sql, &target, tenant, snapshot, next, values, Role::Filter)?;
        }
    }
    close(sql, alias, role, &row);
    Ok(())
}

/// `_has:source_type:via:next`: the (type, id) of this resource is referred to by a matching source.
fn has_sql(
    sql: &mut Sql,
    alias: &str,
    tenant: &str,
    snapshot: u64,
    (source_type, via, next): (&String, &ParamRef, &ParamPath),
    values: &[SearchValue],
    role: Role,
) -> Result<()> {
    let (reference, source) = (sql.alias("ref"), sql.alias("s"));
    let inner = match role {
        Role::Driver if drives_by_row(next, values) => Role::Driver,
        _ => Role::Filter,
    };
    let hint = if inner == Role::Driver { "+" } else { "" };
    match role {
        Role::Driver | Role::Probe => sql.push(&format!(
            "({alias}.resource_type, {alias}.id) IN (SELECT {reference}.target_type, {reference}.target_id FROM resources {source} \
             CROSS JOIN ix_reference {reference} WHERE {reference}.row = {source}.row AND "
        )),
        Role::Filter => sql.push(&format!(
            "EXISTS (SELECT 1 FROM ix_reference {reference} JOIN resources {source} ON {source}.row = {reference}.row \
             WHERE {reference}.target_id = {alias}.id AND {reference}.target_type = {alias}.resource_type AND "
        )),
    }
    sql.push(&format!("{reference}.param = "));
    sql.arg(via.code.clone());
    sql.push(&format!(" AND {hint}{source}.tenant = "));
    sql.arg(tenant.to_string());
    sql.push(&format!(" AND {hint}{source}.resource_type = "));
    sql.arg(source_type.clone());
    sql.push(" AND ");
    visible(sql, &source, snapshot);
    sql.push(" AND ");
    path_sql(sql, &source, tenant, snapshot, next, values, inner)?;
    sql.push(")");
    Ok(())
}

fn direct_sql(sql: &mut Sql, alias: &str, param: &ParamRef, modifier: Option<&Modifier>, values: &[SearchValue], role: Role) -> Result<()> {
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
        (SearchParamType::Composite, _) => return composite_sql(sql, alias, param, values, role),
        (kind, _) => (table_for(kind), false),
    };
    // A negation only filters: `NOT IN` would list every row that has the value.
    let role = if negate { Role::Filter } else { role };
    let stored_param = match modifier {
        Some(Modifier::Identifier) => format!("{}:identifier", param.code),
        Some(Modifier::OfType) => format!("{}:of-type", param.code),
        _ => param.code.clone(),
    };
    let inner = sql.alias("v");
    let row = format!("{inner}.row");
    open(sql, alias, role, negate, &row);
    sql.push(&format!("FROM {table} {inner} WHERE {inner}.param = "));
    sql.arg(stored_param);
    sql.push(" AND (");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        value_sql(sql, &compared(&inner, role), param.kind, modifier, value)?;
    }
    sql.push(")");
    close(sql, alias, role, &row);
    Ok(())
}

/// `:missing`, tested per resource: whether it has a row for the parameter in any table that
/// holds its values.
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
    sql.push(if missing { "NOT (" } else { "(" });
    for (index, (table, stored_param)) in places.into_iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        sql.push(&format!("EXISTS (SELECT 1 FROM {table} WHERE row = {alias}.row AND param = "));
        sql.arg(stored_param);
        sql.push(")");
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

/// A composite matches when one occurrence (`grp`) has every component matching.
fn composite_sql(sql: &mut Sql, alias: &str, param: &ParamRef, values: &[SearchValue], role: Role) -> Result<()> {
    let kinds = param.composite_components().ok_or_else(|| Unsupported("unknown composite parameter".into()))?;
    sql.push("(");
    for (index, value) in values.iter().enumerate() {
        let SearchValue::Composite(parts) = value else { return Err(Unsupported("composite values need $".into())) };
        if index > 0 {
            sql.push(" OR ");
        }
        let components: Vec<String> = kinds.iter().map(|_| sql.alias("c")).collect();
        let first = &components[0];
        let row = format!("{first}.row");
        open(sql, alias, role, false, &row);
        sql.push("FROM ");
        for (n, (kind, component)) in kinds.iter().zip(&components).enumerate() {
            if n > 0 {
                sql.push(&format!(
                    " JOIN {} {component} ON {component}.row = {first}.row AND {component}.grp = {first}.grp AND {component}.param = ",
                    table_for(*kind)
                ));
                sql.arg(format!("{}${n}", param.code));
            } else {
                sql.push(&format!("{} {component}", table_for(*kind)));
            }
        }
        sql.push(&format!(" WHERE {first}.param = "));
        sql.arg(format!("{}$0", param.code));
        for ((kind, component), part) in kinds.iter().zip(&components).zip(parts) {
            sql.push(" AND ");
            // Only the first component of a driver is looked up by value; the others by key.
            let role = if component == first { role } else { Role::Filter };
            value_sql(sql, &compared(component, role), *kind, None, part)?;
        }
        close(sql, alias, role, &row);
    }
    sql.push(")");
    Ok(())
}
