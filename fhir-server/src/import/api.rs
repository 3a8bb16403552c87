//! Where an import sends its units: a server over HTTP (`--server`, or the AWS mode's server in
//! this process), or the embedded API called directly in this process, which skips writing each
//! Bundle out as JSON, reading it back, and the same for the response.

use std::sync::Arc;

use command_api::negotiate::{PreferReturn, RequestContext};
use command_api::transaction::EntryResult;
use command_api::AppState;
use serde_json::Value;

pub enum Api {
    Http { client: reqwest::Client, base: String },
    InProcess { state: Arc<AppState>, context: Arc<RequestContext> },
}

/// What one unit did: resources written, and what failed (where, why) with `where` the entry's
/// origin, or the status of a transaction that failed as a whole.
pub struct Sent {
    pub written: usize,
    pub failures: Vec<(String, String)>,
}

impl Api {
    /// The embedded API, writing into `tenant` (the default tenant without one).
    pub fn in_process(state: Arc<AppState>, tenant: Option<&str>) -> Api {
        let mut context = RequestContext::internal(&state, PreferReturn::Minimal);
        if let Some(tenant) = tenant {
            context.tenant = tenant.to_string();
        }
        Api::InProcess { state, context: Arc::new(context) }
    }

    /// Sends one unit's Bundle; `origins` name its entries. Err: why it could not be sent at all.
    pub async fn send(&self, bundle: Value, origins: &[String]) -> Result<Sent, String> {
        match self {
            Api::Http { client, base } => send_http(client, base, bundle, origins).await,
            Api::InProcess { state, context } => {
                let (state, context) = (state.clone(), context.clone());
                // A task of its own: the work runs on any of the runtime's threads, and a panic
                // fails this unit, not the import.
                let run = tokio::spawn(async move { command_api::transaction::run(&state, &context, bundle).await });
                match run.await.map_err(|error| format!("the unit's processing failed: {error}"))? {
                    Ok((_, results)) => Ok(from_results(&results, origins)),
                    Err(error) => {
                        let outcome = fhir_core::operation_outcome(&error.issues());
                        Ok(whole_failure(&error.status().to_string(), &outcome))
                    }
                }
            }
        }
    }
}

async fn send_http(client: &reqwest::Client, base: &str, bundle: Value, origins: &[String]) -> Result<Sent, String> {
    let response = client
        .post(base)
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(bundle.to_string())
        .send()
        .await
        .map_err(|error| format!("the server could not be reached: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|_| format!("the server answered {status} without a FHIR body"))?;
    if !status.is_success() {
        if body["issue"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("the server answered {status}"));
        }
        return Ok(whole_failure(&status.to_string(), &body));
    }
    let entries = body["entry"].as_array().map(Vec::as_slice).unwrap_or_default();
    let statuses = entries.iter().map(|entry| {
        let response = &entry["response"];
        (response["status"].as_str().unwrap_or("?").to_string(), response["outcome"]["issue"].as_array().and_then(|issues| issues.first()).map(diagnostics))
    });
    Ok(from_statuses(statuses, origins))
}

/// A transaction that failed as a whole: its issues name the entries.
fn whole_failure(status: &str, outcome: &Value) -> Sent {
    let issues = outcome["issue"].as_array().map(Vec::as_slice).unwrap_or_default();
    Sent { written: 0, failures: issues.iter().map(|issue| (status.to_string(), diagnostics(issue))).collect() }
}

fn from_results(results: &[EntryResult], origins: &[String]) -> Sent {
    let statuses = results.iter().map(|result| {
        let why = result.outcome.as_ref().and_then(|outcome| {
            let outcome: Value = serde_json::from_slice(outcome).ok()?;
            outcome["issue"].as_array().and_then(|issues| issues.first()).map(diagnostics)
        });
        (result.status.to_string(), why)
    });
    from_statuses(statuses, origins)
}

/// Each entry's status line (`201 Created`) and its first issue, if any.
fn from_statuses(statuses: impl Iterator<Item = (String, Option<String>)>, origins: &[String]) -> Sent {
    let mut sent = Sent { written: 0, failures: Vec::new() };
    for (index, (status, why)) in statuses.enumerate() {
        if status.starts_with('2') {
            sent.written += 1;
        } else {
            let origin = origins.get(index).cloned().unwrap_or_else(|| format!("entry {index}"));
            sent.failures.push((origin, format!("{status}: {}", why.unwrap_or_default())));
        }
    }
    sent
}

fn diagnostics(issue: &Value) -> String {
    let text = issue["diagnostics"].as_str().unwrap_or("(no details)");
    match issue["expression"].as_array().and_then(|e| e.first()).and_then(Value::as_str) {
        Some(at) => format!("{text} (at {at})"),
        None => text.to_string(),
    }
}
