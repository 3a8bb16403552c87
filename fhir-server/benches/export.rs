//! Export benchmark: Synthea patients imported into an embedded data directory (once, kept under
//! `~/.cache/fhir-server/bench-export`), then system `$export`s of the release server timed from
//! kick-off to the completed manifest, with the server's peak memory during each.
//!
//! `cargo bench -p fhir-server --bench export [-- --patients 100 --seed 1 --runs 2]`
//!
//! Prints, per export: resources, files, bytes, seconds, resources/s, the server's CPU seconds,
//! and its peak resident memory during the export (the peak is reset before each kick-off, so
//! a small and a large export can be compared). Not a test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{arg, bundle_files, cpu_seconds, free_port, rate, synthea_bundles, Server, BINARY};

struct Settings {
    patients: usize,
    seed: u64,
    runs: usize,
}

fn settings() -> Settings {
    Settings { patients: arg("patients", 100), seed: arg("seed", 1), runs: arg("runs", 2usize).max(1) }
}

/// A data directory holding the imported bundles (made on first use).
fn loaded_data(bundles: &Path, patients: usize, seed: u64) -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let data = PathBuf::from(home).join(format!(".cache/fhir-server/bench-export/p{patients}-s{seed}"));
    let done = data.join("bench-loaded");
    if done.exists() {
        return data;
    }
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    println!("importing {} bundles into {} (once)", bundle_files(bundles).len(), data.display());
    let status = Command::new(BINARY)
        .args(["--data", data.to_str().unwrap(), "import", bundles.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .env("FHIR_SERVER_SYNC", "normal")
        .status()
        .expect("run import");
    assert!(status.success(), "import succeeded");
    std::fs::write(&done, b"").unwrap();
    data
}

/// A memory field of a process's status (`VmHWM`: the peak since the last reset; `VmRSS`: now), in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status.lines().find(|line| line.starts_with(field)).and_then(|line| line.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// One export from kick-off to manifest: (resources, files, bytes, elapsed, the server's peak
/// memory until the manifest, in MiB).
async fn export(client: &reqwest::Client, base: &str, query: &str, pid: u32) -> (u64, usize, u64, Duration, f64) {
    let started = Instant::now();
    let response = client.get(format!("{base}/$export{query}")).header("prefer", "respond-async").send().await.unwrap();
    assert_eq!(response.status(), 202, "kick-off: {}", response.text().await.unwrap());
    let status = response.headers()["content-location"].to_str().unwrap().to_string();
    let manifest: Value = loop {
        let response = client.get(&status).send().await.unwrap();
        match response.status().as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(20)).await,
            200 => break response.json().await.unwrap(),
            other => panic!("status {other}: {}", response.text().await.unwrap()),
        }
    };
    let elapsed = started.elapsed();
    let peak = memory_mib(pid, "VmHWM:");
    let files = manifest["output"].as_array().unwrap();
    let resources = files.iter().map(|file| file["count"].as_u64().unwrap()).sum();
    // The bytes, from the files themselves (also checks that they can be fetched).
    let mut bytes = 0;
    for file in files {
        bytes += client.get(file["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap().len() as u64;
    }
    client.delete(&status).send().await.unwrap();
    (resources, files.len(), bytes, elapsed, peak)
}

fn main() {
    let settings = settings();
    let bundles = synthea_bundles(settings.patients, settings.seed);
    let data = loaded_data(&bundles, settings.patients, settings.seed);
    let port = free_port();
    let server = Server::start(&data, port, &[("FHIR_SERVER_EXPORT__MAX_JOBS_PER_TENANT", "10")]);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while client.get(format!("{base}/metadata")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    println!("\nexport of {} Synthea patients (seed {}), embedded, release build, {} cores", settings.patients, settings.seed, std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("| export | resources | files | MB | s | resources/s | server CPU s | server peak MiB (before) |");
    println!("|---|---|---|---|---|---|---|---|");
    // Small, middling and whole: the peak memory should not follow the size.
    let mut exports: Vec<(&str, &str)> = vec![("Patient only", "?_type=Patient"), ("Encounter only", "?_type=Encounter"), ("Observation only", "?_type=Observation")];
    for _ in 0..settings.runs {
        exports.push(("system, every type", ""));
    }
    for (name, query) in exports {
        let idle = memory_mib(pid, "VmRSS:");
        reset_peak_rss(pid);
        let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
        let (resources, files, bytes, elapsed, peak) = runtime.block_on(export(&client, &base, query, pid));
        let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
        println!(
            "| {name} | {resources} | {files} | {:.0} | {:.2} | {:.0} | {cpu:.1} | {:.0} ({idle:.0}) |",
            bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            rate(resources as usize, elapsed),
            peak
        );
    }
    drop(server);
}
