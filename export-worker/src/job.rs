//! An export job as it is stored: what was asked (the plan), where the worker is (the progress),
//! what it has written (the output), and its state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Accepted,
    Running,
    Completed,
    Failed,
    /// Cancelled by its owner: answered as unknown, its files are removed.
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "accepted",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }
}

/// Which resources an export holds, fixed at kick-off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The types, in the order their files are written.
    pub types: Vec<String>,
    /// Only versions recorded at or after this (Unix ms): `_since`.
    pub since_ms: Option<i64>,
    /// `_typeFilter`: a resource of a type listed here must match one of its queries.
    pub type_filters: BTreeMap<String, Vec<String>>,
    /// Patient and Group exports: only the Patient compartment (Patients themselves, and
    /// resources of its member types that refer to a Patient through their member parameters).
    pub patient_compartment: bool,
    /// Only the compartments of these patients (`patient`, a Group's members, a SMART patient
    /// context); `None`: every patient.
    pub patients: Option<Vec<String>>,
    /// The owner's query-restricted scopes: a resource of a type listed here must match one.
    pub restrictions: BTreeMap<String, Vec<String>>,
}

/// Where a running job is: the next type, the last position written to a finished file (the
/// worker resumes after it), and the next file number. Parts after the last finished one are
/// written again on resume, under the same names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub type_index: usize,
    pub after: u64,
    /// Numbered from 1 within each type.
    pub next_part: u32,
    /// Resources in finished files.
    pub exported: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { type_index: 0, after: 0, next_part: 1, exported: 0 }
    }
}

/// One finished NDJSON file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub resource_type: String,
    /// Its key in the blob store.
    pub key: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportJob {
    pub id: String,
    pub tenant: String,
    /// Who kicked it off: only they may poll, download or cancel it.
    pub owner: String,
    /// The kick-off request's URL, for the manifest.
    pub request: String,
    pub state: JobState,
    /// The log position the export is a snapshot of.
    pub as_of: u64,
    /// The manifest's `transactionTime` (an instant).
    pub transaction_time: String,
    pub plan: Plan,
    pub progress: Progress,
    pub output: Vec<OutputFile>,
    /// Why it failed.
    pub error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

impl ExportJob {
    /// The blob key of file `part` of `resource_type`.
    pub fn file_key(&self, resource_type: &str, part: u32) -> String {
        format!("export/{}/{}/{resource_type}.{part}.ndjson", self.tenant, self.id)
    }

    /// The prefix of every file of the job.
    pub fn key_prefix(&self) -> String {
        format!("export/{}/{}/", self.tenant, self.id)
    }
}
