//! Black-box tests of create, read, vread, update, patch and delete over HTTP.

mod common;

use common::{assert_outcome, json_with_status, patient, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn create_assigns_id_version_and_headers() {
    let server = TestServer::start().await;
    let mut body = patient("Chalmers");
    body["id"] = json!("client-chosen");
    let response = server.post_json("Patient", &body).await;
    assert_eq!(response.status(), 201);
    let headers = response.headers().clone();
    assert_eq!(headers["etag"], "W/\"1\"");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    assert!(headers["last-modified"].to_str().unwrap().ends_with(" GMT"));
    let created: serde_json::Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "the server assigns the id on create");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let location = headers["location"].to_str().unwrap();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", server.base));

    let read = server.get(&format!("Patient/{id}")).await;
    assert_eq!(read.headers()["etag"], "W/\"1\"");
    let read = json_with_status(read, 200).await;
    assert_eq!(read, created);
    server.stop().await;
}

#[tokio::test]
async fn update_versions_and_vread_every_version() {
    let server = TestServer::start().await;
    let created = server.create(patient("One")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut next = created.clone();
    next["name"][0]["family"] = json!("Two");
    let response = server.put_json(&format!("Patient/{id}"), &next).await;
    assert_eq!(response.headers()["etag"], "W/\"2\"");
    let updated = json_with_status(response, 200).await;
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["name"][0]["family"], "Two");

    let v1 = json_with_status(server.get(&format!("Patient/{id}/_history/1")).await, 200).await;
    assert_eq!(v1["name"][0]["family"], "One");
    let v2 = json_with_status(server.get(&format!("Patient/{id}/_history/2")).await, 200).await;
    assert_eq!(v2, updated);
    let missing = json_with_status(server.get(&format!("Patient/{id}/_history/3")).await, 404).await;
    assert_outcome(&missing, "not-found");
    let not_number = json_with_status(server.get(&format!("Patient/{id}/_history/abc")).await, 404).await;
    assert_outcome(&not_number, "not-found");
    server.stop().await;
}

#[tokio::test]
async fn if_match_guards_updates() {
    let server = TestServer::start().await;
    let created = server.create(patient("Guarded")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let put = |tag: &'static str| {
        let mut changed = created.clone();
        changed["active"] = json!(false);
        server
            .client
            .put(server.url(&format!("Patient/{id}")))
            .header("content-type", "application/fhir+json")
            .header("if-match", tag)
            .body(changed.to_string())
    };
    let ok = put("W/\"1\"").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let stale = put("W/\"1\"").send().await.unwrap();
    let stale = json_with_status(stale, 412).await;
    assert_outcome(&stale, "conflict");
    let garbage = put("W/\"x\"").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn update_as_create_and_its_switch() {
    let server = TestServer::start().await;
    let mut body = patient("Chosen");
    body["id"] = json!("my-id.1");
    let response = server.put_json("Patient/my-id.1", &body).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers()["location"].to_str().unwrap().ends_with("/Patient/my-id.1/_history/1"));
    server.stop().await;

    let server = TestServer::start_with(|config| config.update_create = false).await;
    let refused = json_with_status(server.put_json("Patient/my-id.1", &body).await, 405).await;
    assert_outcome(&refused, "not-supported");
    server.stop().await;
}

#[tokio::test]
async fn update_checks_the_body_id() {
    let server = TestServer::start().await;
    let mut body = patient("Mismatch");
    body["id"] = json!("other");
    let mismatch = json_with_status(server.put_json("Patient/this", &body).await, 400).await;
    assert_outcome(&mismatch, "invalid");
    let missing = json_with_status(server.put_json("Patient/this", &patient("NoId")).await, 400).await;
    assert_outcome(&missing, "required");
    server.stop().await;
}

#[tokio::test]
async fn delete_then_gone_and_delete_again() {
    let server = TestServer::start().await;
    let created = server.create(patient("Deleted")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let deleted = server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.headers()["etag"], "W/\"2\"");

    let gone = server.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.headers()["etag"], "W/\"2\"");
    let gone = json_with_status(gone, 410).await;
    assert_outcome(&gone, "deleted");
    let gone_version = json_with_status(server.get(&format!("Patient/{id}/_history/2")).await, 410).await;
    assert_outcome(&gone_version, "deleted");
    let old = json_with_status(server.get(&format!("Patient/{id}/_history/1")).await, 200).await;
    assert_eq!(old, created);

    let again = server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["etag"], "W/\"2\"", "deleting a deleted resource writes no new version");

    let unknown = server.client.delete(server.url("Patient/never-was")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    // An update brings a deleted resource back as a new version.
    let mut revived = patient("Revived");
    revived["id"] = json!(id);
    let response = server.put_json(&format!("Patient/{id}"), &revived).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["etag"], "W/\"3\"");
    server.stop().await;
}

