//! The index's tables.
//!
//! `resources` has one row per indexed resource version with the log positions between which it
//! was current: `position` (the event that wrote it) and `superseded_at` (the event of the next
//! version or the delete; NULL while current). A search runs "as of" a snapshot position S and
//! sees the rows with `position <= S AND (superseded_at IS NULL OR superseded_at > S)`, so every
//! page of one search sees the same result set while writes go on. Each `ix_*` table holds the
//! values of one kind, keyed by the resource row, the parameter and, for composite parameters,
//! the occurrence (`grp`).

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    row INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    superseded_at INTEGER,
    UNIQUE (tenant, resource_type, id, version)
);
CREATE INDEX IF NOT EXISTS resources_by_type ON resources (tenant, resource_type, superseded_at);
CREATE TABLE IF NOT EXISTS ix_string (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_string_value ON ix_string (param, norm);
CREATE INDEX IF NOT EXISTS ix_string_row ON ix_string (row, param);
CREATE TABLE IF NOT EXISTS ix_token (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, system TEXT, code TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_token_value ON ix_token (param, code, system);
CREATE INDEX IF NOT EXISTS ix_token_row ON ix_token (row, param);
CREATE TABLE IF NOT EXISTS ix_text (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, norm TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_text_value ON ix_text (param, norm);
CREATE INDEX IF NOT EXISTS ix_text_row ON ix_text (row, param);
CREATE TABLE IF NOT EXISTS ix_of_type (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, system TEXT, code TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_of_type_value ON ix_of_type (param, value);
CREATE INDEX IF NOT EXISTS ix_of_type_row ON ix_of_type (row, param);
CREATE TABLE IF NOT EXISTS ix_date (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ix_date_value ON ix_date (param, low);
CREATE INDEX IF NOT EXISTS ix_date_row ON ix_date (row, param);
CREATE TABLE IF NOT EXISTS ix_number (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ix_number_value ON ix_number (param, value);
CREATE INDEX IF NOT EXISTS ix_number_row ON ix_number (row, param);
CREATE TABLE IF NOT EXISTS ix_quantity (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT);
CREATE INDEX IF NOT EXISTS ix_quantity_value ON ix_quantity (param, code, value);
CREATE INDEX IF NOT EXISTS ix_quantity_row ON ix_quantity (row, param);
CREATE TABLE IF NOT EXISTS ix_reference (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, target_type TEXT, target_id TEXT, version TEXT, url TEXT);
CREATE INDEX IF NOT EXISTS ix_reference_target ON ix_reference (target_id, param, target_type);
CREATE INDEX IF NOT EXISTS ix_reference_row ON ix_reference (row, param);
CREATE TABLE IF NOT EXISTS ix_uri (row INTEGER NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL, uri TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_uri_value ON ix_uri (param, uri);
CREATE INDEX IF NOT EXISTS ix_uri_row ON ix_uri (row, param);
CREATE TABLE IF NOT EXISTS checkpoint (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
";

/// The index table holding values of a parameter type.
pub fn table_for(kind: fhir_core::definitions::SearchParamType) -> &'static str {
    use fhir_core::definitions::SearchParamType as Kind;
    match kind {
        Kind::String => "ix_string",
        Kind::Token => "ix_token",
        Kind::Date => "ix_date",
        Kind::Number => "ix_number",
        Kind::Quantity => "ix_quantity",
        Kind::Reference => "ix_reference",
        Kind::Uri => "ix_uri",
        Kind::Composite | Kind::Special => "ix_token",
    }
}
