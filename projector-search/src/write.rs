//! Writing one event's rows inside the projector's transaction, idempotently: a version already
//! indexed changes nothing, a new version supersedes the current one, a delete only supersedes.

use event_log::{Event, Operation};
use fhir_core::instant::unix_millis;
use fhir_core::search::{IndexEntry, IndexValue};
use rusqlite::{params, CachedStatement, Connection};

use crate::store::Result;

/// The statements of one write transaction, prepared once for all its events.
pub(crate) struct Writer<'c> {
    insert_resource: CachedStatement<'c>,
    supersede: CachedStatement<'c>,
    string: CachedStatement<'c>,
    token: CachedStatement<'c>,
    text: CachedStatement<'c>,
    of_type: CachedStatement<'c>,
    date: CachedStatement<'c>,
    number: CachedStatement<'c>,
    quantity: CachedStatement<'c>,
    reference: CachedStatement<'c>,
    uri: CachedStatement<'c>,
}

impl<'c> Writer<'c> {
    pub(crate) fn new(connection: &'c Connection) -> Result<Self> {
        Ok(Writer {
            // A version already indexed is ignored by its unique key.
            insert_resource: connection.prepare_cached(
                "INSERT OR IGNORE INTO resources (tenant, resource_type, id, version, position, last_updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            supersede: connection.prepare_cached(
                "UPDATE resources SET superseded_at = ?4
                 WHERE tenant = ?1 AND resource_type = ?2 AND id = ?3 AND superseded_at IS NULL AND version < ?5",
            )?,
            string: connection.prepare_cached("INSERT INTO ix_string (row, param, seq, grp, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?,
            token: connection.prepare_cached("INSERT INTO ix_token (row, param, seq, grp, system, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?,
            text: connection.prepare_cached("INSERT INTO ix_text (row, param, seq, grp, norm) VALUES (?1, ?2, ?3, ?4, ?5)")?,
            of_type: connection
                .prepare_cached("INSERT INTO ix_of_type (row, param, seq, grp, system, code, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?,
            date: connection.prepare_cached("INSERT INTO ix_date (row, param, seq, grp, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?,
            number: connection
                .prepare_cached("INSERT INTO ix_number (row, param, seq, grp, value, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?,
            quantity: connection.prepare_cached(
                "INSERT INTO ix_quantity (row, param, seq, grp, value, low, high, system, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
            reference: connection.prepare_cached(
                "INSERT INTO ix_reference (row, param, seq, grp, target_type, target_id, version, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            uri: connection.prepare_cached("INSERT INTO ix_uri (row, param, seq, grp, uri) VALUES (?1, ?2, ?3, ?4, ?5)")?,
        })
    }

    /// Applies one event with its extracted values (none for a delete).
    pub(crate) fn apply(&mut self, connection: &Connection, event: &Event, entries: &[IndexEntry]) -> Result<()> {
        let key = &event.key;
        let version = event.version as i64;
        let position = event.position as i64;
        if event.operation == Operation::Delete {
            self.supersede.execute(params![key.tenant, key.resource_type, key.id, position, version])?;
            return Ok(());
        }
        let inserted = self
            .insert_resource
            .execute(params![key.tenant, key.resource_type, key.id, version, position, unix_millis(event.recorded_at)])?;
        if inserted == 0 {
            return Ok(());
        }
        let row = connection.last_insert_rowid();
        // Version 1 is a stream's first event: there is nothing before it to supersede.
        if version > 1 {
            self.supersede.execute(params![key.tenant, key.resource_type, key.id, position, version])?;
        }
        for (seq, entry) in entries.iter().enumerate() {
            self.insert_entry(row, seq as i64, entry)?;
        }
        Ok(())
    }

    fn insert_entry(&mut self, row: i64, seq: i64, entry: &IndexEntry) -> Result<()> {
        let (param, grp) = (entry.param.as_str(), entry.group as i64);
        match &entry.value {
            IndexValue::String { normalized, exact } => self.string.execute(params![row, param, seq, grp, normalized, exact])?,
            IndexValue::Token { system, code } => self.token.execute(params![row, param, seq, grp, system, code])?,
            IndexValue::Text { normalized } => self.text.execute(params![row, param, seq, grp, normalized])?,
            IndexValue::OfType { system, code, value } => self.of_type.execute(params![row, param, seq, grp, system, code, value])?,
            IndexValue::Date { low, high } => self.date.execute(params![row, param, seq, grp, low, high])?,
            IndexValue::Number { value, low, high } => self.number.execute(params![row, param, seq, grp, value, low, high])?,
            IndexValue::Quantity { value, low, high, system, code, .. } => {
                self.quantity.execute(params![row, param, seq, grp, value, low, high, system, code])?
            }
            IndexValue::Reference { resource_type, id, version, url } => {
                self.reference.execute(params![row, param, seq, grp, resource_type, id, version, url])?
            }
            IndexValue::Uri(uri) => self.uri.execute(params![row, param, seq, grp, uri])?,
        };
        Ok(())
    }
}
