//! Running a search on the index: the page of matches at a snapshot, the total when asked, and
//! the `_include` / `_revinclude` resources. Results are log positions; the caller reads the
//! bodies from the log.

use std::collections::HashSet;

use fhir_core::search::{Include, SearchQuery, Total};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::sql::{from_where, order_by, Shape, Unsupported};
use crate::store::{IndexError, SearchIndex};

/// How many rounds of `:iterate` includes are followed.
const MAX_INCLUDE_ROUNDS: usize = 4;
/// How many resources includes may add to one page.
const MAX_INCLUDED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Unsupported(#[from] Unsupported),
}

impl From<rusqlite::Error> for SearchError {
    fn from(error: rusqlite::Error) -> Self {
        SearchError::Index(IndexError::Sqlite(error))
    }
}

/// Which page of which snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub snapshot: u64,
    pub offset: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// Log positions of the matches on this page, in order.
    pub matches: Vec<u64>,
    /// Log positions of included resources (not matches).
    pub included: Vec<u64>,
    pub total: Option<u64>,
    pub has_next: bool,
}

/// A matched resource's identity, for includes.
struct Hit {
    row: i64,
    resource_type: String,
    id: String,
    position: u64,
}

impl SearchIndex {
    /// Runs `query` for `tenant` as of `page.snapshot`.
    pub fn search(&self, tenant: &str, query: &SearchQuery, page: PageRequest) -> Result<SearchPage, SearchError> {
        let count_only = query.summary == Some(fhir_core::summary::SummaryMode::Count);
        let counted = count_only || matches!(query.total, Total::Accurate | Total::Estimate);
        let count = if counted { Some(from_where(query, tenant, page.snapshot, Shape::Count)?) } else { None };
        let listed = if count_only || query.count == 0 { None } else { Some(from_where(query, tenant, page.snapshot, Shape::Page)?) };
        self.with_reader(|connection| {
            let total = match &count {
                Some(filter) => {
                    let sql = format!("SELECT COUNT(*){}", filter.sql.text);
                    Some(connection.prepare_cached(&sql)?.query_row(params_from_iter(filter.sql.args.iter()), |row| row.get::<_, i64>(0))? as u64)
                }
                None => None,
            };
            let Some(mut filter) = listed else {
                return Ok(Ok(SearchPage { total, ..SearchPage::default() }));
            };
            let mut select = String::from("SELECT r.row, r.resource_type, r.id, r.position");
            order_by(&mut select, &mut filter, &query.sort);
            let mut sql = filter.sql;
            sql.text = format!("{select}{} LIMIT ? OFFSET ?", sql.text);
            sql.args.push(Value::Integer(query.count as i64 + 1));
            sql.args.push(Value::Integer(page.offset as i64));
            let mut hits: Vec<Hit> = connection
                .prepare_cached(&sql.text)?
                .query_map(params_from_iter(sql.args.iter()), |row| {
                    Ok(Hit { row: row.get(0)?, resource_type: row.get(1)?, id: row.get(2)?, position: row.get::<_, i64>(3)? as u64 })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let has_next = hits.len() > query.count;
            hits.truncate(query.count);
            let included = includes(connection, tenant, query, page.snapshot, &hits)?;
            Ok(Ok(SearchPage { matches: hits.iter().map(|hit| hit.position).collect(), included, total, has_next }))
        })?
        .map_err(|error: Unsupported| error.into())
    }
}

fn includes(connection: &Connection, tenant: &str, query: &SearchQuery, snapshot: u64, hits: &[Hit]) -> Result<Vec<u64>, IndexError> {
    if query.include.is_empty() && query.revinclude.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<u64> = hits.iter().map(|hit| hit.position).collect();
    let mut included = Vec::new();
    let mut frontier: Vec<(i64, String, String)> = hits.iter().map(|h| (h.row, h.resource_type.clone(), h.id.clone())).collect();
    for round in 0..MAX_INCLUDE_ROUNDS {
        let mut next = Vec::new();
        for include in query.include.iter().filter(|i| round == 0 || i.iterate) {
            for found in forward(connection, tenant, snapshot, include, &frontier)? {
                if seen.insert(found.3) && included.len() < MAX_INCLUDED {
                    included.push(found.3);
                    next.push((found.0, found.1, found.2));
                }
            }
        }
        for include in query.revinclude.iter().filter(|i| round == 0 || i.iterate) {
            for found in reverse(connection, tenant, snapshot, include, &frontier)? {
                if seen.insert(found.3) && included.len() < MAX_INCLUDED {
                    included.push(found.3);
                    next.push((found.0, found.1, found.2));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(included)
}

type Found = (i64, String, String, u64);

const VISIBLE: &str = "t.position <= ?1 AND (t.superseded_at IS NULL OR t.superseded_at > ?1)";

/// Resources that `frontier` rows refer to through `include`.
fn forward(connection: &Connection, tenant: &str, snapshot: u64, include: &Include, frontier: &[(i64, String, String)]) -> Result<Vec<Found>, IndexError> {
    let mut out = Vec::new();
    let sql = format!(
        "SELECT t.row, t.resource_type, t.id, t.position FROM ix_reference ref
         JOIN resources t ON t.tenant = ?2 AND t.resource_type = ref.target_type AND t.id = ref.target_id
         WHERE ref.row = ?3 AND (?4 IS NULL OR ref.param = ?4) AND (?5 IS NULL OR ref.target_type = ?5) AND {VISIBLE}"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    for (row, resource_type, _) in frontier {
        if include.source_type.as_ref().is_some_and(|source| source != resource_type) {
            continue;
        }
        let rows = statement.query_map(
            rusqlite::params![snapshot as i64, tenant, row, include.param, include.target_type],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64)),
        )?;
        for found in rows {
            out.push(found?);
        }
    }
    Ok(out)
}

/// Resources of `include.source_type` that refer to `frontier` resources through `include.param`.
fn reverse(connection: &Connection, tenant: &str, snapshot: u64, include: &Include, frontier: &[(i64, String, String)]) -> Result<Vec<Found>, IndexError> {
    let mut out = Vec::new();
    let sql = format!(
        "SELECT t.row, t.resource_type, t.id, t.position FROM ix_reference ref
         JOIN resources t ON t.row = ref.row
         WHERE ref.target_id = ?3 AND ref.target_type = ?4 AND (?5 IS NULL OR ref.param = ?5)
           AND (?6 IS NULL OR t.resource_type = ?6) AND t.tenant = ?2 AND {VISIBLE}"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    for (_, resource_type, id) in frontier {
        if include.target_type.as_ref().is_some_and(|target| target != resource_type) {
            continue;
        }
        let rows = statement.query_map(
            rusqlite::params![snapshot as i64, tenant, id, resource_type, include.param, include.source_type],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64)),
        )?;
        for found in rows {
            out.push(found?);
        }
    }
    Ok(out)
}
