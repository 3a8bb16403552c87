//! Where export jobs are kept: a SQLite file (embedded) or a DynamoDB table (AWS). Workers take
//! jobs with leases, so that several workers share them and a job whose worker died is taken
//! over (and resumed) once its lease runs out.

use async_trait::async_trait;

use crate::job::ExportJob;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the tenant already has {0} exports in progress; wait for one to finish")]
    Busy(usize),
    #[error("the export was cancelled")]
    Cancelled,
    #[error("export job store: {0}")]
    Storage(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Saves a new job, unless its tenant already has `limit` unfinished ones ([`StoreError::Busy`]).
    async fn create(&self, job: &ExportJob, limit: usize) -> Result<()>;
    /// The job, with its current state.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<ExportJob>>;
    /// Saves a job's state, progress and output, and holds its lease until `lease_until_ms`;
    /// [`StoreError::Cancelled`] (saving nothing) if it was cancelled meanwhile.
    async fn save(&self, job: &ExportJob, lease_until_ms: i64) -> Result<()>;
    /// Marks the job cancelled, whatever its state; `false` if there is no such job.
    async fn cancel(&self, tenant: &str, id: &str) -> Result<bool>;
    /// Takes the oldest unfinished job that no other worker holds (its lease is over, or is
    /// `worker`'s own), holding it until `lease_until_ms`.
    async fn claim(&self, worker: &str, now_ms: i64, lease_until_ms: i64) -> Result<Option<ExportJob>>;
    /// Jobs whose files should go: cancelled ones, and finished ones that finished before `before_ms`.
    async fn expired(&self, before_ms: i64) -> Result<Vec<ExportJob>>;
    /// Forgets a job.
    async fn remove(&self, tenant: &str, id: &str) -> Result<()>;
}
