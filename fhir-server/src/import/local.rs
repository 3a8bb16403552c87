//! The server in this process for the length of an import without `--server`. In embedded mode
//! the import calls its API directly and holds the search index's build while it loads (see
//! `SearchSlot::open`); in AWS mode it serves on a loopback port, to this import only (a key
//! made for the run), and the import sends over HTTP.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::api::Api;
use crate::config::{BackendKind, Config};
use crate::serve::Embedded;

/// Largest request body the in-process server accepts during an import (AWS mode).
const LOCAL_MAX_BODY: usize = 1 << 30;
/// What a resource of the input takes at most on average, in bytes, for a lower bound of how
/// many are coming (Synthea's patient bundles average about 1.8 KB).
const INPUT_BYTES_PER_RESOURCE: u64 = 8 * 1024;

pub enum Local {
    Embedded(Embedded),
    Http { stop: oneshot::Sender<()>, serving: JoinHandle<anyhow::Result<()>> },
}

/// Starts the server over the configured data directory for an input of `input_bytes`.
pub async fn start(config: &Config, input_bytes: u64, tenant: Option<&str>) -> anyhow::Result<(Api, Local)> {
    if config.backend != BackendKind::Aws {
        let embedded = Embedded::open(config, Some(input_bytes / INPUT_BYTES_PER_RESOURCE))?;
        return Ok((Api::in_process(embedded.api().clone(), tenant), Local::Embedded(embedded)));
    }
    let mut config = config.clone();
    config.max_body_bytes = config.max_body_bytes.max(LOCAL_MAX_BODY);
    // Only this import may call the server on its loopback port: a key made for this run
    // (callers' tokens do not apply to the server's own tool).
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    config.auth = crate::config::AuthConfig { api_key: Some(key.clone()), ..crate::config::AuthConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on loopback")?;
    let mut base = format!("http://{}{}", listener.local_addr()?, config.base_path);
    if let (true, Some(tenant)) = (config.multi_tenancy, tenant) {
        base = format!("{base}/tenant/{tenant}");
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(crate::serve::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_str(&key)?);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).default_headers(headers).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if serving.is_finished() {
            return Err(serving.await.context("the import server task failed")?.err().unwrap_or_else(|| anyhow::anyhow!("the import server stopped")));
        }
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((Api::Http { client, base }, Local::Http { stop, serving }));
        }
        if Instant::now() > deadline {
            anyhow::bail!("the import server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Local {
    /// Waits until the search index has everything the import wrote (embedded mode), then stops.
    pub async fn stop(self, bar: &ProgressBar) -> anyhow::Result<()> {
        match self {
            Local::Embedded(embedded) => {
                let head = embedded.head().await?;
                bar.set_message("making the import searchable");
                while !embedded.search().wait_for(head, Duration::from_secs(1)).await {
                    let position = embedded.search().current().checkpoint();
                    bar.set_message(format!("making the import searchable: {position} of {head} events indexed"));
                }
                embedded.close().await;
            }
            Local::Http { stop, serving } => {
                let _ = stop.send(());
                serving.await.context("the import server task failed")??;
            }
        }
        Ok(())
    }
}
