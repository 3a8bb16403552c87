//! `fhir-server import PATH...`: loads Bundle files (a transaction or batch each) and NDJSON
//! files (one resource per line) through the API, so every resource takes the same validation
//! and the same event log as any request. Without `--server` it starts the server in-process on
//! a loopback port over the configured data directory (which must not be in use); with it, it
//! sends to a running server.
//!
//! Several files go at once; a progress bar counts resources; at the end a summary lists what
//! failed and why (file, entry or line, status, the server's message). Re-running is safe and
//! quick: finished units are skipped (`import-progress.json` in the data directory), and every
//! unit is idempotent (see `units`), so even a unit that committed just before an interruption
//! makes no duplicate when it is sent again.
//!
//! In-process (embedded mode), the import holds the search index's build while it loads, so
//! that the index sorts its value indexes once at the end rather than inserting into them row by
//! row (see `projector_search::store`), and it ends only when everything it wrote is searchable.
//!
//! - `units`: files into requests; `progress`: what is finished.

mod progress;
mod units;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::{BackendKind, Config};
use crate::serve::Embedded;
use progress::Progress;
use units::{read_units, Unit};

/// Largest request body the in-process server accepts during an import.
const LOCAL_MAX_BODY: usize = 1 << 30;
/// What a resource of the input takes at most on average, in bytes, for a lower bound of how
/// many are coming (Synthea's patient bundles average about 1.8 KB).
const INPUT_BYTES_PER_RESOURCE: u64 = 8 * 1024;
/// Failures listed in the summary (all are counted).
const LISTED_FAILURES: usize = 50;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub server: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// One thing that did not import.
struct Failure {
    file: PathBuf,
    origin: String,
    why: String,
}

#[derive(Default)]
struct Tally {
    imported: usize,
    skipped: usize,
    failures: Vec<Failure>,
}

pub async fn run(config: &Config, options: Options) -> anyhow::Result<bool> {
    let files = expand(&options.paths)?;
    let progress = Arc::new(Mutex::new(Progress::load(&config.data_dir.join("import-progress.json"))?));
    let (base, local) = match &options.server {
        Some(server) => (server.trim_end_matches('/').to_string(), None),
        None => {
            let input_bytes = files.iter().filter_map(|file| std::fs::metadata(file).ok()).map(|metadata| metadata.len()).sum();
            let (base, local) = start_local(config, input_bytes).await?;
            (base, Some(local))
        }
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let imports: Vec<_> = files.iter().map(|path| import_file(&client, &base, path, &progress, &tally, &bar, started)).collect();
    futures::stream::iter(imports).buffer_unordered(options.concurrency.max(1)).collect::<Vec<()>>().await;
    if let Some(local) = local {
        local.stop(&bar).await?;
    }
    bar.finish_and_clear();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} resources from {} files in {seconds:.1} s ({:.0}/s); {} skipped as already imported; {} failed",
        tally.imported,
        files.len(),
        tally.imported as f64 / seconds.max(0.001),
        tally.skipped,
        tally.failures.len()
    );
    for failure in tally.failures.iter().take(LISTED_FAILURES) {
        println!("  {} {}: {}", failure.file.display(), failure.origin, failure.why);
    }
    if tally.failures.len() > LISTED_FAILURES {
        println!("  ... and {} more", tally.failures.len() - LISTED_FAILURES);
    }
    Ok(tally.failures.is_empty())
}

/// The files named, with directories replaced by their `.json`, `.ndjson` and `.jsonl` files.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "ndjson" || e == "jsonl"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{} is not a file or directory", path.display());
        }
    }
    Ok(files)
}

async fn import_file(
    client: &reqwest::Client,
    base: &str,
    path: &Path,
    progress: &Mutex<Progress>,
    tally: &Mutex<Tally>,
    bar: &ProgressBar,
    started: Instant,
) {
    let fail = |origin: &str, why: String| {
        let failure = Failure { file: path.to_path_buf(), origin: origin.to_string(), why };
        tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).failures.push(failure);
    };
    let owned = path.to_path_buf();
    let units = match tokio::task::spawn_blocking(move || read_units(&owned)).await {
        Ok(Ok(units)) => units,
        Ok(Err(error)) => return fail("", format!("{error:#}")),
        Err(error) => return fail("", format!("reading failed: {error}")),
    };
    for unit in units {
        if progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_done(&unit.file, unit.index) {
            tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).skipped += unit.resources;
            continue;
        }
        for (origin, why) in &unit.unreadable {
            fail(origin, why.clone());
        }
        match send(client, base, &unit).await {
            Ok((imported, failures)) => {
                let clean = failures.is_empty() && unit.unreadable.is_empty();
                for (origin, why) in failures {
                    fail(&origin, why);
                }
                let mut tally_now = tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                tally_now.imported += imported;
                let rate = tally_now.imported as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!("{} resources ({rate:.0}/s), {} failed", tally_now.imported, tally_now.failures.len()));
                drop(tally_now);
                if clean {
                    if let Err(error) = progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).mark_done(&unit.file, unit.index) {
                        fail("", format!("{error:#}"));
                    }
                }
            }
            Err(why) => {
                fail(&format!("unit {}", unit.index), why);
                break;
            }
        }
    }
    bar.inc(1);
}

