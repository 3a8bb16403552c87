//! The audit trail: one record per request, with the caller, the interaction, the type and id,
//! the client and the outcome, never a query string or content; every answer names its request
//! id; `$audit` lists the records as AuditEvents to those allowed to search AuditEvent.

mod common;

use common::tokens::{token, trusted_issuer};
use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn every_request_is_recorded_without_content() {
    let auth = trusted_issuer().await;
    let server = TestServer::start_with(|config| config.auth = auth).await;
    let clinician = token("clinician-7", &["practitioner"], json!({}));
    let auditor = token("auditor-3", &["auditor"], json!({}));
    let started = fhir_core::instant::format_instant(fhir_core::instant::now());

    let created = server.client.post(server.url("Patient")).bearer_auth(&clinician).header("content-type", "application/fhir+json").body(patient("Secretname").to_string()).send().await.unwrap();
    let create_id = created.headers()["x-request-id"].to_str().unwrap().to_string();
    let id = json_with_status(created, 201).await["id"].as_str().unwrap().to_string();
    let read = server.client.get(server.url(&format!("Patient/{id}"))).bearer_auth(&clinician).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let read_id = read.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(read_id, create_id, "every request has its own id");
    assert_eq!(server.client.get(server.url("Patient?name=Secretname")).bearer_auth(&clinician).send().await.unwrap().status(), 200);
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{ "resource": patient("Secretname"), "request": { "method": "POST", "url": "Patient" } }] });
    let transaction = server.client.post(server.url("")).bearer_auth(&clinician).header("content-type", "application/fhir+json").body(bundle.to_string()).send().await.unwrap();
    assert_eq!(transaction.status(), 200);
    let refused = server.client.get(server.url(&format!("Patient/{id}"))).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("x-request-id"), "refused requests are recorded too");
    let forbidden = server.client.delete(server.url(&format!("Patient/{id}"))).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(server.client.get(server.url("$audit")).bearer_auth(&auditor).send().await.unwrap().status(), 403, "auditors of Patient may not read the trail");

    let trail = server.client.get(server.url("$audit?_count=50")).bearer_auth(&clinician).send().await.unwrap();
    let trail = json_with_status(trail, 200).await;
    let text = trail.to_string();
    assert!(!text.contains("Secretname") && !text.contains("name="), "no content and no query strings: {text}");
    let events: Vec<&Value> = trail["entry"].as_array().unwrap().iter().map(|entry| &entry["resource"]).collect();
    let subtypes: Vec<&str> = events.iter().map(|event| event["subtype"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(subtypes, vec!["operation", "delete", "read", "transaction", "search-type", "read", "create"], "newest first, one per request");
    let create = events.last().unwrap();
    assert_eq!(create["id"], create_id.as_str());
    assert_eq!(create["action"], "C");
    assert_eq!(create["outcome"], "0");
    assert_eq!(create["agent"][0]["who"]["identifier"]["value"], "clinician-7");
    assert_eq!(create["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(events[5]["entity"][0]["what"]["reference"], format!("Patient/{id}"));
    assert_eq!(events[2]["agent"][0]["who"]["identifier"]["value"], "unauthenticated");
    assert_eq!(events[2]["outcome"], "4");
    assert_eq!(events[1]["agent"][0]["who"]["identifier"]["value"], "auditor-3");
    assert_eq!(events[1]["outcome"], "4");

    let mine = server.client.get(server.url(&format!("$audit?agent=auditor-3&date=ge{started}"))).bearer_auth(&clinician).send().await.unwrap();
    let mine = json_with_status(mine, 200).await;
    assert_eq!(mine["entry"].as_array().unwrap().len(), 2, "the auditor's two requests: {mine}");
    let bad = server.client.get(server.url("$audit?name=x")).bearer_auth(&clinician).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    server.stop().await;
}
