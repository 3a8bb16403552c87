//! Ingest benchmark: Synthea patient bundles into a fresh embedded server, two ways, each timed
//! until everything is searchable:
//!
//! - transactions: the bundles POSTed as they are, several at once, to the release binary;
//! - import: `fhir-server import` over the same files (it ends once its resources are
//!   searchable; a server started on the result checks that they are).
//!
//! `cargo bench -p fhir-server --bench ingest [-- --patients 100 --seed 1 --concurrency 4]`
//!
//! Prints a table of resources, seconds, resources/s and the CPU seconds the server (or the
//! import) used per phase. Not a test: it asserts only
//! that everything arrived.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use support::{arg, bundle_files, cpu_seconds, exited_children_cpu_seconds, free_port, rate, synthea_bundles, Server, BINARY};

/// Settings for the server under test: no body limit in the way, and searches may wait long.
const SERVER_ENV: &[(&str, &str)] = &[("FHIR_SERVER_MAX_BODY_BYTES", "1073741824"), ("FHIR_SERVER_SEARCH_WAIT_MS", "3600000")];

struct Settings {
    patients: usize,
    seed: u64,
    concurrency: usize,
}

fn settings() -> Settings {
    Settings { patients: arg("patients", 100), seed: arg("seed", 1), concurrency: arg("concurrency", 4usize).max(1) }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not start");
}

/// Waits, through `Prefer: read-your-writes`, until the index has every write, and returns the
/// number of patients it finds.
async fn searchable_patients(client: &reqwest::Client, base: &str) -> u64 {
    let response = client.get(format!("{base}/Patient?_summary=count")).header("prefer", "read-your-writes").send().await.expect("search");
    let body: Value = response.json().await.expect("search body");
    body["total"].as_u64().expect("a total")
}

/// One line of the table; `cpu` is the CPU time the server (or the import) used, in seconds.
fn row(phase: &str, resources: usize, elapsed: Duration, cpu: Option<f64>) {
    let cpu = cpu.map_or("-".to_string(), |seconds| format!("{seconds:.1}"));
    println!("| {phase:<44} | {resources:>9} | {:>8.1} | {:>11.0} | {cpu:>10} |", elapsed.as_secs_f64(), rate(resources, elapsed));
}

async fn transactions(bodies: Arc<Vec<String>>, resources: usize, concurrency: usize) {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let server = Server::start(data.path(), port, SERVER_ENV);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3600)).build().expect("client");
    wait_ready(&client, &base).await;
    let cpu_at_start = cpu_seconds(server.0.id());
    let cpu_since_start = || Some(cpu_seconds(server.0.id())? - cpu_at_start?);
    let started = Instant::now();
    let posts = (0..bodies.len()).map(|index| {
        let (client, base, bodies) = (client.clone(), base.clone(), bodies.clone());
        async move {
            let response = client
                .post(&base)
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .body(bodies[index].clone())
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), 200, "bundle {index} committed");
        }
    });
    futures::stream::iter(posts).buffer_unordered(concurrency).collect::<Vec<()>>().await;
    let committed = (started.elapsed(), cpu_since_start());
    let patients = searchable_patients(&client, &base).await;
    let searchable = (started.elapsed(), cpu_since_start());
    assert_eq!(patients as usize, bodies.len(), "every patient is searchable");
    row(&format!("transactions ({concurrency} at once): committed"), resources, committed.0, committed.1);
    row("transactions: searchable", resources, searchable.0, searchable.1);
}

async fn import(directory: &Path, resources: usize, patients: usize, concurrency: usize) {
    let data = tempfile::tempdir().expect("tempdir");
    let children_cpu = exited_children_cpu_seconds();
    let started = Instant::now();
    let status = Command::new(BINARY)
        .args(["--data", data.path().to_str().expect("utf-8"), "import", directory.to_str().expect("utf-8")])
        .args(["--concurrency", &concurrency.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run import");
    assert!(status.success(), "import succeeded");
    let imported = started.elapsed();
    let import_cpu = children_cpu.and_then(|before| Some(exited_children_cpu_seconds()? - before));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let _server = Server::start(data.path(), port, SERVER_ENV);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3600)).build().expect("client");
    wait_ready(&client, &base).await;
    let found = searchable_patients(&client, &base).await;
    assert_eq!(found as usize, patients, "every patient is searchable");
    row(&format!("import ({concurrency} at once): searchable"), resources, imported, import_cpu);
}

fn main() {
    let settings = settings();
    let directory = synthea_bundles(settings.patients, settings.seed);
    let files = bundle_files(&directory);
    let bodies: Vec<String> = files.iter().map(|path| std::fs::read_to_string(path).expect("read a bundle")).collect();
    let resources: usize = bodies
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).expect("a bundle")["entry"].as_array().map_or(0, Vec::len))
        .sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{} Synthea patients, {resources} resources, {cores} cores, sync=full", files.len());
    println!("| {:<44} | {:>9} | {:>8} | {:>11} | {:>10} |", "phase", "resources", "seconds", "resources/s", "CPU s");
    println!("|{:-<46}|{:-<11}|{:-<10}|{:-<13}|{:-<12}|", "", "", "", "", "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let patients = bodies.len();
    runtime.block_on(transactions(Arc::new(bodies), resources, settings.concurrency));
    runtime.block_on(import(&directory, resources, patients, settings.concurrency));
}
