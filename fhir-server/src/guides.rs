//! Implementation Guides in the server: the packages loaded at start (those installed in the
//! data directory by `fhir-server ig install`, and those `[ig] packages` names), installing one
//! while serving (`POST [base]/$install-package`) or offline, and the custom search parameters
//! in use: the packages' SearchParameters and the active SearchParameter resources written
//! through the API (see [`crate::search_params`]).
//!
//! Packages are per server: with multi-tenancy on, every tenant has the same ones.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use async_trait::async_trait;
use fhir_core::definitions::SearchParameter;
use implementation_guide::{Conformance, Package, PackageStore};
use serde_json::{json, Value};
use tokio::sync::watch;

use command_api::state::Guides;

use crate::config::Config;

/// The bytes of a package given as a tarball or as a folder holding `package/package.json`.
pub fn read_package(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        return implementation_guide::package::pack_dir(path).with_context(|| format!("cannot pack the package folder {}", path.display()));
    }
    std::fs::read(path).with_context(|| format!("cannot read the package {}", path.display()))
}

/// The configured packages, read.
pub fn configured(config: &Config) -> anyhow::Result<Vec<Package>> {
    config
        .ig
        .packages
        .iter()
        .map(|path| Package::from_tgz(&read_package(path)?).with_context(|| format!("the package {} cannot be used", path.display())))
        .collect()
}

/// Every package to load: the installed ones, then the configured ones (a configured package
/// replaces an installed one of the same name), with their dependencies checked. A configured
/// package's missing dependency stops the start unless `ig.allow_missing_dependencies`; an
/// installed package's was checked when it was installed (where it may have been allowed), and
/// is only logged.
pub fn load(config: &Config) -> anyhow::Result<Vec<Package>> {
    let mut packages = PackageStore::new(&config.data_dir).load()?;
    let configured = configured(config)?;
    packages.retain(|installed| !configured.iter().any(|c| c.manifest.name == installed.manifest.name));
    let installed = packages.len();
    packages.extend(configured);
    let available: Vec<&implementation_guide::Manifest> = packages.iter().map(|p| &p.manifest).collect();
    for (index, package) in packages.iter().enumerate() {
        implementation_guide::store::check_fhir_version(&package.manifest).map_err(anyhow::Error::msg)?;
        let missing = implementation_guide::store::missing_dependencies(&package.manifest, &available);
        if index >= installed && !missing.is_empty() && !config.ig.allow_missing_dependencies {
            bail!("{}; install them, or set ig.allow_missing_dependencies", missing.join("; "));
        }
        for why in &missing {
            tracing::warn!(dependency = %why, "a package dependency is not loaded; what the package takes from it is not checked");
        }
    }
    Ok(packages)
}

/// The loaded packages' conformance resources; the profiles required by the configuration must
/// be among them.
pub fn conformance(config: &Config, packages: &[Package]) -> anyhow::Result<Conformance> {
    let conformance = Conformance::new(packages);
    for why in conformance.unusable() {
        tracing::warn!(profile = %why, "a profile of a package cannot be used");
    }
    for (resource_type, urls) in &config.ig.required_profiles {
        for url in urls {
            match conformance.profile(url) {
                Some(profile) if &profile.type_name == resource_type => {}
                Some(profile) => bail!("ig.required_profiles: {url} is a profile of {}, not {resource_type}", profile.type_name),
                None => bail!("ig.required_profiles: {url} is not in any loaded package"),
            }
        }
    }
    for manifest in conformance.packages() {
        tracing::info!(package = %manifest.id(), "implementation guide loaded");
    }
    Ok(conformance)
}

/// The custom search parameters in use, from the packages and from the API, installed into
/// [`fhir_core::search::registry`]; `changed` ticks each time the set in use changes. Either
/// source is replaced under one lock, so concurrent changes (an install, a SearchParameter
/// written) never install a set that misses the other's.
pub struct CustomSearchParameters {
    /// SearchParameter resources of the packages, and of the API.
    sources: Mutex<(Vec<Value>, Vec<Value>)>,
    changed: watch::Sender<u64>,
}

