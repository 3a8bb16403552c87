//! `_include` and `_revinclude`: the resources a page's matches refer to, and those that refer to
//! them, visible at the search's snapshot, followed for up to [`MAX_INCLUDE_ROUNDS`] rounds when
//! `:iterate`d. Each include is one statement per round over the whole frontier (passed as a
//! JSON array), not one per resource.

use std::collections::HashSet;

use fhir_core::search::{Include, SearchQuery};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};

use crate::store::IndexError;

/// How many rounds of `:iterate` includes are followed.
const MAX_INCLUDE_ROUNDS: usize = 4;
/// How many resources includes may add to one page.
const MAX_INCLUDED: usize = 10_000;

/// A found resource's identity.
pub(crate) struct Resource {
    pub row: i64,
    pub resource_type: String,
    pub id: String,
    pub position: u64,
}

impl Resource {
    /// From `SELECT row, resource_type, id, position ...`.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Resource> {
        Ok(Resource { row: row.get(0)?, resource_type: row.get(1)?, id: row.get(2)?, position: row.get::<_, i64>(3)? as u64 })
    }
}

/// Positions of the resources `query`'s includes add to `hits`, in the order found.
pub(crate) fn includes(connection: &Connection, tenant: &str, query: &SearchQuery, snapshot: u64, hits: &[Resource]) -> Result<Vec<u64>, IndexError> {
    if query.include.is_empty() && query.revinclude.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<u64> = hits.iter().map(|hit| hit.position).collect();
    let mut included = Vec::new();
    let mut frontier: Vec<&Resource> = hits.iter().collect();
    let mut found_all: Vec<Vec<Resource>> = Vec::new();
    for round in 0..MAX_INCLUDE_ROUNDS {
        let mut found = Vec::new();
        for include in query.include.iter().filter(|include| round == 0 || include.iterate) {
            found.extend(forward(connection, tenant, snapshot, include, &frontier)?);
        }
        for include in query.revinclude.iter().filter(|include| round == 0 || include.iterate) {
            found.extend(reverse(connection, tenant, snapshot, include, &frontier)?);
        }
        found.retain(|resource| included.len() < MAX_INCLUDED && seen.insert(resource.position) && {
            included.push(resource.position);
            true
        });
        if found.is_empty() {
            break;
        }
        found_all.push(found);
        frontier = found_all.last().map(|found| found.iter().collect()).unwrap_or_default();
    }
    Ok(included)
}

/// `t` visible at the snapshot (argument `?1`).
const VISIBLE: &str = "t.position <= ?1 AND (t.superseded_at IS NULL OR t.superseded_at > ?1)";

fn query(connection: &Connection, sql: &str, args: &[Value]) -> Result<Vec<Resource>, IndexError> {
    Ok(connection.prepare_cached(sql)?.query_map(params_from_iter(args.iter()), Resource::from_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Resources that `frontier` resources refer to through `include`.
fn forward(connection: &Connection, tenant: &str, snapshot: u64, include: &Include, frontier: &[&Resource]) -> Result<Vec<Resource>, IndexError> {
    let rows: Vec<i64> = frontier
        .iter()
        .filter(|resource| include.source_type.as_ref().is_none_or(|source| *source == resource.resource_type))
        .map(|resource| resource.row)
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![Value::Integer(snapshot as i64), Value::Text(tenant.to_string()), Value::Text(serde_json::to_string(&rows).unwrap_or_default())];
    let mut sql = String::from(
        "SELECT t.row, t.resource_type, t.id, t.position FROM json_each(?3) f
         CROSS JOIN ix_reference ref ON ref.row = f.value
         JOIN resources t ON t.tenant = ?2 AND t.resource_type = ref.target_type AND t.id = ref.target_id
         WHERE ",
    );
    if let Some(param) = &include.param {
        args.push(Value::Text(param.clone()));
        sql.push_str(&format!("ref.param = ?{} AND ", args.len()));
    }
    if let Some(target_type) = &include.target_type {
        args.push(Value::Text(target_type.clone()));
        sql.push_str(&format!("ref.target_type = ?{} AND ", args.len()));
    }
    sql.push_str(&format!("{VISIBLE} ORDER BY f.key, ref.param, ref.seq"));
    query(connection, &sql, &args)
}

/// Resources of `include.source_type` that refer to `frontier` resources through `include.param`.
fn reverse(connection: &Connection, tenant: &str, snapshot: u64, include: &Include, frontier: &[&Resource]) -> Result<Vec<Resource>, IndexError> {
    let targets: Vec<(&str, &str)> = frontier
        .iter()
        .filter(|resource| include.target_type.as_ref().is_none_or(|target| *target == resource.resource_type))
        .map(|resource| (resource.resource_type.as_str(), resource.id.as_str()))
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![Value::Integer(snapshot as i64), Value::Text(tenant.to_string()), Value::Text(serde_json::to_string(&targets).unwrap_or_default())];
    let mut sql = String::from(
        "SELECT t.row, t.resource_type, t.id, t.position FROM json_each(?3) f
         CROSS JOIN ix_reference ref ON ref.target_id = f.value ->> 1 AND ref.target_type = f.value ->> 0
         JOIN resources t ON t.row = ref.row
         WHERE t.tenant = ?2 AND ",
    );
    if let Some(param) = &include.param {
        args.push(Value::Text(param.clone()));
        sql.push_str(&format!("ref.param = ?{} AND ", args.len()));
    }
    if let Some(source_type) = &include.source_type {
        args.push(Value::Text(source_type.clone()));
        sql.push_str(&format!("t.resource_type = ?{} AND ", args.len()));
    }
    sql.push_str(&format!("{VISIBLE} ORDER BY f.key, t.row"));
    query(connection, &sql, &args)
}
