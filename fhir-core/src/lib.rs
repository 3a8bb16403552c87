//! FHIR R4 semantics that every component must agree on.
//!
//! Layout:
//! - [`outcome`]: OperationOutcome issues, the one way errors are reported.
//! - [`definitions`]: the R4 StructureDefinitions, SearchParameters and value sets, loaded from a
//!   compact data file generated from the official `hl7.fhir.r4.examples@4.0.1` package
//!   (`scripts/gen-definitions`), so a build needs no network.
//! - [`validation`]: validation of a resource against the StructureDefinitions.
//! - [`fhirpath`]: FHIRPath evaluation over JSON resources, for search parameter expressions and
//!   the invariants of profiles.
//! - [`fhirpath_patch`]: FHIRPath Patch (a `Parameters` of operations) applied to a resource.
//! - [`summary`]: `_summary` and `_elements` views of a resource.
//! - [`instant`]: FHIR dates and instants as time ranges.
//! - [`history`]: the typed `_history` query.
//! - [`search`]: the typed search query and search values, shared by every search backend, and
//!   the registry of the search parameters in use (the spec's and custom ones).

pub mod history;
pub mod instant;
pub mod definitions;
pub mod fhirpath;
pub mod fhirpath_patch;
pub mod outcome;
pub mod search;
pub mod summary;
pub mod validation;

pub use definitions::r4;
pub use outcome::{operation_outcome, Issue, IssueType, Severity};
pub use summary::{select_elements, summarize, SummaryMode};
pub use validation::{validate_as, validate_resource};
