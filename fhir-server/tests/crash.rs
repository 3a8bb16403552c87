//! Crash test: concurrent writers against the real binary, `kill -9`, restart. Every acknowledged
//! write must be readable, `verify` must pass, and history must catch up with the log.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_fhir-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(data: &std::path::Path, port: u16) -> Child {
    Command::new(BINARY)
        .args(["--data", data.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/metadata")).send().await {
            if response.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;

    // id -> last acknowledged version.
    let acknowledged: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..16 {
        let client = client.clone();
        let base = base.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                n += 1;
                let body = json!({ "resourceType": "Patient", "name": [{ "family": format!("W{writer}N{n}") }] });
                let Ok(response) = client.post(format!("{base}/Patient")).header("content-type", "application/fhir+json").body(body.to_string()).send().await else {
                    return;
                };
                if response.status() != 201 {
                    return;
                }
                let Ok(created) = response.json::<Value>().await else { return };
                let id = created["id"].as_str().unwrap().to_string();
                acknowledged.lock().unwrap().insert(id.clone(), 1);
                // Every other resource also gets an update, so streams have several versions.
                if n.is_multiple_of(2) {
                    let mut next = created.clone();
                    next["active"] = json!(true);
                    let Ok(response) = client.put(format!("{base}/Patient/{id}")).header("content-type", "application/fhir+json").body(next.to_string()).send().await else {
                        return;
                    };
                    if response.status() != 200 {
                        return;
                    }
                    acknowledged.lock().unwrap().insert(id, 2);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().expect("kill -9");
    server.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 50, "the writers got going before the kill ({} writes)", acknowledged.len());

    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;
    for (id, version) in &acknowledged {
        let response = client.get(format!("{base}/Patient/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "acknowledged Patient/{id} is readable");
        let body: Value = response.json().await.unwrap();
        let stored: u64 = body["meta"]["versionId"].as_str().unwrap().parse().unwrap();
        assert!(stored >= *version, "Patient/{id} has at least the acknowledged version {version}");
    }

    // History catches up with everything in the log, acknowledged or not: each stream's versions
    // are all there (history waits for the projector before answering).
    let mut history_versions = 0usize;
    let mut url = format!("{base}/Patient/_history?_count=1000");
    loop {
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        history_versions += page["entry"].as_array().map_or(0, Vec::len);
        match page["link"].as_array().and_then(|links| links.iter().find(|l| l["relation"] == "next")) {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    let acknowledged_versions: u64 = acknowledged.values().sum();
    assert!(history_versions as u64 >= acknowledged_versions, "history has every acknowledged version");

    server.kill().unwrap();
    server.wait().unwrap();
    let verify = Command::new(BINARY).args(["--data", data.path().to_str().unwrap(), "verify"]).output().unwrap();
    assert!(verify.status.success(), "verify passes: {}", String::from_utf8_lossy(&verify.stdout));
}

/// A transaction of `size` patients that all carry the identifier `http://example.org/tx|{tag}`.
fn tagged_transaction(tag: u64, size: usize) -> Value {
    let entries: Vec<Value> = (0..size)
        .map(|n| {
            json!({
                "fullUrl": format!("urn:uuid:7a7a7a7a-0000-4000-8000-{n:012}"),
                "resource": { "resourceType": "Patient", "identifier": [{ "system": "http://example.org/tx", "value": tag.to_string() }] },
                "request": { "method": "POST", "url": "Patient" }
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_are_wholly_present_or_absent_after_kill_9() {
    const SIZE: usize = 1_000;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;

    let sent: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let mut senders = Vec::new();
    for sender in 0..3u64 {
        let (client, base, sent) = (client.clone(), base.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            for round in 0.. {
                let tag = sender * 1_000 + round;
                sent.lock().unwrap().push((tag, false));
                let body = tagged_transaction(tag, SIZE).to_string();
                let request = client.post(&base).header("content-type", "application/fhir+json").header("prefer", "return=minimal").body(body);
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        sent.lock().unwrap().iter_mut().filter(|(t, _)| *t == tag).for_each(|(_, acknowledged)| *acknowledged = true);
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill().expect("kill -9");
    server.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    assert!(sent.iter().any(|(_, acknowledged)| *acknowledged), "some transactions committed before the kill");

    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;
    for (tag, acknowledged) in &sent {
        let url = format!("{base}/Patient?identifier=http://example.org/tx|{tag}&_summary=count");
        let response = client.get(url).header("prefer", "read-your-writes").send().await.unwrap();
        let total = response.json::<Value>().await.unwrap()["total"].as_u64().unwrap();
        if *acknowledged {
            assert_eq!(total, SIZE as u64, "acknowledged transaction {tag} is wholly present");
        } else {
            assert!(total == 0 || total == SIZE as u64, "transaction {tag} is wholly present or absent, not {total}");
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
