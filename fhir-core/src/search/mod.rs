//! Search, the parts every backend shares: the typed query parsed from a request
//! ([`query`]), the typed values of each parameter type ([`value`]), escaping ([`escape`]), and
//! what an index stores per resource ([`index`]) and how it is extracted ([`extract`]), and the
//! query model interpreted on one resource in memory ([`matcher`]). [`registry`] holds the search
//! parameters in use: the R4 ones and the custom ones installed at run time.

pub mod escape;
pub mod extract;
pub mod index;
pub mod matcher;
pub mod query;
pub mod registry;
pub mod value;

pub use query::{parse_search, CompartmentFilter, Criterion, Include, Modifier, ParamPath, ParamRef, SearchQuery, SortKey, Total};
pub use value::{Decimal, Prefix, ReferenceValue, SearchValue};
pub use index::{normalize, IndexEntry, IndexValue};
