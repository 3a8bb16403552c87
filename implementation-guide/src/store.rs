//! The packages installed in a server's data directory (`packages/NAME#VERSION.tgz`), and the
//! resolution of dependencies between packages.
//!
//! One version of a package is installed at a time: installing another version replaces it.
//! A package another installed package depends on is not removed.
//! A dependency is met by an installed (or configured) package of that name whose version
//! satisfies the wanted one (see [`crate::package::version_satisfies`]). `hl7.fhir.r4.core`
//! 4.0.x is built into the server and always met. A missing dependency is an error, unless the
//! install explicitly allows it: then it is reported, and what the package needs from it
//! (profiles it derives from, ValueSets it binds to) is simply not checked.

use std::path::{Path, PathBuf};

use crate::package::{version_satisfies, Manifest, Package, PackageError};

/// Packages the server has built in, with the version pattern it provides.
const BUILT_IN: &[(&str, &str)] = &[("hl7.fhir.r4.core", "4.0.1")];

/// What cannot be installed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Package(#[from] PackageError),
    #[error("{}", .0.join("; "))]
    Unresolved(Vec<String>),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The packages directory of a data directory.
pub struct PackageStore {
    dir: PathBuf,
}

/// The outcome of an install.
#[derive(Debug)]
pub struct Installed {
    pub manifest: Manifest,
    /// The version this one replaced.
    pub replaced: Option<String>,
    /// Dependencies allowed to be missing.
    pub missing: Vec<String>,
}

impl PackageStore {
    pub fn new(data_dir: &Path) -> PackageStore {
        PackageStore { dir: data_dir.join("packages") }
    }

    /// Every installed package, in name order; a file that cannot be read is an error.
    pub fn load(&self) -> Result<Vec<Package>, StoreError> {
        let mut packages = Vec::new();
        for path in self.files()? {
            let bytes = std::fs::read(&path).map_err(|e| StoreError::Io(path.display().to_string(), e))?;
            packages.push(Package::from_tgz(&bytes).map_err(|e| StoreError::Unresolved(vec![format!("{}: {e}", path.display())]))?);
        }
        Ok(packages)
    }

    fn files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(StoreError::Io(self.dir.display().to_string(), error)),
        };
        let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "tgz")).collect();
        files.sort();
        Ok(files)
    }

    /// Installs a package tarball, checking its dependencies against the installed packages
    /// and `also` (packages configured beside the store).
    pub fn install(&self, bytes: &[u8], allow_missing: bool, also: &[Package]) -> Result<(Package, Installed), StoreError> {
        let package = Package::from_tgz(bytes)?;
        let manifest = package.manifest.clone();
        let mut installed = self.load()?;
        let replaced = installed.iter().find(|p| p.manifest.name == manifest.name).map(|p| p.manifest.version.clone());
        installed.retain(|p| p.manifest.name != manifest.name);
        let mut available: Vec<&Manifest> = installed.iter().chain(also).map(|p| &p.manifest).collect();
        available.push(&manifest);
        let missing = missing_dependencies(&manifest, &available);
        if !missing.is_empty() && !allow_missing {
            return Err(StoreError::Unresolved(missing));
        }
        check_fhir_version(&manifest).map_err(|why| StoreError::Unresolved(vec![why]))?;
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::Io(self.dir.display().to_string(), e))?;
        let file = self.dir.join(format!("{}.tgz", file_stem(&manifest)));
        let temporary = self.dir.join(format!(".{}.tmp", file_stem(&manifest)));
        std::fs::write(&temporary, bytes).map_err(|e| StoreError::Io(temporary.display().to_string(), e))?;
        std::fs::rename(&temporary, &file).map_err(|e| StoreError::Io(file.display().to_string(), e))?;
        if let Some(old) = &replaced {
            if old != &manifest.version {
                let old = Manifest { version: old.clone(), ..manifest.clone() };
                let _ = std::fs::remove_file(self.dir.join(format!("{}.tgz", file_stem(&old))));
            }
        }
        Ok((package, Installed { manifest, replaced, missing }))
    }

    /// Removes the installed package `name`, unless another installed package needs it.
    /// Returns what was removed.
    pub fn remove(&self, name: &str) -> Result<Manifest, StoreError> {
        let installed = self.load()?;
        let removed = installed.iter().find(|p| p.manifest.name == name).map(|p| p.manifest.clone()).ok_or_else(|| StoreError::Unresolved(vec![format!("{name} is not installed")]))?;
        let rest: Vec<&Manifest> = installed.iter().map(|p| &p.manifest).filter(|m| m.name != name).collect();
        let needed: Vec<String> = installed
            .iter()
            .filter(|p| p.manifest.name != name && p.manifest.dependencies.contains_key(name))
            .filter(|p| missing_dependencies(&p.manifest, &rest).iter().any(|why| why.contains(&format!(" needs {name}#"))))
            .map(|p| format!("{} needs {}", p.manifest.id(), removed.id()))
            .collect();
        if !needed.is_empty() {
            return Err(StoreError::Unresolved(needed));
        }
        let file = self.dir.join(format!("{}.tgz", file_stem(&removed)));
        std::fs::remove_file(&file).map_err(|e| StoreError::Io(file.display().to_string(), e))?;
        Ok(removed)
    }
}

/// `name#version` made safe for a file name (scoped names lose their `/`).
fn file_stem(manifest: &Manifest) -> String {
    format!("{}#{}", manifest.name.replace('/', "__"), manifest.version)
}

/// The dependencies of one package that `available` does not meet, described.
pub fn missing_dependencies(manifest: &Manifest, available: &[&Manifest]) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, wanted) in &manifest.dependencies {
        if BUILT_IN.iter().any(|(built_in, version)| built_in == name && version_satisfies(wanted, version)) {
            continue;
        }
        let versions: Vec<&str> = available.iter().filter(|m| &m.name == name).map(|m| m.version.as_str()).collect();
        if versions.iter().any(|version| version_satisfies(wanted, version)) {
            continue;
        }
        let have = match versions.as_slice() {
            [] => "none is installed".to_string(),
            versions => format!("installed: {}", versions.join(", ")),
        };
        missing.push(format!("{} needs {name}#{wanted} ({have})", manifest.id()));
    }
    missing
}

/// Packages for another FHIR version than R4 are refused.
pub fn check_fhir_version(manifest: &Manifest) -> Result<(), String> {
    if manifest.fhir_versions.is_empty() || manifest.fhir_versions.iter().any(|v| v.starts_with("4.0")) {
        return Ok(());
    }
    Err(format!("{} is for FHIR {}, and this server is FHIR R4 (4.0.1)", manifest.id(), manifest.fhir_versions.join(", ")))
}

/// Checks that every package's dependencies are among `packages` (or built in). Returns the
/// unmet ones as errors, or, with `allow_missing`, as warnings.
pub fn resolve(packages: &[Package], allow_missing: bool) -> Result<Vec<String>, StoreError> {
    let available: Vec<&Manifest> = packages.iter().map(|p| &p.manifest).collect();
    let mut missing = Vec::new();
    for package in packages {
        check_fhir_version(&package.manifest).map_err(|why| StoreError::Unresolved(vec![why]))?;
        missing.extend(missing_dependencies(&package.manifest, &available));
    }
    match missing.is_empty() || allow_missing {
        true => Ok(missing),
        false => Err(StoreError::Unresolved(missing)),
    }
}
