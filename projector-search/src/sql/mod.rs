//! Turns the typed [`SearchQuery`] into SQL over the index tables, at the search's snapshot.
//!
//! A search is read one of three ways, chosen per query ([`plan`]):
//! - *driven* by its most selective criterion: its matching rows are listed from a value index
//!   and the resources looked up by row; every other criterion is tested per candidate
//!   (`criteria`);
//! - *streamed*, for a page driven by one exact token: the token's value index is read in row
//!   order and joined to the resources as it goes, so the page stops once full;
//! - *scanned*, for a page of a code most resources have: the types' resources in row order,
//!   every criterion tested on each.
//!
//! The SQL's shape fixes the plan (a unary `+` keeps SQLite off an index, `CROSS JOIN` fixes the
//! join order), so it does not hinge on the planner's statistics.
//!
//! Layout: [`plan`] (which criterion drives), `criteria` (one criterion: direct, chain,
//! `_has`, composite, `:missing`), `value` (one searched value against one stored value).

mod criteria;
pub mod plan;
mod value;

use fhir_core::definitions::SearchParamType;
use fhir_core::search::{SearchQuery, SortKey};
use rusqlite::types::Value;

use crate::schema::table_for;
use criteria::{drives_by_row, path_sql, stream_sql, streams_in_row_order, Role};
pub use plan::{choose_driver, Planning};

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

/// What a search reads: for its total (every match, any order), for a page (matches in row
/// order, or sorted), or the first [`plan::SAMPLE`] resources of its types (to see how dense
/// the matches are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Count,
    Page,
    Sample,
}

/// The `FROM ... WHERE ...` of a search, and the column whose order is the matches' row order.
pub struct Filter {
    pub sql: Sql,
    pub row: &'static str,
}

/// `FROM resources r WHERE ...` for the query's types and criteria, at `snapshot`, with
/// `driver` (from [`choose_driver`]) listing the candidate rows.
///
/// A page in row order whose driver is one exact token (`code=system|code`, which a resource
/// holds at most once) reads the value index and joins the resources as it goes, so it stops
/// after the page instead of first listing every match.
pub fn from_where(query: &SearchQuery, tenant: &str, snapshot: u64, shape: Shape, driver: Option<usize>) -> Result<Filter> {
    let streamed = driver.filter(|index| {
        shape == Shape::Page && query.sort.is_empty() && streams_in_row_order(&query.criteria[*index].path, &query.criteria[*index].values)
    });
    let hint = match driver {
        Some(index) if drives_by_row(&query.criteria[index].path, &query.criteria[index].values) => "+",
        _ => "",
    };
    let mut sql = Sql::default();
    let row = match streamed {
        Some(index) => {
            let criterion = &query.criteria[index];
            sql.push(" FROM ");
            stream_sql(&mut sql, "d", &criterion.path, &criterion.values)?;
            sql.push(" AND r.row = d.row AND ");
            "d.row"
        }
        None if shape == Shape::Sample => {
            sql.push(" FROM (SELECT * FROM resources WHERE tenant = ");
            sql.arg(tenant.to_string());
            sql.push(" AND resource_type IN (");
            for (index, resource_type) in query.types.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.arg(resource_type.clone());
            }
            sql.push(&format!(") ORDER BY row LIMIT {}) r WHERE ", plan::SAMPLE));
            "r.row"
        }
        None => {
            sql.push(" FROM resources r WHERE ");
            "r.row"
        }
    };
    sql.push(&format!("{hint}r.tenant = "));
    sql.arg(tenant.to_string());
    if !query.types.is_empty() {
        sql.push(&format!(" AND {hint}r.resource_type IN ("));
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
    if let (Some(index), None) = (driver, streamed) {
        let criterion = &query.criteria[index];
        sql.push(" AND ");
        path_sql(&mut sql, "r", tenant, snapshot, &criterion.path, &criterion.values, Role::Driver)?;
    }
    for (index, criterion) in query.criteria.iter().enumerate() {
        if Some(index) != driver {
            sql.push(" AND ");
            path_sql(&mut sql, "r", tenant, snapshot, &criterion.path, &criterion.values, Role::Filter)?;
        }
    }
    Ok(Filter { sql, row })
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

/// `ORDER BY` for the sort keys, then insertion order. Each key is a column of the select list
/// (`sort0`, `sort1`, ...: appended to `select` here), so it is computed once per row.
pub fn order_by(select: &mut String, filter: &mut Filter, sort: &[SortKey]) {
    let sql = &mut filter.sql;
    let mut order = String::from(" ORDER BY ");
    let mut select_args = Vec::new();
    for (index, key) in sort.iter().enumerate() {
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
                select_args.push(Value::Text(key.param.code.clone()));
                format!("(SELECT {aggregate}({column}) FROM {table} WHERE row = r.row AND param = ?)")
            }
        };
        select.push_str(&format!(", {expression} AS sort{index}"));
        // Resources without a value come last in both directions.
        order.push_str(&format!("sort{index} {direction} NULLS LAST, "));
    }
    order.push_str(&format!("{} ASC", filter.row));
    // The select list comes before FROM, so its arguments come first.
    select_args.append(&mut sql.args);
    sql.args = select_args;
    sql.push(&order);
}
