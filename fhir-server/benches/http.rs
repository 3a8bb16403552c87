//! HTTP benchmark: starts the release `fhir-server` binary on a fresh data directory and drives it
//! from this process with keep-alive HTTP/1.1 connections, then prints a table of throughput and
//! latency for creates and reads. Not a test: it asserts nothing about time.
//!
//! `cargo bench -p fhir-server --bench http [-- --clients 32 --seconds 10]`

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_fhir-server");

struct Settings {
    clients: usize,
    seconds: u64,
    sync: String,
}

fn settings() -> Settings {
    let mut settings = Settings { clients: 32, seconds: 10, sync: "full".into() };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--clients" => settings.clients = pair[1].parse().unwrap_or(settings.clients),
            "--seconds" => settings.seconds = pair[1].parse().unwrap_or(settings.seconds),
            "--sync" => settings.sync = pair[1].clone(),
            _ => {}
        }
    }
    settings
}

fn patient_body(n: usize) -> String {
    format!(
        r#"{{"resourceType":"Patient","active":true,"identifier":[{{"system":"http://example.org/mrn","value":"MRN{n}"}}],"name":[{{"use":"official","family":"Bench{n}","given":["Ada","Lovelace"]}}],"telecom":[{{"system":"phone","value":"555-{n:04}","use":"home"}}],"gender":"female","birthDate":"1990-01-02","address":[{{"line":["1 Main St"],"city":"Springfield","postalCode":"12345","country":"US"}}]}}"#
    )
}

struct Outcome {
    latencies_micros: Vec<u32>,
    ids: Vec<String>,
    errors: usize,
}

async fn client_loop(address: String, deadline: Instant, worker: usize, ids: Arc<Vec<String>>, create: bool) -> Outcome {
    let stream = TcpStream::connect(&address).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let mut outcome = Outcome { latencies_micros: Vec::with_capacity(100_000), ids: Vec::new(), errors: 0 };
    let mut n = worker * 10_000_000;
    while Instant::now() < deadline {
        n += 1;
        let request = if create {
            Request::post("/fhir/Patient")
                .header("host", &address)
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .body(Full::new(Bytes::from(patient_body(n))))
        } else {
            let id = &ids[n % ids.len()];
            Request::get(format!("/fhir/Patient/{id}")).header("host", &address).body(Full::new(Bytes::new()))
        }
        .expect("request");
        let started = Instant::now();
        // The connection task may not have taken the previous response's end yet: a request
        // sent before the connection is ready again fails.
        if sender.ready().await.is_err() {
            outcome.errors += 1;
            break;
        }
        let Ok(response) = sender.send_request(request).await else {
            outcome.errors += 1;
            break;
        };
        let status = response.status();
        let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
        let _ = response.into_body().collect().await;
        outcome.latencies_micros.push(started.elapsed().as_micros() as u32);
        if !status.is_success() {
            outcome.errors += 1;
        } else if let Some(location) = location {
            if let Some(id) = location.split('/').rev().nth(2) {
                outcome.ids.push(id.to_string());
            }
        }
    }
    outcome
}

async fn run_phase(address: &str, settings: &Settings, ids: Arc<Vec<String>>, create: bool) -> (Vec<u32>, Vec<String>, usize, Duration) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.seconds);
    let tasks: Vec<_> = (0..settings.clients)
        .map(|worker| tokio::spawn(client_loop(address.to_string(), deadline, worker, ids.clone(), create)))
        .collect();
    let mut latencies = Vec::new();
    let mut created = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let outcome = task.await.expect("client task");
        latencies.extend(outcome.latencies_micros);
        created.extend(outcome.ids);
        errors += outcome.errors;
    }
    (latencies, created, errors, started.elapsed())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn row(name: &str, clients: usize, mut latencies: Vec<u32>, errors: usize, elapsed: Duration) {
    latencies.sort_unstable();
    println!(
        "| {name:<8} | {clients:>7} | {:>9} | {:>6} | {:>10.0} | {:>7.2} | {:>7.2} |",
        latencies.len(),
        errors,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
}

fn main() {
    let settings = settings();
    let data = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let address = format!("127.0.0.1:{port}");
    let mut server = Command::new(BINARY)
        .args(["--data", data.path().to_str().expect("path"), "serve", "--listen", &address])
        .env("RUST_LOG", "warn")
        .env("FHIR_SERVER_SYNC", &settings.sync)
        .env("FHIR_SERVER_SEARCH_WAIT_MS", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fhir-server");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let ready_deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).await.is_err() {
            assert!(Instant::now() < ready_deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "fhir-server HTTP benchmark: {} cores, {} clients, {} s per phase, sync={}, load generator in the same machine",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            settings.clients,
            settings.seconds,
            settings.sync
        );
        println!("| workload | clients |  requests | errors |      req/s | p50 ms  | p99 ms  |");
        println!("|----------|---------|-----------|--------|------------|---------|---------|");
        let (latencies, ids, errors, elapsed) = run_phase(&address, &settings, Arc::new(Vec::new()), true).await;
        row("create", settings.clients, latencies, errors, elapsed);
        // Reads are measured on a settled server: first let the projections index the creates.
        let settled = Instant::now();
        let search = format!("http://{address}/fhir/Patient?_summary=count");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("client");
        let response = client.get(search).header("prefer", "read-your-writes").send().await.expect("search");
        assert!(response.status().is_success(), "the settling search succeeded");
        let caught_up = settled.elapsed();
        let (latencies, _, errors, elapsed) = run_phase(&address, &settings, Arc::new(ids), false).await;
        row("read", settings.clients, latencies, errors, elapsed);
        println!("(the search index caught up with the creates {:.1} s after the create phase ended)", caught_up.as_secs_f64());
    });
    let _ = server.kill();
    let _ = server.wait();
}
