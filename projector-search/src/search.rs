//! Running a search on the index: the page of matches at a snapshot, the total when asked, and
//! the `_include` / `_revinclude` resources (`include`). Results are log positions;
//! the caller reads the bodies from the log.

use fhir_core::search::{SearchQuery, Total};
use rusqlite::{params_from_iter, Connection};
use rusqlite::types::Value;

use crate::include::{includes, Resource};
use crate::sql::{choose_driver, from_where, order_by, Filter, Planning, Shape, Sql, Unsupported};
use crate::store::{IndexError, SearchIndex};

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

impl SearchIndex {
    /// Runs `query` for `tenant` as of `page.snapshot`.
    pub fn search(&self, tenant: &str, query: &SearchQuery, page: PageRequest) -> Result<SearchPage, SearchError> {
        let planning = self.planning();
        self.with_reader(|connection| Ok(search_on(connection, planning, tenant, query, page)))?
    }
}

fn search_on(connection: &Connection, planning: Planning, tenant: &str, query: &SearchQuery, page: PageRequest) -> Result<SearchPage, SearchError> {
    let count_only = query.summary == Some(fhir_core::summary::SummaryMode::Count);
    let mut probe = |sql: &Sql| -> Option<usize> {
        let count: i64 = connection.prepare_cached(&sql.text).ok()?.query_row(params_from_iter(sql.args.iter()), |row| row.get(0)).ok()?;
        usize::try_from(count).ok()
    };
    let mut plan = |shape| -> Result<Filter, Unsupported> {
        let driver = choose_driver(query, tenant, page.snapshot, shape, planning, &mut probe)?;
        from_where(query, tenant, page.snapshot, shape, driver)
    };
    let total = if count_only || matches!(query.total, Total::Accurate | Total::Estimate) {
        let filter = plan(Shape::Count)?;
        let sql = format!("SELECT COUNT(*){}", filter.sql.text);
        Some(connection.prepare_cached(&sql)?.query_row(params_from_iter(filter.sql.args.iter()), |row| row.get::<_, i64>(0))? as u64)
    } else {
        None
    };
    if count_only || query.count == 0 {
        return Ok(SearchPage { total, ..SearchPage::default() });
    }
    let mut filter = plan(Shape::Page)?;
    let mut select = String::from("SELECT r.row, r.resource_type, r.id, r.position");
    order_by(&mut select, &mut filter, &query.sort);
    let mut sql = filter.sql;
    sql.text = format!("{select}{} LIMIT ? OFFSET ?", sql.text);
    sql.args.push(Value::Integer(query.count as i64 + 1));
    sql.args.push(Value::Integer(page.offset as i64));
    let mut hits: Vec<Resource> =
        connection.prepare_cached(&sql.text)?.query_map(params_from_iter(sql.args.iter()), Resource::from_row)?.collect::<rusqlite::Result<_>>()?;
    let has_next = hits.len() > query.count;
    hits.truncate(query.count);
    let included = includes(connection, tenant, query, page.snapshot, &hits)?;
    Ok(SearchPage { matches: hits.iter().map(|hit| hit.position).collect(), included, total, has_next })
}
