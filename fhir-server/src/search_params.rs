//! Custom search parameters and the search index: which set the index was built with, the
//! SearchParameter resources written through the API (a projection of the log), and the task
//! that rebuilds the index by replay whenever the set in use changes.
//!
//! - `search.params` in the data directory holds the [`fingerprint`] of the custom set the
//!   current index was built with (written by [`crate::search_slot`] after each rebuild; no
//!   file means no custom parameters).
//! - `search-parameters.json` holds the active SearchParameter resources of the log, per tenant
//!   and id, with the log position they are current at. Removing it rebuilds it by replay.
//! - [`keep_index_current`] compares the two fingerprints at start and after every change of
//!   the set, and rebuilds the index while the old one keeps serving (`GET [base]/$reindex`
//!   shows the progress). Until it is swapped in, a new parameter finds only the resources
//!   written since it was added.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use event_log::{Event, Operation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::guides::CustomSearchParameters;
use crate::search_slot::SearchSlot;

const BUILT_WITH_FILE: &str = "search.params";
const API_FILE: &str = "search-parameters.json";

/// What identifies the custom set in use: each parameter's url, code, type, bases, expression
/// and components, sorted.
pub fn fingerprint() -> String {
    let mut lines: Vec<String> = fhir_core::search::registry::custom_parameters()
        .iter()
        .map(|p| {
            let components: Vec<String> = p.component.iter().map(|c| format!("{}={}", c.definition, c.expression)).collect();
            format!("{}|{}|{}|{}|{}|{}|{}", p.url, p.code, p.kind.as_str(), p.base.join(","), p.expression.as_deref().unwrap_or_default(), p.target.join(","), components.join(","))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// The fingerprint the current index was built with.
pub fn built_with(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join(BUILT_WITH_FILE)).unwrap_or_default()
}

/// Whether the current index was built with the custom set in use.
pub fn index_is_current(data_dir: &Path) -> bool {
    built_with(data_dir) == fingerprint()
}

/// Installs the custom search parameters of the packages and of the API's SearchParameter
/// resources (as `search-parameters.json` last had them). Returns both sources, and what the
/// install reported (see [`CustomSearchParameters::set_api`]).
pub fn install_at_start(data_dir: &Path, packages: &implementation_guide::Conformance) -> anyhow::Result<(Arc<CustomSearchParameters>, Arc<ApiSearchParameters>, Value)> {
    let custom = CustomSearchParameters::new(packages);
    let api = ApiSearchParameters::open(data_dir, custom.clone())?;
    let installed = custom.set_api(api.resources());
    Ok((custom, api, installed))
}

/// Records the fingerprint of the set an index now in use was built with.
pub fn record_built_with(data_dir: &Path, fingerprint: &str) -> anyhow::Result<()> {
    let temporary = data_dir.join(format!("{BUILT_WITH_FILE}.tmp"));
    std::fs::write(&temporary, fingerprint).context("cannot record the index's search parameters")?;
    std::fs::rename(&temporary, data_dir.join(BUILT_WITH_FILE)).context("cannot record the index's search parameters")
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    checkpoint: u64,
    /// `tenant/id` to the resource.
    resources: BTreeMap<String, Value>,
}

/// The active SearchParameter resources of the log (all tenants: search parameters are per
/// server), kept in `search-parameters.json`.
pub struct ApiSearchParameters {
    path: PathBuf,
    state: Mutex<(Saved, u64)>,
    custom: Arc<CustomSearchParameters>,
}

impl ApiSearchParameters {
    pub fn open(data_dir: &Path, custom: Arc<CustomSearchParameters>) -> anyhow::Result<Arc<Self>> {
        let path = data_dir.join(API_FILE);
        let saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged; remove it to rebuild it from the log", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let checkpoint = saved.checkpoint;
        Ok(Arc::new(ApiSearchParameters { path, state: Mutex::new((saved, checkpoint)), custom }))
    }

    pub fn resources(&self) -> Vec<Value> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.resources.values().cloned().collect()
    }

    fn save(&self, saved: &Saved) -> Result<(), String> {
        let temporary = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(saved).map_err(|e| e.to_string())?;
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &self.path)).map_err(|e| format!("cannot save {}: {e}", self.path.display()))
    }
}

impl event_log::tail::Projection for ApiSearchParameters {
    fn name(&self) -> &'static str {
        "search-parameters"
    }

    fn checkpoint(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.checkpoint
    }

    fn apply(&self, events: &[Event]) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for event in events {
            state.0.checkpoint = state.0.checkpoint.max(event.position);
            if event.key.resource_type != "SearchParameter" {
                continue;
            }
            let key = format!("{}/{}", event.key.tenant, event.key.id);
            let active = match event.operation {
                Operation::Delete => None,
                _ => serde_json::from_slice::<Value>(&event.body).ok().filter(|r| r.get("status").and_then(Value::as_str) == Some("active")),
            };
            changed |= match active {
                Some(resource) => state.0.resources.insert(key, resource.clone()).is_none_or(|old| old != resource),
                None => state.0.resources.remove(&key).is_some(),
            };
        }
        if !changed {
            return Ok(());
        }
        self.save(&state.0)?;
        state.1 = state.0.checkpoint;
        let resources: Vec<Value> = state.0.resources.values().cloned().collect();
        drop(state);
        self.custom.set_api(resources);
        Ok(())
    }

    fn caught_up(&self) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 != state.0.checkpoint {
            self.save(&state.0)?;
            state.1 = state.0.checkpoint;
        }
        Ok(())
    }
}

/// Rebuilds the search index by replay whenever the custom set in use is not the one it was
/// built with: at start, and after each change, until `shutdown`.
pub async fn keep_index_current(slot: Arc<SearchSlot>, data_dir: PathBuf, mut changed: watch::Receiver<u64>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !index_is_current(&data_dir) {
            if slot.begin_reindex() {
                tracing::info!("the custom search parameters changed; rebuilding the search index by replay");
                if let Err(error) = slot.reindex().await {
                    tracing::error!(error = %format!("{error:#}"), "the search index rebuild failed; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            } else {
                // Another rebuild is running; look again when it is done.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            continue;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
}
