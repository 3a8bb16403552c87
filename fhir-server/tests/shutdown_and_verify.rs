//! The real binary: SIGTERM finishes in-flight writes and exits cleanly; `verify` passes on an
//! intact log and names a tampered event.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_fhir-server");

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
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

fn verify(data: &std::path::Path) -> (bool, String) {
    let output = Command::new(BINARY).args(["--data", data.to_str().unwrap(), "verify"]).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_writes_and_verify_detects_tampering() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                loop {
                    let body = json!({ "resourceType": "Patient", "active": true });
                    let Ok(response) = client.post(format!("{base}/Patient")).header("content-type", "application/fhir+json").body(body.to_string()).send().await else {
                        return;
                    };
                    if response.status() != 201 {
                        return;
                    }
                    let Ok(created) = response.json::<Value>().await else { return };
                    acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let terminated = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "a graceful shutdown exits 0, got {status}");
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "writes happened before the shutdown");

    let (intact, report) = verify(data.path());
    assert!(intact, "verify passes on an intact log: {report}");
    assert!(report.contains(&format!("checked {} events", acknowledged.len())), "every acknowledged write, and nothing else, is in the log: {report}");

    let mut server = start(data.path(), port);
    wait_ready(&client, &base).await;
    for id in &acknowledged {
        assert_eq!(client.get(format!("{base}/Patient/{id}")).send().await.unwrap().status(), 200);
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Change one stored body behind the server's back: verify names the event and fails.
    let connection = rusqlite::Connection::open(data.path().join("events.db")).unwrap();
    let changed = connection
        .execute("UPDATE events SET body = CAST('{\"resourceType\":\"Patient\",\"active\":false}' AS BLOB) WHERE position = 5", [])
        .unwrap();
    assert_eq!(changed, 1);
    drop(connection);
    let (intact, report) = verify(data.path());
    assert!(!intact, "verify fails on a tampered log");
    assert!(report.contains("TAMPERED") && report.contains("position 5"), "the report names the event: {report}");
}
