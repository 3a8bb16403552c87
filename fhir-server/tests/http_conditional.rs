//! Black-box tests of conditional create, update, patch and delete, including N identical
//! conditional creates at once making exactly one resource.

mod common;

use std::sync::Arc;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

fn with_identifier(family: &str, value: &str) -> Value {
    let mut resource = patient(family);
    resource["identifier"] = json!([{ "system": "http://mrn", "value": value }]);
    resource
}

async fn count(server: &TestServer, query: &str) -> u64 {
    let response = server.client.get(server.url(query)).header("prefer", "read-your-writes").send().await.unwrap();
    json_with_status(response, 200).await["total"].as_u64().unwrap()
}

async fn create_if_none_exist(server: &TestServer, body: &Value, criteria: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", criteria)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn conditional_create_zero_one_many() {
    let server = TestServer::start().await;
    let first = create_if_none_exist(&server, &with_identifier("A", "1"), "identifier=http://mrn|1").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = create_if_none_exist(&server, &with_identifier("A", "1"), "identifier=http://mrn|1").await;
    assert_eq!(again.status(), 200, "one match: the create is ignored");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    server.create(with_identifier("B", "2")).await;
    server.create(with_identifier("C", "2")).await;
    let many = create_if_none_exist(&server, &with_identifier("D", "2"), "identifier=http://mrn|2").await;
    assert_eq!(many.status(), 412);
    let unknown = create_if_none_exist(&server, &with_identifier("E", "3"), "frobnicate=1").await;
    assert_eq!(unknown.status(), 400, "unknown criteria are errors, not ignored");
    assert_eq!(count(&server, "Patient?_summary=count").await, 3);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_identical_conditional_creates_make_one_resource() {
    let server = Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            create_if_none_exist(&server, &with_identifier("Same", "42"), "identifier=http://mrn|42").await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "exactly one create: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 200));
    assert_eq!(count(&server, "Patient?identifier=http://mrn|42&_summary=count").await, 1);
}

#[tokio::test]
async fn conditional_update_patch_and_delete() {
    let server = TestServer::start().await;
    // No match and no id: created.
    let created = server.put_json("Patient?identifier=http://mrn|7", &with_identifier("Seven", "7")).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    // One match: updated in place.
    let mut changed = with_identifier("Seven", "7");
    changed["active"] = json!(false);
    let updated = json_with_status(server.put_json("Patient?identifier=http://mrn|7", &changed).await, 200).await;
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["meta"]["versionId"], "2");
    // A body id that is not the match's: 400.
    let mut wrong = changed.clone();
    wrong["id"] = json!("someone-else");
    assert_eq!(server.put_json("Patient?identifier=http://mrn|7", &wrong).await.status(), 400);

    let patched = server
        .client
        .patch(server.url("Patient?identifier=http://mrn|7"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{ "op": "replace", "path": "/active", "value": true }]).to_string())
        .send()
        .await
        .unwrap();
    let patched = json_with_status(patched, 200).await;
    assert_eq!(patched["active"], true);
    assert_eq!(patched["meta"]["versionId"], "3");

    server.create(with_identifier("Eight", "8")).await;
    server.create(with_identifier("Eight", "8")).await;
    assert_eq!(server.put_json("Patient?identifier=http://mrn|8", &with_identifier("Eight", "8")).await.status(), 412);
    assert_eq!(server.client.delete(server.url("Patient?identifier=http://mrn|8")).send().await.unwrap().status(), 412);

    let deleted = server.client.delete(server.url("Patient?identifier=http://mrn|7")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(server.get(&format!("Patient/{}", created["id"].as_str().unwrap())).await.status(), 410);
    let nothing = server.client.delete(server.url("Patient?identifier=http://mrn|7")).send().await.unwrap();
    assert_eq!(nothing.status(), 200, "no match: nothing to delete");
    assert_eq!(server.client.delete(server.url("Patient")).send().await.unwrap().status(), 412, "criteria are required");
    server.stop().await;
}
