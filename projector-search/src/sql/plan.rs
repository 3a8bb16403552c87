//! Which criterion drives a search, decided per query by asking the index, not by statistics.
//!
//! `_id` drives when given. Otherwise each criterion found by equality or prefix in a value
//! index is probed (its rows counted up to [`PROBE_LIMIT`], which reads at most that many index
//! entries); the one listing the fewest drives, ties (and criteria not probed: ranges,
//! substrings, chains) going by their usual selectivity (`driver_rank`).
//!
//! A page in row order whose best criterion is a code that still lists that many
//! (`Observation?status=final`) may do better without a driver: reading the types' resources in
//! row order and testing every criterion on each stops once the page is full, if matches are
//! dense enough. The first [`SAMPLE`] resources of the types tell: if at least one in
//! `DENSE_SHARE` of them matches, the search scans. A total or a sorted page needs every
//! match, so it always drives.

use fhir_core::search::SearchQuery;

use super::criteria::{driver_rank, path_sql, probes, streams_in_row_order, Role};
use super::{from_where, Result, Shape, Sql};

/// Rows a probe counts at most.
pub const PROBE_LIMIT: usize = 1000;
/// Resources sampled to see how dense the matches of an unselective query are.
pub const SAMPLE: usize = 100;
/// A scan is chosen when at least one sampled resource in this many matches.
const DENSE_SHARE: usize = 10;

/// How a search is planned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Planning {
    #[default]
    Auto,
    /// No driver: every criterion is tested per resource. Slow; for tests of that form.
    FiltersOnly,
}

/// The criterion that drives the search for `shape`, if any (an index into `query.criteria`).
/// `count` runs a `SELECT count(*) ...` and returns its value (`None` if it failed).
pub fn choose_driver(
    query: &SearchQuery,
    tenant: &str,
    snapshot: u64,
    shape: Shape,
    planning: Planning,
    count: &mut dyn FnMut(&Sql) -> Option<usize>,
) -> Result<Option<usize>> {
    if planning == Planning::FiltersOnly {
        return Ok(None);
    }
    let ranked: Vec<(u8, usize)> = query
        .criteria
        .iter()
        .enumerate()
        .filter_map(|(index, criterion)| driver_rank(&criterion.path, &criterion.values).map(|rank| (rank, index)))
        .collect();
    if let Some((0, index)) = ranked.iter().min() {
        return Ok(Some(*index));
    }
    let may_scan = shape == Shape::Page && query.sort.is_empty() && !query.types.is_empty();
    if let [(_, index)] = ranked.as_slice() {
        // Nothing to compare it with, and a scan cannot beat it: it drives without a probe.
        let criterion = &query.criteria[*index];
        if !may_scan || streams_in_row_order(&criterion.path, &criterion.values) {
            return Ok(Some(*index));
        }
    }
    // (rows listed, rank, position in the query): the least wins. A criterion that cannot be
    // probed cheaply counts as unselective.
    let mut best: Option<(usize, u8, usize)> = None;
    let mut best_probed = false;
    for &(rank, index) in &ranked {
        let criterion = &query.criteria[index];
        let probed = probes(&criterion.path, &criterion.values);
        let rows = if probed {
            let mut sql = Sql::default();
            sql.push("SELECT count(*) FROM (");
            path_sql(&mut sql, "r", tenant, snapshot, &criterion.path, &criterion.values, Role::Probe)?;
            sql.push(&format!(" LIMIT {PROBE_LIMIT})"));
            count(&sql).unwrap_or(PROBE_LIMIT)
        } else {
            PROBE_LIMIT
        };
        if best.is_none_or(|best| (rows, rank, index) < best) {
            best = Some((rows, rank, index));
            best_probed = probed;
        }
    }
    let Some((rows, rank, index)) = best else { return Ok(None) };
    let criterion = &query.criteria[index];
    // Sampled: a code listing many rows (a reference to one resource rarely is dense; a page
    // driven by an exact token already stops once full, see `from_where`).
    let sampled = best_probed && rows >= PROBE_LIMIT && rank >= 2 && !streams_in_row_order(&criterion.path, &criterion.values);
    if sampled && may_scan {
        let sample = from_where(query, tenant, snapshot, Shape::Sample, None)?;
        let mut sql = sample.sql;
        sql.text = format!("SELECT count(*){}", sql.text);
        if count(&sql).is_some_and(|matching| matching * DENSE_SHARE >= SAMPLE) {
            return Ok(None);
        }
    }
    Ok(Some(index))
}
