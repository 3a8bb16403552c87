//! Input files cut into units of work, each one request to the API: a Bundle file is one unit
//! (its transaction or batch as it is), an NDJSON file is cut into batches of [`NDJSON_CHUNK`]
//! lines. Every unit is made idempotent so that importing twice never duplicates a resource:
//! creates become updates under ids derived from the input (see [`bundle_id`], or a hash of the
//! file and line), which a second run writes again as a new version of the same resource.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Lines of an NDJSON file per batch request.
pub const NDJSON_CHUNK: usize = 500;

/// One request's worth of an input file.
pub struct Unit {
    /// The file's content hash (the key of its progress).
    pub file: String,
    /// Position of the unit in its file.
    pub index: usize,
    /// The Bundle to POST to the base.
    pub bundle: Value,
    /// What each entry is in the file, for error messages: `entry 3` or `line 1207`.
    pub origins: Vec<String>,
    /// Resources in the unit.
    pub resources: usize,
    /// Lines that could not be sent at all (not JSON, no resourceType), with why.
    pub unreadable: Vec<(String, String)>,
}

/// Reads a file and cuts it into units. `.ndjson` (or `.jsonl`) files hold one resource per
/// line; anything else must be one Bundle of type transaction or batch.
pub fn read_units(path: &Path) -> anyhow::Result<Vec<Unit>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = hex(&Sha256::digest(&bytes));
    let ndjson = path.extension().is_some_and(|e| e == "ndjson" || e == "jsonl");
    if ndjson {
        ndjson_units(path, &file, &bytes)
    } else {
        Ok(vec![bundle_unit(path, &file, &bytes)?])
    }
}

fn bundle_unit(path: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<Unit> {
    let mut bundle: Value = serde_json::from_slice(bytes).with_context(|| format!("{} is not JSON", path.display()))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        bail!("{} is not a Bundle (NDJSON files need the .ndjson extension)", path.display());
    }
    if !matches!(bundle.get("type").and_then(Value::as_str), Some("transaction" | "batch")) {
        bail!("{} is a Bundle but not a transaction or batch", path.display());
    }
    let entries = bundle.get_mut("entry").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
    let origins = (0..entries.len()).map(|index| format!("entry {index}")).collect();
    let resources = entries.len();
    let first_full_url = entries.iter().find_map(|entry| entry["fullUrl"].as_str()).unwrap_or(file).to_ascii_lowercase();
    let cluster = Sha256::digest(first_full_url.as_bytes());
    bundle["entry"] = Value::Array(entries.into_iter().map(|entry| creates_become_updates(entry, &cluster[..CLUSTER_BYTES])).collect());
    Ok(Unit { file: file.to_string(), index: 0, bundle, origins, resources, unreadable: Vec::new() })
}

/// A plain `POST Type` whose fullUrl is `urn:uuid:X` becomes `PUT Type/{bundle_id(cluster, X)}`:
/// the same resource on every run. Conditional creates (`ifNoneExist`) are idempotent already
/// and stay.
fn creates_become_updates(mut entry: Value, cluster: &[u8]) -> Value {
    let request = &entry["request"];
    let plain_post = request["method"] == "POST" && request.get("ifNoneExist").is_none();
    let resource_type = request["url"].as_str().filter(|url| !url.contains(['/', '?'])).map(String::from);
    let uuid = entry["fullUrl"].as_str().and_then(|url| url.strip_prefix("urn:uuid:"));
    if let (true, Some(resource_type), Some(uuid)) = (plain_post, resource_type, uuid) {
        let id = bundle_id(cluster, uuid);
        entry["request"] = json!({ "method": "PUT", "url": format!("{resource_type}/{id}") });
        if let Some(resource) = entry.get_mut("resource").and_then(Value::as_object_mut) {
            resource.insert("id".into(), Value::String(id));
        }
    }
    entry
}

/// Bytes of an imported id shared by every resource of one Bundle file.
const CLUSTER_BYTES: usize = 6;

