//! `fhir-server import PATH...`: loads Bundle files (a transaction or batch each) and NDJSON
//! files (one resource per line) through the API, so every resource takes the same validation
//! and the same event log as any request. Without `--server` it opens the data directory (which
//! must not be in use) and calls the API in this process; with it, it sends to a running server.
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
//! - `units`: files into requests; `api`: where they go; `local`: the server in this process;
//!   `progress`: what is finished.

mod api;
mod local;
mod progress;
mod units;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use api::Api;
use progress::Progress;
use units::read_units;

/// Failures listed in the summary (all are counted).
const LISTED_FAILURES: usize = 50;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub server: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// With multi-tenancy, the tenant to load into.
    pub tenant: Option<String>,
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
    if let Some(tenant) = &options.tenant {
        anyhow::ensure!(command_api::tenancy::is_valid_tenant(tenant), "--tenant: a tenant id is 1 to 64 letters, digits, '_' or '-'");
        anyhow::ensure!(config.multi_tenancy, "--tenant needs multi_tenancy = true");
    }
    let progress = Arc::new(Mutex::new(Progress::load(&config.data_dir.join("import-progress.json"))?));
    let (api, local) = match &options.server {
        Some(server) => {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
            (Api::Http { client, base: server.trim_end_matches('/').to_string() }, None)
        }
        None => {
            let input_bytes = files.iter().filter_map(|file| std::fs::metadata(file).ok()).map(|metadata| metadata.len()).sum();
            let (api, local) = local::start(config, input_bytes, options.tenant.as_deref()).await?;
            (api, Some(local))
        }
    };
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let imports: Vec<_> = files.iter().map(|path| import_file(&api, path, &progress, &tally, &bar, started)).collect();
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
    api: &Api,
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
        match api.send(unit.bundle, &unit.origins).await {
            Ok(sent) => {
                let clean = sent.failures.is_empty() && unit.unreadable.is_empty();
                for (origin, why) in sent.failures {
                    fail(&origin, why);
                }
                let mut tally_now = tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                tally_now.imported += sent.written;
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