/// Sends one unit; returns how many resources it wrote and the entries that failed (origin, why),
/// or why the request failed.
async fn send(client: &reqwest::Client, base: &str, unit: &Unit) -> Result<(usize, Vec<(String, String)>), String> {
    let response = client
        .post(base)
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(unit.bundle.to_string())
        .send()
        .await
        .map_err(|error| format!("the server could not be reached: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|_| format!("the server answered {status} without a FHIR body"))?;
    if !status.is_success() {
        // A transaction failed as a whole; its issues name the entries.
        let issues = body["issue"].as_array().cloned().unwrap_or_default();
        if issues.is_empty() {
            return Err(format!("the server answered {status}"));
        }
        return Ok((0, issues.iter().map(|issue| (status.to_string(), diagnostics(issue))).collect()));
    }
    let entries = body["entry"].as_array().cloned().unwrap_or_default();
    let failures: Vec<(String, String)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| !entry["response"]["status"].as_str().unwrap_or("").starts_with('2'))
        .map(|(index, entry)| {
            let origin = unit.origins.get(index).cloned().unwrap_or_else(|| format!("entry {index}"));
            let status = entry["response"]["status"].as_str().unwrap_or("?").to_string();
            let why = entry["response"]["outcome"]["issue"].as_array().and_then(|issues| issues.first()).map(diagnostics).unwrap_or_default();
            (origin, format!("{status}: {why}"))
        })
        .collect();
    Ok((entries.len() - failures.len(), failures))
}

fn diagnostics(issue: &Value) -> String {
    let text = issue["diagnostics"].as_str().unwrap_or("(no details)");
    match issue["expression"].as_array().and_then(|e| e.first()).and_then(Value::as_str) {
        Some(at) => format!("{text} (at {at})"),
        None => text.to_string(),
    }
}

/// The server, in this process, for the length of an import.
struct LocalServer {
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// In embedded mode, its parts (for the search index's bulk load).
    embedded: Option<Embedded>,
}

impl LocalServer {
    /// Waits until the search index has everything the import wrote, then stops.
    async fn stop(self, bar: &ProgressBar) -> anyhow::Result<()> {
        if let Some(embedded) = &self.embedded {
            let head = embedded.head().await?;
            bar.set_message("making the import searchable");
            while !embedded.search().wait_for(head, Duration::from_secs(1)).await {
                let position = embedded.search().current().checkpoint();
                bar.set_message(format!("making the import searchable: {position} of {head} events indexed"));
            }
        }
        let _ = self.stop.send(());
        self.serving.await.context("the import server task failed")??;
        if let Some(embedded) = self.embedded {
            embedded.close().await;
        }
        Ok(())
    }
}

async fn start_local(config: &Config, input_bytes: u64) -> anyhow::Result<(String, LocalServer)> {
    let mut config = config.clone();
    config.max_body_bytes = config.max_body_bytes.max(LOCAL_MAX_BODY);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on loopback")?;
    let base = format!("http://{}{}", listener.local_addr()?, config.base_path);
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let (serving, embedded) = if config.backend == BackendKind::Aws {
        (tokio::spawn(crate::serve::run(config, listener, stopped)), None)
    } else {
        let embedded = Embedded::open(&config, Some(input_bytes / INPUT_BYTES_PER_RESOURCE))?;
        let router = embedded.router();
        let serving = tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stopped).await.context("the import server failed") });
        (serving, Some(embedded))
    };
    let local = LocalServer { stop, serving, embedded };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if local.serving.is_finished() {
            return Err(local.serving.await.context("the import server task failed")?.err().unwrap_or_else(|| anyhow::anyhow!("the import server stopped")));
        }
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((base, local));
        }
        if Instant::now() > deadline {
            anyhow::bail!("the import server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
