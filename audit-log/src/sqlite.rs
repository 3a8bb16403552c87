//! The audit trail in a SQLite file of its own: a table that is only ever inserted into, one
//! transaction per batch, in WAL mode with `synchronous = NORMAL`: a committed record survives a
//! crash of the process; a power cut may lose the last ones. (A full fsync per batch made
//! every write wait for a second fsync after the event log's, and cut creates by a third.)

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection};

use crate::{AuditError, AuditQuery, AuditRecord, AuditStore};

pub struct SqliteAuditStore {
    connection: Arc<Mutex<Connection>>,
}

fn failed(error: impl std::fmt::Display) -> AuditError {
    AuditError(error.to_string())
}

impl SqliteAuditStore {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, tenant TEXT NOT NULL, at_ms INTEGER NOT NULL, record TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS audit_by_time ON audit (tenant, at_ms);",
            )
            .map_err(failed)?;
        Ok(SqliteAuditStore { connection: Arc::new(Mutex::new(connection)) })
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&mut Connection) -> Result<T, AuditError> + Send + 'static) -> Result<T, AuditError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || work(&mut *connection.lock().map_err(|_| AuditError("lock poisoned".into()))?)).await.map_err(failed)?
    }
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        let rows: Vec<(String, i64, String)> = records
            .iter()
            .map(|record| Ok((record.tenant.clone(), record.at_ms, serde_json::to_string(record).map_err(failed)?)))
            .collect::<Result<_, AuditError>>()?;
        self.blocking(move |connection| {
            let transaction = connection.transaction().map_err(failed)?;
            {
                let mut insert = transaction.prepare_cached("INSERT INTO audit (tenant, at_ms, record) VALUES (?1, ?2, ?3)").map_err(failed)?;
                for (tenant, at_ms, json) in &rows {
                    insert.execute(params![tenant, at_ms, json]).map_err(failed)?;
                }
            }
            transaction.commit().map_err(failed)
        })
        .await
    }

    async fn query(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let (tenant, query) = (tenant.to_string(), query.clone());
        self.blocking(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT record FROM audit WHERE tenant = ?1 AND at_ms >= ?2 AND at_ms <= ?3 ORDER BY at_ms DESC, seq DESC")
                .map_err(failed)?;
            let rows = statement
                .query_map(params![tenant, query.since_ms.unwrap_or(i64::MIN), query.until_ms.unwrap_or(i64::MAX)], |row| row.get::<_, String>(0))
                .map_err(failed)?;
            let mut found = Vec::new();
            for row in rows {
                let record: AuditRecord = serde_json::from_str(&row.map_err(failed)?).map_err(failed)?;
                if query.matches(&record) {
                    found.push(record);
                    if found.len() >= query.limit {
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
    }
}