impl CustomSearchParameters {
    pub fn new(from_packages: &Conformance) -> Arc<Self> {
        Arc::new(CustomSearchParameters { sources: Mutex::new((from_packages.search_parameters().to_vec(), Vec::new())), changed: watch::channel(0).0 })
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Uses the SearchParameters of these packages; returns what [`Self::install`] does.
    pub fn set_packages(&self, conformance: &Conformance) -> Value {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.0 = conformance.search_parameters().to_vec();
        self.install(&sources)
    }

    /// Uses these SearchParameter resources of the API; returns what [`Self::install`] does.
    pub fn set_api(&self, resources: Vec<Value>) -> Value {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.1 = resources;
        self.install(&sources)
    }

    /// Installs both sources' parameters (the packages' first). A parameter that cannot be used
    /// is left out with a warning (and named in the result); a set the registry refuses as a
    /// whole (two parameters with one code on a type) keeps the previous set. Returns the urls
    /// in use (`active`) and what was left out (`leftOut`).
    fn install(&self, (from_packages, from_api): &(Vec<Value>, Vec<Value>)) -> Value {
        let mut parameters = Vec::new();
        let mut left_out = Vec::new();
        for resource in from_packages.iter().chain(from_api) {
            if resource.get("status").and_then(Value::as_str) == Some("retired") {
                continue;
            }
            match SearchParameter::from_resource(resource) {
                Ok(parameter) if !parameters.iter().any(|p: &SearchParameter| p.url == parameter.url) => parameters.push(parameter),
                Ok(_) => {}
                Err(why) => left_out.push(why),
            }
        }
        let before = crate::search_params::fingerprint();
        match fhir_core::search::registry::install(parameters) {
            Ok(installed) => left_out.extend(installed.skipped.iter().map(|(url, why)| format!("{url}: {why}"))),
            Err(errors) => left_out.extend(errors),
        }
        for why in &left_out {
            tracing::warn!(search_parameter = %why, "a custom search parameter is not used");
        }
        if crate::search_params::fingerprint() != before {
            self.changed.send_modify(|generation| *generation += 1);
        }
        let active: Vec<String> = fhir_core::search::registry::custom_parameters().iter().map(|p| p.url.clone()).collect();
        json!({"active": active, "leftOut": left_out})
    }
}

/// Installs packages while serving: into the data directory, then made current for the API
/// and the search parameters (the index is rebuilt by the task watching them).
pub struct Installer {
    pub config: Config,
    pub guides: Arc<Guides>,
    pub search_parameters: Arc<CustomSearchParameters>,
    /// One install at a time.
    pub lock: tokio::sync::Mutex<()>,
}

#[async_trait]
impl command_api::guides::PackageInstaller for Installer {
    async fn install(&self, tarball: Vec<u8>, allow_missing_dependencies: bool) -> Result<Value, String> {
        let _one = self.lock.lock().await;
        let config = self.config.clone();
        let (installed, conformance) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store = PackageStore::new(&config.data_dir);
            let (_, installed) = store.install(&tarball, allow_missing_dependencies, &configured(&config)?)?;
            let conformance = conformance(&config, &load(&config)?)?;
            Ok((installed, conformance))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        let parameters = self.search_parameters.set_packages(&conformance);
        self.guides.replace(conformance);
        tracing::info!(package = %installed.manifest.id(), "implementation guide installed");
        Ok(report(&installed, &parameters))
    }
}

/// What an install did, as a Parameters resource.
pub fn report(installed: &implementation_guide::store::Installed, parameters: &Value) -> Value {
    let mut parameter = vec![json!({"name": "package", "valueString": installed.manifest.id()})];
    if let Some(replaced) = &installed.replaced {
        parameter.push(json!({"name": "replaced", "valueString": replaced}));
    }
    parameter.extend(installed.missing.iter().map(|why| json!({"name": "missingDependency", "valueString": why})));
    for url in parameters["active"].as_array().into_iter().flatten() {
        parameter.push(json!({"name": "searchParameter", "valueUri": url}));
    }
    for why in parameters["leftOut"].as_array().into_iter().flatten() {
        parameter.push(json!({"name": "searchParameterLeftOut", "valueString": why}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The guides of a process that does not install packages while it runs (AWS mode, Lambda):
/// the configured and installed packages, with their search parameters in use. SearchParameter
/// resources written through the API are not followed there.
pub fn load_fixed(config: &Config) -> anyhow::Result<Arc<Guides>> {
    let conformance = conformance(config, &load(config)?)?;
    CustomSearchParameters::new(&conformance).set_api(Vec::new());
    Ok(Arc::new(Guides::new(conformance, config.ig.required_profiles.clone())))
}
