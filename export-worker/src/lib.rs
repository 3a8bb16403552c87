//! Bulk `$export` jobs (Bulk Data Access IG v2), run in the background.
//!
//! An export is a snapshot of the log as of one position, taken at kick-off: the worker asks a
//! [`source::SnapshotSource`] which versions of each type were current at that position (writes
//! after it are not in the export), reads their bodies from the log a page at a time, keeps those
//! the plan's [`filter::Filter`] accepts, and streams them as NDJSON files into the blob store,
//! one or more per type (a file is closed at `max_file_bytes`). Memory stays the same whatever the
//! size of the export: a page of bodies and one file's buffer.
//!
//! - [`job`]: the stored job (plan, progress, output, state);
//! - [`store`]: the job store port, with [`sqlite`] (embedded) and [`dynamodb`] (AWS);
//!   [`suite`] is the behaviour both pass;
//! - [`worker`]: takes jobs with a lease, resumes after the last finished file, removes the
//!   files of cancelled and expired jobs.
//!
//! The API (`command-api`) kicks jobs off, reports their status and serves the manifest.

pub mod dynamodb;
pub mod filter;
pub mod job;
pub mod source;
pub mod sqlite;
pub mod store;
pub mod suite;
pub mod worker;

pub use job::{ExportJob, JobState, OutputFile, Plan, Progress};
pub use source::SnapshotSource;
pub use store::{JobStore, StoreError};
pub use worker::{Settings, Worker};