async fn send_patch(server: &TestServer, path: &str, content_type: &str, body: serde_json::Value) -> reqwest::Response {
    server
        .client
        .patch(server.url(path))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn json_patch() {
    let server = TestServer::start().await;
    let created = server.create(patient("Patched")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("Patient/{id}");
    let patch = json!([{ "op": "replace", "path": "/name/0/family", "value": "Changed" }, { "op": "add", "path": "/active", "value": false }]);
    let patched = json_with_status(send_patch(&server, &path, "application/json-patch+json", patch).await, 200).await;
    assert_eq!(patched["name"][0]["family"], "Changed");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["meta"]["versionId"], "2");

    let failing_test = json!([{ "op": "test", "path": "/active", "value": true }]);
    let failed = json_with_status(send_patch(&server, &path, "application/json-patch+json", failing_test).await, 422).await;
    assert_outcome(&failed, "processing");

    let invalid_result = json!([{ "op": "add", "path": "/birthDate", "value": "not-a-date" }]);
    let invalid = json_with_status(send_patch(&server, &path, "application/json-patch+json", invalid_result).await, 422).await;
    assert_eq!(invalid["resourceType"], "OperationOutcome");

    let changes_id = json!([{ "op": "replace", "path": "/id", "value": "other" }]);
    assert_eq!(send_patch(&server, &path, "application/json-patch+json", changes_id).await.status(), 422);

    let not_a_patch = json!({ "op": "replace" });
    assert_eq!(send_patch(&server, &path, "application/json-patch+json", not_a_patch).await.status(), 400);

    let wrong_type = json!([]);
    assert_eq!(send_patch(&server, &path, "text/plain", wrong_type).await.status(), 415);

    let missing = json!([]);
    assert_eq!(send_patch(&server, "Patient/nope", "application/json-patch+json", missing).await.status(), 404);

    // Nothing but the successful patch made a version.
    let current = json_with_status(server.get(&path).await, 200).await;
    assert_eq!(current["meta"]["versionId"], "2");
    server.stop().await;
}

fn operation(parts: Value) -> Value {
    json!({ "name": "operation", "part": parts })
}

#[tokio::test]
async fn fhirpath_patch() {
    let server = TestServer::start().await;
    let mut resource = patient("Before");
    resource["telecom"] = json!([{ "system": "phone", "value": "555-0100" }, { "system": "email", "value": "a@example.org" }]);
    let created = server.create(resource).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let patch = json!({ "resourceType": "Parameters", "parameter": [
        operation(json!([{ "name": "type", "valueCode": "replace" }, { "name": "path", "valueString": "Patient.name[0].family" }, { "name": "value", "valueString": "After" }])),
        operation(json!([{ "name": "type", "valueCode": "add" }, { "name": "path", "valueString": "Patient" }, { "name": "name", "valueString": "deceased" }, { "name": "value", "valueDateTime": "2020-01-02" }])),
        operation(json!([{ "name": "type", "valueCode": "delete" }, { "name": "path", "valueString": "Patient.telecom.where(system = 'phone')" }])),
    ]});
    let patched = json_with_status(send_patch(&server, &path, "application/fhir+json", patch).await, 200).await;
    assert_eq!(patched["name"][0]["family"], "After");
    assert_eq!(patched["deceasedDateTime"], "2020-01-02");
    assert_eq!(patched["telecom"], json!([{ "system": "email", "value": "a@example.org" }]));
    assert_eq!(patched["meta"]["versionId"], "2");

    // A path that selects nothing to replace: 422, naming the operation.
    let nothing = json!({ "resourceType": "Parameters", "parameter": [
        operation(json!([{ "name": "type", "valueCode": "replace" }, { "name": "path", "valueString": "Patient.maritalStatus" }, { "name": "value", "valueCodeableConcept": { "text": "single" } }])),
    ]});
    let failed = json_with_status(send_patch(&server, &path, "application/fhir+json", nothing).await, 422).await;
    assert_eq!(failed["issue"][0]["expression"][0], "Parameters.parameter[0]");
    // A result that is not valid FHIR: 422.
    let bad_value = json!({ "resourceType": "Parameters", "parameter": [
        operation(json!([{ "name": "type", "valueCode": "replace" }, { "name": "path", "valueString": "Patient.birthDate" }, { "name": "value", "valueString": "yesterday" }])),
    ]});
    json_with_status(send_patch(&server, &path, "application/fhir+json", bad_value).await, 422).await;
    // Not a Parameters resource: 400.
    let not_parameters = json!({ "resourceType": "Patient" });
    json_with_status(send_patch(&server, &path, "application/fhir+json", not_parameters).await, 400).await;

    let current = json_with_status(server.get(&path).await, 200).await;
    assert_eq!(current["meta"]["versionId"], "2");
    server.stop().await;
}

#[tokio::test]
async fn an_update_that_changes_nothing_writes_nothing() {
    let server = TestServer::start().await;
    let created = server.create(patient("Same")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let same = json_with_status(server.put_json(&path, &created).await, 200).await;
    assert_eq!(same["meta"]["versionId"], "1");
    assert_eq!(same["meta"]["lastUpdated"], created["meta"]["lastUpdated"]);
    let mut changed = created.clone();
    changed["active"] = json!(false);
    let changed = json_with_status(server.put_json(&path, &changed).await, 200).await;
    assert_eq!(changed["meta"]["versionId"], "2");
    server.stop().await;
}

#[tokio::test]
async fn conditional_reads() {
    let server = TestServer::start().await;
    let created = server.create(patient("Cached")).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let cached = server.client.get(server.url(&path)).header("if-none-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(cached.status(), 304);
    let changed = server.client.get(server.url(&path)).header("if-none-match", "W/\"7\"").send().await.unwrap();
    assert_eq!(changed.status(), 200);
    let later = "Fri, 01 Jan 2100 00:00:00 GMT";
    let not_modified = server.client.get(server.url(&path)).header("if-modified-since", later).send().await.unwrap();
    assert_eq!(not_modified.status(), 304);
    let earlier = "Thu, 01 Jan 2015 00:00:00 GMT";
    let modified = server.client.get(server.url(&path)).header("if-modified-since", earlier).send().await.unwrap();
    assert_eq!(modified.status(), 200);
    let bad = server.client.get(server.url(&path)).header("if-modified-since", "yesterday").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn prefer_return() {
    let server = TestServer::start().await;
    let minimal = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient("Minimal").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.text().await.unwrap().is_empty());

    let outcome = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient("Outcome").to_string())
        .send()
        .await
        .unwrap();
    let outcome = json_with_status(outcome, 201).await;
    assert_outcome(&outcome, "informational");
    server.stop().await;
}

#[tokio::test]
async fn summary_and_elements() {
    let server = TestServer::start().await;
    let mut body = patient("Summary");
    body["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>" });
    body["photo"] = json!([{ "contentType": "image/png", "data": "AAAA" }]);
    let created = server.create(body).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());

    let summary = json_with_status(server.get(&format!("{path}?_summary=true")).await, 200).await;
    assert!(summary.get("photo").is_none(), "photo is not a summary element");
    assert!(summary.get("text").is_none());
    assert_eq!(summary["name"][0]["family"], "Summary");
    assert!(summary["meta"]["tag"].to_string().contains("SUBSETTED"));

    let elements = json_with_status(server.get(&format!("{path}?_elements=gender")).await, 200).await;
    assert_eq!(elements["gender"], "female");
    assert!(elements.get("name").is_none());
    assert_eq!(elements["id"], created["id"]);

    let data = json_with_status(server.get(&format!("{path}?_summary=data")).await, 200).await;
    assert!(data.get("text").is_none());
    assert!(data.get("photo").is_some());

    assert_eq!(server.get(&format!("{path}?_summary=bogus")).await.status(), 400);
    assert_eq!(server.get(&format!("{path}?_summary=count")).await.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_if_match_updates_never_lose_one() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let created = server.create(patient("Contended")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let server = server.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for round in 0..10 {
                let current = server.get(&format!("Patient/{id}")).await;
                let etag = current.headers()["etag"].to_str().unwrap().to_string();
                let mut body: serde_json::Value = current.json().await.unwrap();
                // A change every time: an update that changes nothing writes no version.
                body["name"][0]["given"] = json!([format!("W{writer}R{round}")]);
                let response = server
                    .client
                    .put(server.url(&format!("Patient/{id}")))
                    .header("content-type", "application/fhir+json")
                    .header("if-match", etag)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => won.push(response.headers()["etag"].to_str().unwrap().to_string()),
                    412 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            won
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.extend(task.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = versions.iter().collect();
    assert_eq!(distinct.len(), versions.len(), "every successful update got its own version");
    let last = json_with_status(server.get(&format!("Patient/{id}")).await, 200).await;
    let final_version: usize = last["meta"]["versionId"].as_str().unwrap().parse().unwrap();
    assert_eq!(versions.len(), final_version - 1, "successes equal the final version minus one");
}
