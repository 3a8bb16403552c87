//! Export jobs in a SQLite file (embedded mode): one row per job, its JSON beside the columns
//! the store queries by.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use crate::job::{ExportJob, JobState};
use crate::store::{JobStore, Result, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    job TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
";

const UNFINISHED: &str = "('accepted', 'running')";

fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(error.to_string())
}

pub struct SqliteJobStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteJobStore {
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(storage)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(storage)?;
        connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(storage)?;
        connection.execute_batch(SCHEMA).map_err(storage)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    async fn with<T: Send + 'static>(&self, work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| StoreError::Storage("lock poisoned".into()))?;
            work(&mut connection)
        })
        .await
        .map_err(storage)?
    }
}

fn decode(json: String, state: String) -> Result<ExportJob> {
    let mut job: ExportJob = serde_json::from_str(&json).map_err(storage)?;
    if state == JobState::Cancelled.as_str() {
        job.state = JobState::Cancelled;
    }
    Ok(job)
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create(&self, job: &ExportJob, limit: usize) -> Result<()> {
        let json = serde_json::to_string(job).map_err(storage)?;
        let job = job.clone();
        self.with(move |connection| {
            let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(storage)?;
            let active: i64 = transaction
                .query_row(&format!("SELECT count(*) FROM jobs WHERE tenant = ?1 AND state IN {UNFINISHED}"), [&job.tenant], |row| row.get(0))
                .map_err(storage)?;
            if active as usize >= limit {
                return Err(StoreError::Busy(limit));
            }
            transaction
                .execute(
                    "INSERT INTO jobs (tenant, id, state, created_ms, job) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![job.tenant, job.id, job.state.as_str(), job.created_ms, json],
                )
                .map_err(storage)?;
            transaction.commit().map_err(storage)
        })
        .await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<ExportJob>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |connection| {
            let row: Option<(String, String)> = connection
                .query_row("SELECT job, state FROM jobs WHERE tenant = ?1 AND id = ?2", params![tenant, id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(storage)?;
            row.map(|(json, state)| decode(json, state)).transpose()
        })
        .await
    }

    async fn save(&self, job: &ExportJob, lease_until_ms: i64) -> Result<()> {
        let json = serde_json::to_string(job).map_err(storage)?;
        let job = job.clone();
        self.with(move |connection| {
            let changed = connection
                .execute(
                    "UPDATE jobs SET state = ?3, finished_ms = ?4, lease_until = ?5, job = ?6 WHERE tenant = ?1 AND id = ?2 AND state != 'cancelled'",
                    params![job.tenant, job.id, job.state.as_str(), job.finished_ms, lease_until_ms, json],
                )
                .map_err(storage)?;
            if changed == 0 {
                return Err(StoreError::Cancelled);
            }
            Ok(())
        })
        .await
    }

    async fn cancel(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |connection| {
            let changed = connection
                .execute("UPDATE jobs SET state = 'cancelled' WHERE tenant = ?1 AND id = ?2", params![tenant, id])
                .map_err(storage)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn claim(&self, worker: &str, now_ms: i64, lease_until_ms: i64) -> Result<Option<ExportJob>> {
        let worker = worker.to_string();
        self.with(move |connection| {
            let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(storage)?;
            let row: Option<(String, String, String, String)> = transaction
                .query_row(
                    &format!(
                        "SELECT tenant, id, job, state FROM jobs WHERE state IN {UNFINISHED} AND (lease_until < ?1 OR lease_owner = ?2)
                         ORDER BY created_ms LIMIT 1"
                    ),
                    params![now_ms, worker],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .map_err(storage)?;
            let Some((tenant, id, json, state)) = row else { return Ok(None) };
            transaction
                .execute("UPDATE jobs SET lease_owner = ?3, lease_until = ?4 WHERE tenant = ?1 AND id = ?2", params![tenant, id, worker, lease_until_ms])
                .map_err(storage)?;
            transaction.commit().map_err(storage)?;
            decode(json, state).map(Some)
        })
        .await
    }

    async fn expired(&self, before_ms: i64) -> Result<Vec<ExportJob>> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare("SELECT job, state FROM jobs WHERE state = 'cancelled' OR (state IN ('completed', 'failed') AND finished_ms < ?1)")
                .map_err(storage)?;
            let rows = statement.query_map([before_ms], |row| Ok((row.get(0)?, row.get(1)?))).map_err(storage)?;
            let mut jobs = Vec::new();
            for row in rows {
                let (json, state) = row.map_err(storage)?;
                jobs.push(decode(json, state)?);
            }
            Ok(jobs)
        })
        .await
    }

    async fn remove(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |connection| {
            connection.execute("DELETE FROM jobs WHERE tenant = ?1 AND id = ?2", params![tenant, id]).map_err(storage)?;
            Ok(())
        })
        .await
    }
}
