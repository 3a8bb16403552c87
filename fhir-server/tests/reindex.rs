//! Rebuilding the search index by replay: live (`POST $reindex`, searches keep answering, the new
//! index is swapped in) and offline (`fhir-server reindex`). Results are identical before and after.

mod common;

use std::time::Duration;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

const QUERIES: &[&str] = &[
    "Patient?name=re&_sort=family&_count=100",
    "Patient?gender=female&_total=accurate&_count=5",
    "Observation?subject:Patient.name=re0&_count=100",
    "Patient?_has:Observation:subject:status=final&_count=100",
];

async fn answers(server: &TestServer) -> Vec<Value> {
    let mut all = Vec::new();
    for query in QUERIES {
        let response = server.client.get(server.url(query)).header("prefer", "read-your-writes").send().await.unwrap();
        let bundle = json_with_status(response, 200).await;
        let ids: Vec<Value> = bundle["entry"].as_array().cloned().unwrap_or_default().iter().map(|e| e["resource"]["id"].clone()).collect();
        all.push(json!({ "total": bundle["total"], "ids": ids }));
    }
    all
}

async fn load(server: &TestServer) {
    for n in 0..20 {
        let created = server.create(patient(&format!("Re{n}"))).await;
        if n % 2 == 0 {
            server
                .create(json!({
                    "resourceType": "Observation", "status": "final", "code": { "text": "x" },
                    "subject": { "reference": format!("Patient/{}", created["id"].as_str().unwrap()) }
                }))
                .await;
        }
        if n % 5 == 0 {
            server.client.delete(server.url(&format!("Patient/{}", created["id"].as_str().unwrap()))).send().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reindex_swaps_in_an_identical_index() {
    let server = TestServer::start().await;
    load(&server).await;
    let before = answers(&server).await;
    assert!(before[0]["ids"].as_array().unwrap().len() >= 10);

    let started = server.client.post(server.url("$reindex")).send().await.unwrap();
    assert_eq!(started.status(), 202);
    // Searches keep answering while the rebuild runs.
    let mut done = false;
    for _ in 0..200 {
        assert_eq!(server.get("Patient?name=re&_count=1").await.status(), 200);
        let status: Value = server.get("$reindex").await.json().await.unwrap();
        if status["parameter"][0]["valueCode"] == "done" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done, "the reindex finished");
    assert_eq!(answers(&server).await, before);
    // The new index follows new writes.
    server.create(patient("Re99")).await;
    assert_eq!(answers(&server).await[0]["ids"].as_array().unwrap().len(), before[0]["ids"].as_array().unwrap().len() + 1);
    let pointer = std::fs::read_to_string(server.data.path().join("search.current")).unwrap();
    assert!(pointer.starts_with("search-"));
    assert!(!server.data.path().join("search.db").exists(), "the old index file is removed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_reindex_gives_the_same_answers() {
    let server = TestServer::start().await;
    load(&server).await;
    let before = answers(&server).await;
    let keep = server.stop().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args(["--data", keep.path().to_str().unwrap(), "reindex"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let server = TestServer::start_with(|config| config.data_dir = keep.path().to_path_buf()).await;
    assert_eq!(answers(&server).await, before);
    server.stop().await;
}