/// The id an imported `urn:uuid:` create gets: a UUID (version 8, the custom layout) whose first
/// [`CLUSTER_BYTES`] come from the bundle (a hash of its first fullUrl) and whose rest from a hash
/// of the entry's own uuid. It is the same on every run, so re-imports update rather than
/// duplicate; and since a bundle's resources share a prefix, they sit together in every index
/// keyed by id. Keeping the random uuids themselves scattered each bundle's thousands of
/// inserts over every index page, which made a Synthea import a third slower.
fn bundle_id(cluster: &[u8], uuid: &str) -> String {
    let entry = Sha256::digest(uuid.to_ascii_lowercase().as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..CLUSTER_BYTES].copy_from_slice(&cluster[..CLUSTER_BYTES]);
    bytes[CLUSTER_BYTES..].copy_from_slice(&entry[..16 - CLUSTER_BYTES]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

fn ndjson_units(path: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<Vec<Unit>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).map(|(n, line)| (n + 1, line)).collect();
    let mut units = Vec::new();
    for (index, chunk) in lines.chunks(NDJSON_CHUNK).enumerate() {
        let mut entries = Vec::with_capacity(chunk.len());
        let mut origins = Vec::with_capacity(chunk.len());
        let mut unreadable = Vec::new();
        for (line_number, line) in chunk {
            match line_entry(file, *line_number, line) {
                Ok(entry) => {
                    origins.push(format!("line {line_number}"));
                    entries.push(entry);
                }
                Err(why) => unreadable.push((format!("line {line_number}"), why.to_string())),
            }
        }
        let resources = chunk.len();
        let bundle = json!({ "resourceType": "Bundle", "type": "batch", "entry": entries });
        units.push(Unit { file: file.to_string(), index, bundle, origins, resources, unreadable });
    }
    Ok(units)
}

/// A line becomes `PUT Type/id` (its own id, or one derived from the file and line).
fn line_entry(file: &str, line_number: usize, line: &str) -> Result<Value, &'static str> {
    let Ok(Value::Object(mut resource)) = serde_json::from_str::<Value>(line) else {
        return Err("not a JSON object");
    };
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str).map(String::from) else {
        return Err("no resourceType");
    };
    let id = match resource.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => {
            let id = hex(&Sha256::digest(format!("{file}:{line_number}").as_bytes()))[..32].to_string();
            resource.insert("id".into(), Value::String(id.clone()));
            id
        }
    };
    Ok(json!({ "resource": resource, "request": { "method": "PUT", "url": format!("{resource_type}/{id}") } }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_with_uuid_full_urls_become_updates_under_clustered_ids() {
        let create = |uuid: &str, cluster: &[u8]| {
            creates_become_updates(
                json!({"fullUrl": format!("urn:uuid:{uuid}"), "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}),
                cluster,
            )
        };
        let entry = create("AB12-cd", b"bundle");
        let id = entry["resource"]["id"].as_str().unwrap().to_string();
        assert_eq!(entry["request"], json!({"method": "PUT", "url": format!("Patient/{id}")}));
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(&parsed.as_bytes()[..CLUSTER_BYTES], b"bundle");
        assert_eq!(create("ab12-CD", b"bundle")["resource"]["id"], id, "the same on every run, whatever the case");
        let sibling = create("ab12-ce", b"bundle")["resource"]["id"].as_str().unwrap().to_string();
        assert_ne!(sibling, id);
        assert_eq!(sibling[..12], id[..12], "one bundle's resources share a prefix");
        assert_ne!(create("ab12-cd", b"other!")["resource"]["id"], id);
        let conditional = json!({"fullUrl": "urn:uuid:1", "resource": {}, "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=x"}});
        assert_eq!(creates_become_updates(conditional.clone(), b"bundle"), conditional);
    }

    #[test]
    fn ndjson_lines_get_stable_ids() {
        let first = line_entry("f", 3, r#"{"resourceType":"Patient"}"#).unwrap();
        let again = line_entry("f", 3, r#"{"resourceType":"Patient"}"#).unwrap();
        let other = line_entry("f", 4, r#"{"resourceType":"Patient"}"#).unwrap();
        assert_eq!(first, again);
        assert_ne!(first["request"]["url"], other["request"]["url"]);
        assert_eq!(line_entry("f", 1, r#"{"resourceType":"Patient","id":"p1"}"#).unwrap()["request"]["url"], "Patient/p1");
        assert!(line_entry("f", 1, "nonsense").is_err());
    }
}
