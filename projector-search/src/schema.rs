//! The index's tables and their version.
//!
//! `resources` has one row per indexed resource version with the log positions between which it
//! was current: `position` (the event that wrote it) and `superseded_at` (the event of the next
//! version or the delete; NULL while current). A search runs "as of" a snapshot position S and
//! sees the rows with `position <= S AND (superseded_at IS NULL OR superseded_at > S)`, so every
//! page of one search sees the same result set while writes go on.
//!
//! Each `ix_*` table holds the values of one kind, clustered by resource row and parameter
//! (`WITHOUT ROWID`, key `(row, param, seq)`, `seq` numbering a resource's values), so the values
//! of one resource are found by key, and a new resource's values are appended at the end. For
//! composite parameters, `grp` is the occurrence. The value indexes ([`VALUE_INDEXES`]) find rows
//! by value; as secondary indexes of a `WITHOUT ROWID` table they end with the key, so they
//! cover `row` and list the rows of one value in row order. An index built from zero creates
//! them once at the end, by sorting, rather than inserting into them row by row.

/// Bumped when the layout changes; an index file of another version is rebuilt by replay.
pub const SCHEMA_VERSION: i64 = 2;

pub const TABLES: &str = "
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
CREATE TABLE IF NOT EXISTS ix_string (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_token (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    system TEXT, code TEXT NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_text (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    norm TEXT NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_of_type (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    system TEXT, code TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_date (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_number (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_quantity (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_reference (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    target_type TEXT, target_id TEXT, version TEXT, url TEXT, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_uri (row INTEGER NOT NULL, param TEXT NOT NULL, seq INTEGER NOT NULL, grp INTEGER NOT NULL,
    uri TEXT NOT NULL, PRIMARY KEY (row, param, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
";

/// The indexes an index built from zero creates when it has caught up: `(name, definition)`.
pub const VALUE_INDEXES: &[(&str, &str)] = &[
    // Type scans in row order, which is the order results are returned in.
    ("resources_by_type", "resources (tenant, resource_type)"),
    ("ix_string_value", "ix_string (param, norm)"),
    ("ix_token_value", "ix_token (param, code, system)"),
    ("ix_text_value", "ix_text (param, norm)"),
    ("ix_of_type_value", "ix_of_type (param, value)"),
    ("ix_date_value", "ix_date (param, low, high)"),
    ("ix_number_value", "ix_number (param, value)"),
    ("ix_quantity_value", "ix_quantity (param, code, value)"),
    ("ix_reference_target", "ix_reference (target_id, param, target_type)"),
    ("ix_uri_value", "ix_uri (param, uri)"),
];

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
