//! Black-box tests of batch and transaction Bundles: atomic commits with references rewritten,
//! conditional entries, rollback that leaves no trace, independent batch entries, concurrency
//! between transactions, size limits, and a transaction of thousands of entries.

mod common;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

async fn post_bundle(server: &TestServer, bundle: &Value) -> reqwest::Response {
    server.post_json("", bundle).await
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn batch(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "batch", "entry": entries })
}

fn post(full_url: &str, resource: Value) -> Value {
    let resource_type = resource["resourceType"].as_str().unwrap().to_string();
    json!({ "fullUrl": full_url, "resource": resource, "request": { "method": "POST", "url": resource_type } })
}

fn observation(subject: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
        "subject": { "reference": subject }
    })
}

fn id_of(location: &Value) -> String {
    location.as_str().unwrap().split('/').nth(1).unwrap().to_string()
}

async fn count(server: &TestServer, query: &str) -> u64 {
    let response = server.client.get(server.url(query)).header("prefer", "read-your-writes").send().await.unwrap();
    json_with_status(response, 200).await["total"].as_u64().unwrap()
}

#[tokio::test]
async fn transaction_commits_and_rewrites_references() {
    let server = TestServer::start().await;
    let mut obs = observation("urn:uuid:8e9a7b4c-0000-4000-8000-000000000001", "8867-4");
    obs["extension"] = json!([{ "url": "http://example.org/about", "valueReference": { "reference": "urn:uuid:8e9a7b4c-0000-4000-8000-000000000001" } }]);
    obs["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:8e9a7b4c-0000-4000-8000-000000000001\">the patient</a></div>" });
    let mut fixed = patient("Fixed");
    fixed["id"] = json!("fixed-1");
    let bundle = transaction(vec![
        post("urn:uuid:8e9a7b4c-0000-4000-8000-000000000002", obs),
        post("urn:uuid:8e9a7b4c-0000-4000-8000-000000000001", patient("Urn")),
        json!({ "fullUrl": "http://example.org/fhir/Patient/fixed-1", "resource": fixed, "request": { "method": "PUT", "url": "Patient/fixed-1" } }),
        json!({ "request": { "method": "GET", "url": "Patient?name=urn" } }),
    ]);
    let response = json_with_status(post_bundle(&server, &bundle).await, 200).await;
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "one response entry per request entry, in order");
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["location"], "Patient/fixed-1/_history/1");
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");
    assert!(entries[0]["response"]["lastModified"].as_str().unwrap().contains('T'));
    assert_eq!(entries[0]["response"]["lastModified"], entries[1]["response"]["lastModified"], "one commit time");
    // The read ran after the commit and sees it.
    assert_eq!(entries[3]["response"]["status"], "200 OK");
    assert_eq!(entries[3]["resource"]["type"], "searchset");

    let patient_id = id_of(&entries[1]["response"]["location"]);
    let observation_id = id_of(&entries[0]["response"]["location"]);
    let stored = json_with_status(server.get(&format!("Observation/{observation_id}")).await, 200).await;
    let expected = format!("Patient/{patient_id}");
    assert_eq!(stored["subject"]["reference"], expected.as_str());
    assert_eq!(stored["extension"][0]["valueReference"]["reference"], expected.as_str());
    assert!(stored["text"]["div"].as_str().unwrap().contains(&format!("href=\"{expected}\"")));
    assert_eq!(count(&server, &format!("Observation?subject={expected}&_summary=count")).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn conditional_entries_in_a_transaction() {
    let server = TestServer::start().await;
    let mut known = patient("Known");
    known["identifier"] = json!([{ "system": "http://example.org/mrn", "value": "42" }]);
    let known = server.create(known).await;
    let known_id = known["id"].as_str().unwrap().to_string();
    let gone = server.create(patient("Gone")).await;
    let gone_id = gone["id"].as_str().unwrap().to_string();
    let mut updated = patient("Updated");
    updated["identifier"] = json!([{ "system": "http://example.org/mrn", "value": "42" }]);

    let mut conditional = post("urn:uuid:0f3c2a1e-0000-4000-8000-000000000001", patient("Duplicate"));
    conditional["request"]["ifNoneExist"] = json!("identifier=http://example.org/mrn|42");
    let bundle = transaction(vec![
        conditional,
        post("urn:uuid:0f3c2a1e-0000-4000-8000-000000000002", observation("urn:uuid:0f3c2a1e-0000-4000-8000-000000000001", "1-1")),
        post("urn:uuid:0f3c2a1e-0000-4000-8000-000000000003", observation("Patient?identifier=http://example.org/mrn|42", "2-2")),
        json!({ "request": { "method": "DELETE", "url": format!("Patient?_id={gone_id}") } }),
        json!({ "resource": updated, "request": { "method": "PUT", "url": "Patient?identifier=http://example.org/mrn|42" } }),
    ]);
    // The conditional create and the conditional update name the same patient: one resource,
    // touched twice, is refused.
    let refused = json_with_status(post_bundle(&server, &bundle).await, 400).await;
    assert!(refused["issue"][0]["diagnostics"].as_str().unwrap().contains("both write"), "{refused}");

    let mut entries = bundle["entry"].as_array().unwrap().clone();
    entries.pop();
    let response = json_with_status(post_bundle(&server, &transaction(entries)).await, 200).await;
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "200 OK", "ifNoneExist matched: nothing created");
    for index in [1, 2] {
        let id = id_of(&entries[index]["response"]["location"]);
        let stored = json_with_status(server.get(&format!("Observation/{id}")).await, 200).await;
        assert_eq!(stored["subject"]["reference"], format!("Patient/{known_id}"), "entry {index}");
    }
    assert_eq!(entries[3]["response"]["status"], "204 No Content");
    assert_eq!(server.get(&format!("Patient/{gone_id}")).await.status(), 410);
    assert_eq!(count(&server, "Patient?identifier=http://example.org/mrn|42&_summary=count").await, 1);

    // A conditional reference that matches nothing fails the whole transaction with 412.
    let dangling = transaction(vec![post("urn:uuid:0f3c2a1e-0000-4000-8000-000000000009", observation("Patient?identifier=http://example.org/mrn|nobody", "3-3"))]);
    let failed = json_with_status(post_bundle(&server, &dangling).await, 412).await;
    assert_eq!(failed["issue"][0]["expression"][0], "Bundle.entry[0]");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_entry_leaves_no_trace() {
    let server = TestServer::start().await;
    let before_history = json_with_status(server.get("_history").await, 200).await;
    let mut invalid = patient("Invalid");
    invalid["birthDate"] = json!("not a date");
    let bundle = transaction(vec![
        post("urn:uuid:3b1d9a70-0000-4000-8000-000000000001", patient("Rollback")),
        post("urn:uuid:3b1d9a70-0000-4000-8000-000000000002", observation("urn:uuid:3b1d9a70-0000-4000-8000-000000000001", "8867-4")),
        post("urn:uuid:3b1d9a70-0000-4000-8000-000000000003", invalid),
    ]);
    let failed = json_with_status(post_bundle(&server, &bundle).await, 400).await;
    let issue = &failed["issue"][0];
    assert_eq!(issue["expression"][0], "Bundle.entry[2].resource.Patient.birthDate", "{failed}");
    assert!(issue["diagnostics"].as_str().unwrap().starts_with("entry 2:"));
    assert!(!failed.to_string().contains("not a date"), "values are never echoed");

    assert_eq!(count(&server, "Patient?name=rollback&_summary=count").await, 0);
    assert_eq!(count(&server, "Observation?_summary=count").await, 0);
    let after_history = json_with_status(server.get("_history").await, 200).await;
    assert_eq!(after_history.get("entry"), before_history.get("entry"));

    // An ifMatch on a stale version fails it all too.
    let existing = server.create(patient("Versioned")).await;
    let id = existing["id"].as_str().unwrap();
    let mut stale = existing.clone();
    stale["active"] = json!(false);
    let bundle = transaction(vec![
        post("urn:uuid:3b1d9a70-0000-4000-8000-000000000004", patient("Innocent")),
        json!({ "resource": stale, "request": { "method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\"" } }),
    ]);
    json_with_status(post_bundle(&server, &bundle).await, 412).await;
    assert_eq!(count(&server, "Patient?name=innocent&_summary=count").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn batch_entries_are_independent() {
    let server = TestServer::start().await;
    let mut invalid = patient("Invalid");
    invalid["gender"] = json!(42);
    let existing = server.create(patient("Existing")).await;
    let id = existing["id"].as_str().unwrap().to_string();
    let patch = json!({ "resourceType": "Parameters", "parameter": [{ "name": "operation", "part": [
        { "name": "type", "valueCode": "replace" }, { "name": "path", "valueString": "Patient.active" }, { "name": "value", "valueBoolean": false }
    ]}]});
    use base64::Engine;
    let json_patch = base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"replace","path":"/gender","value":"male"}]"#);
    let bundle = batch(vec![
        post("urn:uuid:6c7d8e9f-0000-4000-8000-000000000001", patient("Good")),
        post("urn:uuid:6c7d8e9f-0000-4000-8000-000000000002", invalid),
        post("urn:uuid:6c7d8e9f-0000-4000-8000-000000000003", observation("urn:uuid:6c7d8e9f-0000-4000-8000-000000000001", "8867-4")),
        json!({ "request": { "method": "GET", "url": format!("Patient/{id}") } }),
        json!({ "request": { "method": "GET", "url": "Patient/does-not-exist" } }),
        json!({ "resource": patch, "request": { "method": "PATCH", "url": format!("Patient/{id}") } }),
        json!({ "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json", "data": json_patch }, "request": { "method": "PATCH", "url": format!("Patient/{id}") } }),
    ]);
    let response = json_with_status(post_bundle(&server, &bundle).await, 200).await;
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<&str> = response["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "400 Bad Request", "400 Bad Request", "200 OK", "404 Not Found", "200 OK", "200 OK"]);
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert!(entries[2]["response"]["outcome"].to_string().contains("transaction"), "the refusal says what to do instead");
    assert_eq!(entries[3]["resource"]["id"], id.as_str());
    let patched = json_with_status(server.get(&format!("Patient/{id}")).await, 200).await;
    assert_eq!(patched["active"], false);
    assert_eq!(patched["gender"], "male");
    assert_eq!(patched["meta"]["versionId"], "3");
    assert_eq!(count(&server, "Patient?name=good&_summary=count").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_bundles_are_clear_errors() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 64 * 1024).await;
    assert_eq!(post_bundle(&server, &json!({ "resourceType": "Bundle", "type": "collection" })).await.status(), 400);
    assert_eq!(post_bundle(&server, &patient("NotABundle")).await.status(), 400);
    let unknown_method = transaction(vec![json!({ "request": { "method": "FETCH", "url": "Patient" } })]);
    let failed = json_with_status(post_bundle(&server, &unknown_method).await, 400).await;
    assert_eq!(failed["issue"][0]["expression"][0], "Bundle.entry[0].request.method");
    let huge: Vec<Value> = (0..400).map(|n| post(&format!("urn:uuid:00000000-0000-4000-8000-{n:012}"), patient("Big"))).collect();
    let too_big = post_bundle(&server, &transaction(huge)).await;
    assert_eq!(too_big.status(), 413);
    let empty = json_with_status(post_bundle(&server, &transaction(vec![])).await, 200).await;
    assert_eq!(empty["type"], "transaction-response");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_transactions_on_one_resource() {
    let server = TestServer::start().await;
    let existing = server.create(patient("Contended")).await;
    let id = existing["id"].as_str().unwrap().to_string();
    let contender = |name: &str| {
        let mut changed = existing.clone();
        changed["name"][0]["family"] = json!(name);
        transaction(vec![
            post(&format!("urn:uuid:9a9a9a9a-0000-4000-8000-{:012}", name.len()), patient(&format!("Side{name}"))),
            json!({ "resource": changed, "request": { "method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"1\"" } }),
        ])
    };
    let (first, second) = (contender("Alpha"), contender("Bravo!"));
    let (a, b) = tokio::join!(post_bundle(&server, &first), post_bundle(&server, &second));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "one wins, the other is refused");
    let current = json_with_status(server.get(&format!("Patient/{id}")).await, 200).await;
    let winner = current["name"][0]["family"].as_str().unwrap().to_string();
    assert_eq!(current["meta"]["versionId"], "2");
    // Only the winner's side entry exists.
    assert_eq!(count(&server, &format!("Patient?family=Side{winner}&_summary=count")).await, 1);
    assert_eq!(count(&server, "Patient?family=Side&_summary=count").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_transaction_of_three_thousand_entries() {
    let server = TestServer::start().await;
    // moto takes one request at a time: in AWS mode a smaller one, still three times what one
    // DynamoDB transaction holds.
    let size = if common::aws_mode() { 300 } else { 3_000 };
    let subject = "urn:uuid:5e5e5e5e-0000-4000-8000-000000000000";
    let mut entries = vec![post(subject, patient("Large"))];
    for n in 1..size {
        entries.push(post(&format!("urn:uuid:5e5e5e5e-0000-4000-8000-{n:012}"), observation(subject, &format!("{n}-0"))));
    }
    let response = server
        .client
        .post(server.base.clone())
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(transaction(entries).to_string())
        .send()
        .await
        .unwrap();
    let response = json_with_status(response, 200).await;
    assert_eq!(response["entry"].as_array().unwrap().len(), size);
    assert!(response["entry"][1].get("resource").is_none(), "return=minimal leaves the resources out");
    let patient_id = id_of(&response["entry"][0]["response"]["location"]);
    assert_eq!(count(&server, &format!("Observation?subject=Patient/{patient_id}&_summary=count")).await, size as u64 - 1);
    server.stop().await;
}
