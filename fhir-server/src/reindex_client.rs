//! `fhir-server reindex --server URL` (bearer token from `FHIR_SERVER_TOKEN`): asks a running server to rebuild its search index and
//! shows the progress until the new index is swapped in; [`follow`] shows a rebuild the server
//! started itself (after an Implementation Guide added search parameters).

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

fn parameter(status: &Value, name: &str) -> String {
    status["parameter"]
        .as_array()
        .and_then(|parameters| parameters.iter().find(|p| p["name"] == name))
        .map(|p| p.get("valueCode").or_else(|| p.get("valueInteger64")).and_then(Value::as_str).unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A request with the bearer token of `FHIR_SERVER_TOKEN`, if set.
fn authorized(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("FHIR_SERVER_TOKEN") {
        Ok(token) => request.bearer_auth(token),
        Err(_) => request,
    }
}

pub async fn run(base: &str) -> anyhow::Result<bool> {
    let url = format!("{}/$reindex", base.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let started = authorized(client.post(&url)).send().await.with_context(|| format!("cannot reach {url}"))?;
    if !started.status().is_success() {
        bail!("the server refused the reindex: {}", started.status());
    }
    follow(base).await
}

/// Shows the progress of the server's rebuild until it is done (at once if none runs).
pub async fn follow(base: &str) -> anyhow::Result<bool> {
    let url = format!("{}/$reindex", base.trim_end_matches('/'));
    let client = reqwest::Client::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = authorized(client.get(&url)).send().await?;
        if !response.status().is_success() {
            bail!("the server refused to show the reindex: {}", response.status());
        }
        let status: Value = response.json().await?;
        let (state, position, head) = (parameter(&status, "state"), parameter(&status, "position"), parameter(&status, "head"));
        eprint!("\rreindexing: {position} of {head} events ({state})   ");
        let _ = std::io::stderr().flush();
        match state.as_str() {
            "done" => {
                eprintln!();
                println!("search index rebuilt and swapped in");
                return Ok(true);
            }
            "failed" => {
                eprintln!();
                bail!("the reindex failed; see the server's log");
            }
            "idle" => {
                eprintln!();
                return Ok(true);
            }
            _ => {}
        }
    }
}
