//! `fhir-server ig`: install a package (a `.tgz`, or a package folder) into a server, and list
//! the installed ones.
//!
//! - `ig install PATH --server URL`: sends it to a running server (`POST [base]/$install-package`,
//!   with the bearer token of `FHIR_SERVER_TOKEN` if set), which stores it, uses it at once, and
//!   rebuilds its search index by replay if the package adds search parameters (searches go on
//!   meanwhile; `GET [base]/$reindex` shows the progress).
//! - `ig install PATH` without `--server`: installs into the data directory of a stopped server,
//!   rebuilding the search index there and then if needed; `ig remove NAME` removes one (not
//!   while another installed package needs it).

use std::path::Path;

use anyhow::{bail, Context};
use implementation_guide::PackageStore;
use serde_json::{json, Value};

use crate::config::Config;
use crate::guides::read_package;

/// Installs offline: the data directory must not be in use.
pub async fn install_offline(config: &Config, path: &Path, allow_missing: bool) -> anyhow::Result<bool> {
    let _lock = crate::serve::lock_data_dir(config)?;
    let tarball = read_package(path)?;
    let store = PackageStore::new(&config.data_dir);
    let (_, installed) = store.install(&tarball, allow_missing, &crate::guides::configured(config)?)?;
    print_report(&crate::guides::report(&installed, &json!({})));
    refresh_offline(config).await
}

/// Installs into a running server.
pub async fn install_remote(base: &str, path: &Path, allow_missing: bool) -> anyhow::Result<bool> {
    let tarball = read_package(path)?;
    let url = format!("{}/$install-package?allowMissingDependencies={allow_missing}", base.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&url).header("content-type", "application/gzip").body(tarball);
    if let Ok(token) = std::env::var("FHIR_SERVER_TOKEN") {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why: Vec<&str> = body["issue"].as_array().into_iter().flatten().filter_map(|i| i["diagnostics"].as_str()).collect();
        bail!("the server refused the package ({status}): {}", why.join("; "));
    }
    print_report(&body);
    let adds_parameters = body["parameter"].as_array().into_iter().flatten().any(|p| p["name"] == "searchParameter");
    if adds_parameters {
        // The server rebuilds its index when the parameters changed; show it to the end.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return crate::reindex_client::follow(base).await;
    }
    Ok(true)
}

/// Removes an installed package from the data directory of a stopped server, rebuilding the
/// search index if its search parameters were in use.
pub async fn remove_offline(config: &Config, name: &str) -> anyhow::Result<bool> {
    let _lock = crate::serve::lock_data_dir(config)?;
    let removed = PackageStore::new(&config.data_dir).remove(name)?;
    println!("removed: {}", removed.id());
    refresh_offline(config).await
}

/// Makes the search parameters of the packages now installed current, rebuilding the index if
/// they changed (the data directory is locked by the caller).
async fn refresh_offline(config: &Config) -> anyhow::Result<bool> {
    let conformance = crate::guides::conformance(config, &crate::guides::load(config)?)?;
    let (_, _, parameters) = crate::search_params::install_at_start(&config.data_dir, &conformance)?;
    for url in parameters["active"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        println!("searchParameter: {url}");
    }
    for why in parameters["leftOut"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        println!("searchParameterLeftOut: {why}");
    }
    if !crate::search_params::index_is_current(&config.data_dir) {
        let log = crate::serve::open_log(config)?;
        crate::search_slot::reindex_offline(&config.data_dir, log.clone()).await?;
        log.close().await;
    }
    Ok(true)
}

/// Lists the packages installed in the data directory.
pub fn list(config: &Config) -> anyhow::Result<bool> {
    for package in PackageStore::new(&config.data_dir).load()? {
        let manifest = &package.manifest;
        println!("{}\t{}\t{} resources", manifest.id(), manifest.title.as_deref().unwrap_or(""), package.resources.len());
    }
    Ok(true)
}

fn print_report(report: &Value) {
    for parameter in report["parameter"].as_array().into_iter().flatten() {
        let value = parameter.get("valueString").or_else(|| parameter.get("valueUri")).and_then(Value::as_str).unwrap_or_default();
        println!("{}: {value}", parameter["name"].as_str().unwrap_or_default());
    }
}
