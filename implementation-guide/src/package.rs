//! Reading a FHIR package: the npm-style tarball (`.tgz`) of the FHIR package specification,
//! with `package/package.json` (name, version, dependencies) and one JSON resource per file
//! under `package/`. Only the conformance resources this server uses are kept:
//! StructureDefinition, ValueSet, CodeSystem, SearchParameter and ImplementationGuide.
//! Examples (`package/example/`) and other folders are skipped.
//!
//! The tarball is untrusted input: its compressed and unpacked sizes are bounded, and a member
//! that is not valid JSON is an error naming the file.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

/// The largest tarball accepted.
pub const MAX_PACKAGE_BYTES: usize = 64 * 1024 * 1024;
/// The most a tarball may unpack to (all members together).
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;

/// Resource types a package contributes.
pub const CONFORMANCE_TYPES: &[&str] = &["StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "ImplementationGuide"];

/// A package that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the package is larger than {MAX_PACKAGE_BYTES} bytes")]
    TooLarge,
    #[error("the package unpacks to more than {MAX_UNPACKED_BYTES} bytes")]
    UnpacksTooLarge,
    #[error("the package is not a gzip-compressed tar file: {0}")]
    NotATarball(String),
    #[error("the package has no package/package.json")]
    NoManifest,
    #[error("{file}: {reason}")]
    BadFile { file: String, reason: String },
    #[error("package.json: {0}")]
    BadManifest(String),
}

/// A package's identity and what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub title: Option<String>,
    /// Canonical base of the guide (`http://hl7.org/fhir/us/core`).
    pub canonical: Option<String>,
    /// FHIR versions the package is for (`4.0.1`).
    pub fhir_versions: Vec<String>,
    /// Package name to version (exact, or with `x` wildcards: `1.1.x`).
    pub dependencies: BTreeMap<String, String>,
}

impl Manifest {
    /// `name#version`, the package's usual written form.
    pub fn id(&self) -> String {
        format!("{}#{}", self.name, self.version)
    }
}

/// A read package: its manifest and its conformance resources.
#[derive(Clone, Debug)]
pub struct Package {
    pub manifest: Manifest,
    pub resources: Vec<Value>,
}

impl Package {
    /// Reads a package from its tarball bytes.
    pub fn from_tgz(bytes: &[u8]) -> Result<Package, PackageError> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge);
        }
        let decoder = flate2::read::GzDecoder::new(bytes);
        let mut archive = tar::Archive::new(decoder.take(MAX_UNPACKED_BYTES + 1));
        let mut manifest = None;
        let mut resources = Vec::new();
        let mut unpacked = 0u64;
        let entries = archive.entries().map_err(|e| PackageError::NotATarball(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| PackageError::NotATarball(e.to_string()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(|e| PackageError::NotATarball(e.to_string()))?.to_string_lossy().into_owned();
            let Some(name) = member_name(&path) else { continue };
            unpacked += entry.size();
            if unpacked > MAX_UNPACKED_BYTES {
                return Err(PackageError::UnpacksTooLarge);
            }
            let mut text = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut text).map_err(|e| PackageError::NotATarball(e.to_string()))?;
            let bad = |reason: String| PackageError::BadFile { file: path.clone(), reason };
            let value: Value = serde_json::from_slice(strip_bom(&text)).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            if name == "package.json" {
                manifest = Some(parse_manifest(&value)?);
            } else if name != ".index.json" && is_conformance(&value) {
                resources.push(value);
            }
        }
        let manifest = manifest.ok_or(PackageError::NoManifest)?;
        Ok(Package { manifest, resources })
    }

    /// The package's resources of one type.
    pub fn resources_of<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources.iter().filter(move |r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type))
    }
}

/// Packs a package folder (one holding `package/package.json`) into a tarball, as `npm pack`
/// would: so that a package under development can be installed without packing it first.
pub fn pack_dir(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.append_dir_all("package", dir.join("package"))?;
    builder.into_inner()?.finish()
}

/// The file name of a member directly in `package/` that ends in `.json`; other members
/// (examples, `other/`, `openapi/`, XML) are not read.
fn member_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix("package/")?;
    (!name.contains('/') && name.ends_with(".json")).then_some(name)
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes)
}

fn is_conformance(resource: &Value) -> bool {
    resource.get("resourceType").and_then(Value::as_str).is_some_and(|t| CONFORMANCE_TYPES.contains(&t))
}

fn parse_manifest(value: &Value) -> Result<Manifest, PackageError> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(String::from);
    let name = text("name").filter(|n| is_package_name(n)).ok_or_else(|| PackageError::BadManifest("`name` is missing or not a package name".into()))?;
    let version = text("version").filter(|v| !v.is_empty() && !v.contains(['/', '#', ' '])).ok_or_else(|| PackageError::BadManifest("`version` is missing".into()))?;
    let mut dependencies = BTreeMap::new();
    if let Some(listed) = value.get("dependencies") {
        let listed = listed.as_object().ok_or_else(|| PackageError::BadManifest("`dependencies` is not an object".into()))?;
        for (dependency, version) in listed {
            let version = version.as_str().ok_or_else(|| PackageError::BadManifest(format!("the version of dependency {dependency} is not a string")))?;
            dependencies.insert(dependency.clone(), version.to_string());
        }
    }
    let fhir_versions = value
        .get("fhirVersions")
        .and_then(Value::as_array)
        .map(|versions| versions.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    Ok(Manifest { name, version, title: text("title"), canonical: text("canonical"), fhir_versions, dependencies })
}

/// Package names are lower-case npm names: letters, digits, `.`, `-`, `_`, with an optional
/// `@scope/`.
pub fn is_package_name(name: &str) -> bool {
    let bare = match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, rest)) if !scope.is_empty() => rest,
            _ => return false,
        },
        None => name,
    };
    !bare.is_empty() && bare.len() <= 214 && bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// Whether an installed `version` satisfies a dependency's `wanted` version: equal, or equal
/// where `wanted` has `x` or `*` (`4.0.x`), or `wanted` is `current`/`dev` (any).
pub fn version_satisfies(wanted: &str, version: &str) -> bool {
    if matches!(wanted, "current" | "dev" | "latest" | "*") || wanted == version {
        return true;
    }
    let wanted: Vec<&str> = wanted.split('.').collect();
    let have: Vec<&str> = version.split('.').collect();
    wanted.len() <= have.len() && wanted.iter().zip(&have).all(|(w, h)| matches!(*w, "x" | "X" | "*") || w == h) && wanted.last().is_some_and(|w| matches!(*w, "x" | "X" | "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_satisfies("4.0.1", "4.0.1"));
        assert!(version_satisfies("4.0.x", "4.0.1"));
        assert!(version_satisfies("current", "9.9.9"));
        assert!(!version_satisfies("4.0.1", "4.0.2"));
        assert!(!version_satisfies("4.0.x", "4.1.0"));
        assert!(!version_satisfies("4.x", "5.0.0"));
    }

    #[test]
    fn names() {
        assert!(is_package_name("hl7.fhir.us.core"));
        assert!(is_package_name("@scope/name"));
        assert!(!is_package_name("Upper.Case"));
        assert!(!is_package_name("../x"));
        assert!(!is_package_name(""));
    }

    #[test]
    fn garbage_is_not_a_package() {
        assert!(matches!(Package::from_tgz(b"not gzip"), Err(PackageError::NotATarball(_))));
    }
}
