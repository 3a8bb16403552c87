//! The server in AWS mode, black-box over HTTP, on the local stand-ins (moto's DynamoDB, Kinesis
//! and S3; osmem-server for OpenSearch): writes go to the DynamoDB log, the relay puts them on the
//! stream, and the stream workers build `_history` in DynamoDB and the search indexes in
//! OpenSearch, which the API waits for when asked to read its writes.

mod common;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

async fn read_your_writes(server: &TestServer, path: &str) -> Value {
    let response = server.client.get(server.url(path)).header("prefer", "read-your-writes").send().await.unwrap();
    json_with_status(response, 200).await
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"].as_array().into_iter().flatten().map(|entry| entry["resource"]["id"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_history_search_and_transactions_work_in_aws_mode() {
    let server = TestServer::start_aws().await;

    // Create, read, update, vread.
    let created = server.create(patient("Aws")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let read = json_with_status(server.get(&format!("Patient/{id}")).await, 200).await;
    assert_eq!(read, created, "read returns what create stored");
    let mut changed = created.clone();
    changed["gender"] = json!("male");
    let updated = json_with_status(server.put_json(&format!("Patient/{id}"), &changed).await, 200).await;
    assert_eq!(updated["meta"]["versionId"], "2");
    let first = json_with_status(server.get(&format!("Patient/{id}/_history/1")).await, 200).await;
    assert_eq!(first["gender"], "female");

    // History comes from DynamoDB, built from the stream; the API waits for it.
    let history = json_with_status(server.get(&format!("Patient/{id}/_history")).await, 200).await;
    let versions: Vec<&str> = history["entry"].as_array().unwrap().iter().map(|entry| entry["resource"]["meta"]["versionId"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2", "1"]);

    // Search comes from OpenSearch.
    let found = read_your_writes(&server, "Patient?family=aws&gender=male").await;
    assert_eq!(ids(&found), vec![id.clone()]);
    assert!(ids(&read_your_writes(&server, "Patient?gender=female").await).is_empty(), "only the current version is found");

    // A transaction: references between its entries resolved, then found by chained search.
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:7d3a1c2e-0000-4000-8000-000000000001", "resource": patient("Chained"), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:7d3a1c2e-0000-4000-8000-000000000002",
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                          "subject": {"reference": "urn:uuid:7d3a1c2e-0000-4000-8000-000000000001"},
                          "valueQuantity": {"value": 72.5, "system": "http://unitsofmeasure.org", "code": "kg"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let response = json_with_status(server.post_json("", &bundle).await, 200).await;
    assert_eq!(response["type"], "transaction-response");
    let chained = read_your_writes(&server, "Observation?subject.family=chained&value-quantity=gt70").await;
    assert_eq!(chained["entry"].as_array().map(Vec::len), Some(1), "{chained}");
    let included = read_your_writes(&server, "Observation?code=http://loinc.org|29463-7&_include=Observation:subject").await;
    assert_eq!(included["entry"].as_array().map(Vec::len), Some(2), "the match and its subject");

    // Conditional create finds the existing resource through the index.
    let conditional = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "family=chained")
        .body(patient("Chained").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), 200, "a match exists: nothing is created");

    // Delete: gone from search, listed in the type's history.
    let deleted = server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap();
    assert!(deleted.status().is_success());
    assert!(ids(&read_your_writes(&server, "Patient?family=aws").await).is_empty());
    let type_history = json_with_status(server.get("Patient/_history").await, 200).await;
    assert_eq!(type_history["entry"].as_array().map(Vec::len), Some(4), "two versions and a delete of one patient, one of the other");
    assert_eq!(type_history["entry"][0]["request"]["method"], "DELETE");

    // Reindex from the log while the server runs: new indexes behind the same aliases.
    fhir_server::aws::reindex(&server.config).await.unwrap();
    let chained = read_your_writes(&server, "Observation?subject.family=chained").await;
    assert_eq!(chained["entry"].as_array().map(Vec::len), Some(1), "found through the new generation: {chained}");
    assert!(ids(&read_your_writes(&server, "Patient?family=aws").await).is_empty(), "the deleted patient stays deleted");
    let replayed = json_with_status(server.get("Patient/_history").await, 200).await;
    assert_eq!(replayed["entry"], type_history["entry"], "replaying the history changes nothing");

    server.stop().await;
}
