//! Search, the parts every backend shares: the typed query parsed from a request
//! ([`query`]), the typed values of each parameter type ([`value`]), and escaping ([`escape`]).

pub mod escape;
pub mod query;
pub mod value;

pub use query::{parse_search, Criterion, Include, Modifier, ParamPath, ParamRef, SearchQuery, SortKey, Total};
pub use value::{Decimal, Prefix, ReferenceValue, SearchValue};
