//! Subscription benchmark: commit-to-delivery latency with 100 active rest-hook subscriptions
//! under a steady write load, against the release server (embedded, `sync = full`) and a
//! receiver in this process.
//!
//! `cargo bench -p fhir-server --bench subscriptions [-- --rate 200 --seconds 10 --subscriptions 100]`
//!
//! Each write is an Observation whose code matches exactly one subscription (with a payload, so
//! the receiver gets the resource). Latency is the time from the version's `meta.lastUpdated`
//! (stamped as the write commits) to its arrival at the receiver. Prints p50, p99 and the
//! maximum. Not a test.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::put;
use serde_json::{json, Value};
use support::{arg, free_port, Server};

/// Latencies measured by the receiver, in ms.
type Latencies = Arc<Mutex<Vec<f64>>>;

async fn receive(axum::extract::State(latencies): axum::extract::State<Latencies>, body: Bytes) -> StatusCode {
    let arrived = fhir_core::instant::now();
    let resource: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some((committed, _)) = resource["meta"]["lastUpdated"].as_str().and_then(fhir_core::instant::parse_range) {
        latencies.lock().unwrap().push((arrived - committed).as_seconds_f64() * 1000.0);
    }
    StatusCode::OK
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * quantile).round() as usize]
}

fn main() {
    let (rate, seconds, subscriptions) = (arg("rate", 200u64), arg("seconds", 10u64), arg("subscriptions", 100usize));
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.toml");
    std::fs::write(&config, "[subscriptions]\nallowed_hosts = [\"127.0.0.1\"]\n").unwrap();
    let port = free_port();
    let server = Server::start(&data.path().join("data"), port, &[("FHIR_SERVER_CONFIG", config.to_str().unwrap())]);
    let base = format!("http://127.0.0.1:{port}/fhir");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(format!("{base}/metadata")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let latencies: Latencies = Arc::default();
        let app = axum::Router::new().route("/{*path}", put(receive)).with_state(latencies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        for n in 0..subscriptions {
            let subscription = json!({ "resourceType": "Subscription", "status": "requested", "reason": "bench",
                "criteria": format!("Observation?code=http://loinc.org|bench-{n}"),
                "channel": { "type": "rest-hook", "endpoint": format!("{receiver}/s{n}"), "payload": "application/fhir+json" } });
            let response = client.post(format!("{base}/Subscription")).header("content-type", "application/fhir+json").body(subscription.to_string()).send().await.unwrap();
            assert_eq!(response.status(), 201);
        }
        let writes = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        let mut pending = Vec::new();
        for n in 0..writes {
            let due = started + interval * n as u32;
            tokio::time::sleep_until(due.into()).await;
            let observation = json!({ "resourceType": "Observation", "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": format!("bench-{}", n as usize % subscriptions) }] } });
            let (client, base) = (client.clone(), base.clone());
            pending.push(tokio::spawn(async move {
                let response = client.post(format!("{base}/Observation")).header("content-type", "application/fhir+json").header("prefer", "return=minimal").body(observation.to_string()).send().await.unwrap();
                assert_eq!(response.status(), 201);
            }));
        }
        for write in pending {
            write.await.unwrap();
        }
        let sent = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(60);
        while latencies.lock().unwrap().len() < writes as usize {
            assert!(Instant::now() < deadline, "only {} of {writes} notifications arrived", latencies.lock().unwrap().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut sorted = latencies.lock().unwrap().clone();
        sorted.sort_by(f64::total_cmp);
        println!("\nsubscriptions: {subscriptions} active, {writes} matching writes at {rate}/s over {:.1} s, release build, {} cores", sent.as_secs_f64(), std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!("| notifications | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        println!("| {} | {:.1} | {:.1} | {:.1} |", sorted.len(), percentile(&sorted, 0.5), percentile(&sorted, 0.99), sorted[sorted.len() - 1]);
    });
    drop(server);
}
