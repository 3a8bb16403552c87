//! FHIR R4 semantics that every component must agree on.
//!
//! Layout:
//! - [`outcome`]: OperationOutcome issues, the one way errors are reported.
//! - [`definitions`]: the R4 StructureDefinitions, SearchParameters and value sets, loaded from a
//!   compact data file generated from the official `hl7.fhir.r4.examples@4.0.1` package
//!   (`scripts/gen-definitions`), so a build needs no network.
//! - [`validation`]: validation of a resource against the StructureDefinitions.
//! - [`summary`]: `_summary` and `_elements` views of a resource.
//! - [`instant`]: FHIR dates and instants as time ranges.
//! - [`history`]: the typed `_history` query.

pub mod history;
pub mod instant;
pub mod definitions;
pub mod outcome;

pub use outcome::{operation_outcome, Issue, IssueType, Severity};
