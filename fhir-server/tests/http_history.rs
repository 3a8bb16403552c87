//! Black-box tests of instance, type and system `_history`: order, paging, `_since`, `_at`.

mod common;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

fn entries(bundle: &Value) -> &Vec<Value> {
    bundle["entry"].as_array().expect("entries")
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == "next").map(|l| l["url"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn instance_history_lists_every_version_newest_first() {
    let server = TestServer::start().await;
    let created = server.create(patient("H")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut body = created.clone();
    body["active"] = json!(false);
    assert_eq!(server.put_json(&format!("Patient/{id}"), &body).await.status(), 200);
    assert_eq!(server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap().status(), 200);

    let bundle = json_with_status(server.get(&format!("Patient/{id}/_history")).await, 200).await;
    assert_eq!(bundle["type"], "history");
    let list = entries(&bundle);
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["request"]["method"], "DELETE");
    assert!(list[0].get("resource").is_none());
    assert_eq!(list[1]["request"]["method"], "PUT");
    assert_eq!(list[1]["resource"]["active"], false);
    assert_eq!(list[2]["request"]["method"], "POST");
    assert_eq!(list[2]["response"]["etag"], "W/\"1\"");
    assert_eq!(list[2]["fullUrl"], format!("{}/Patient/{id}", server.base));

    let unknown = server.get("Patient/nobody/_history").await;
    assert_eq!(unknown.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn type_and_system_history_with_paging() {
    let server = TestServer::start().await;
    for n in 0..7 {
        server.create(patient(&format!("P{n}"))).await;
    }
    server.create(json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" } })).await;

    let type_page = json_with_status(server.get("Patient/_history").await, 200).await;
    assert_eq!(entries(&type_page).len(), 7);
    assert!(entries(&type_page).iter().all(|e| e["resource"]["resourceType"] == "Patient"));
    let system = json_with_status(server.get("_history").await, 200).await;
    assert_eq!(entries(&system).len(), 8);
    assert_eq!(entries(&system)[0]["resource"]["resourceType"], "Observation", "newest first");

    // Walk Patient history three at a time: every version once, in order.
    let mut seen = Vec::new();
    let mut url = server.url("Patient/_history?_count=3");
    let mut pages = 0;
    loop {
        let page = json_with_status(server.client.get(&url).send().await.unwrap(), 200).await;
        pages += 1;
        for entry in entries(&page) {
            seen.push(entry["resource"]["name"][0]["family"].as_str().unwrap().to_string());
        }
        match next_link(&page) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, vec!["P6", "P5", "P4", "P3", "P2", "P1", "P0"]);

    let too_many = server.get("_history?_count=100000").await;
    assert_eq!(too_many.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn since_and_at() {
    let server = TestServer::start().await;
    let first = server.create(patient("Early")).await;
    let id = first["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut body = first.clone();
    body["active"] = json!(false);
    let second = json_with_status(server.put_json(&format!("Patient/{id}"), &body).await, 200).await;
    let second_time = second["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let first_time = first["meta"]["lastUpdated"].as_str().unwrap().to_string();

    let since = json_with_status(server.get(&format!("Patient/{id}/_history?_since={}", second_time)).await, 200).await;
    assert_eq!(entries(&since).len(), 1);
    assert_eq!(entries(&since)[0]["response"]["etag"], "W/\"2\"");

    // _at the first version's instant: only version 1 was current then.
    let at = json_with_status(server.get(&format!("Patient/{id}/_history?_at={}", first_time)).await, 200).await;
    assert_eq!(entries(&at).len(), 1);
    assert_eq!(entries(&at)[0]["response"]["etag"], "W/\"1\"");
    // _at a whole year covers both.
    let year = &first_time[..4];
    let at_year = json_with_status(server.get(&format!("Patient/{id}/_history?_at={year}")).await, 200).await;
    assert_eq!(entries(&at_year).len(), 2);

    assert_eq!(server.get("_history?_since=yesterday").await.status(), 400);
    server.stop().await;
}
