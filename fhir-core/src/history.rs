//! The `_history` query: which versions a history request asks for, parsed once from the query
//! string so that every backend answers the same typed request.

use time::OffsetDateTime;

use crate::instant;
use crate::outcome::{Issue, IssueType};

/// Page size when a request gives no `_count`.
pub const DEFAULT_COUNT: usize = 50;
/// The largest `_count` served; a larger one is refused with a clear error.
pub const MAX_COUNT: usize = 1000;

/// Whose history: the whole server (for a tenant), one type, or one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// `_since`: versions recorded at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// `_at`: versions that were current at some point within `[start, end)`.
    pub at: Option<(OffsetDateTime, OffsetDateTime)>,
    /// `_count`: page size.
    pub count: usize,
    /// Paging cursor: only versions at log positions below this one (newest first).
    pub before: Option<u64>,
}

/// One page of history: log positions, newest first, and the cursor for the next page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub positions: Vec<u64>,
    /// The `_before` value of the next page, when there is one.
    pub next_before: Option<u64>,
}

impl HistoryPage {
    /// The page from positions read newest first, one more than `count` when there are: the
    /// extra one only tells that a next page exists, which starts below the page's last.
    pub fn from_newest(mut positions: Vec<u64>, count: usize) -> Self {
        let next_before = if positions.len() > count {
            positions.truncate(count);
            positions.last().copied()
        } else {
            None
        };
        HistoryPage { positions, next_before }
    }
}

impl HistoryQuery {
    /// Parses the history parameters out of `params`. Parameters that are not history's own
    /// (`_format`, `_pretty`, ...) are left to the caller; unknown `_`-less ones are ignored here.
    pub fn parse(scope: HistoryScope, params: &[(String, String)]) -> Result<Self, Issue> {
        let mut query = HistoryQuery { scope, since: None, at: None, count: DEFAULT_COUNT, before: None };
        for (name, value) in params {
            match name.as_str() {
                "_count" => query.count = parse_count(value)?,
                "_since" => {
                    let (start, _) = instant::parse_range(value)
                        .filter(|_| value.contains('T'))
                        .ok_or_else(|| invalid("_since", "must be an instant such as 2024-01-02T03:04:05Z"))?;
                    query.since = Some(start);
                }
                "_at" => {
                    query.at = Some(
                        instant::parse_range(value)
                            .ok_or_else(|| invalid("_at", "must be a date, dateTime or instant"))?,
                    );
                }
                "_before" => {
                    query.before = Some(value.parse().map_err(|_| invalid("_before", "must be a paging cursor from a next link"))?);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Parses `_count`: a non-negative integer no larger than [`MAX_COUNT`].
pub fn parse_count(value: &str) -> Result<usize, Issue> {
    let count: usize = value.parse().map_err(|_| invalid("_count", "must be a non-negative integer"))?;
    if count > MAX_COUNT {
        return Err(Issue::error(IssueType::TooCostly, format!("_count may be at most {MAX_COUNT}")).at("_count"));
    }
    Ok(count)
}

fn invalid(parameter: &str, why: &str) -> Issue {
    Issue::error(IssueType::Invalid, format!("parameter {parameter} {why}")).at(parameter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_all_parameters() {
        let query = HistoryQuery::parse(
            HistoryScope::Type("Patient".into()),
            &params(&[("_count", "10"), ("_since", "2024-01-02T03:04:05Z"), ("_at", "2024"), ("_before", "77")]),
        )
        .unwrap();
        assert_eq!(query.count, 10);
        assert_eq!(query.since, Some(datetime!(2024-01-02 03:04:05 UTC)));
        assert_eq!(query.at, Some((datetime!(2024-01-01 0:00 UTC), datetime!(2025-01-01 0:00 UTC))));
        assert_eq!(query.before, Some(77));
    }

    #[test]
    fn defaults_and_limits() {
        let query = HistoryQuery::parse(HistoryScope::System, &[]).unwrap();
        assert_eq!(query.count, DEFAULT_COUNT);
        let too_many = HistoryQuery::parse(HistoryScope::System, &params(&[("_count", "1001")])).unwrap_err();
        assert_eq!(too_many.code, IssueType::TooCostly);
        assert!(HistoryQuery::parse(HistoryScope::System, &params(&[("_count", "-1")])).is_err());
        assert!(HistoryQuery::parse(HistoryScope::System, &params(&[("_since", "2024-01-02")])).is_err());
        assert!(HistoryQuery::parse(HistoryScope::System, &params(&[("_at", "yesterday")])).is_err());
    }
}
