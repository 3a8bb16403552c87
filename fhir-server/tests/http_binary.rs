//! Binary over HTTP: raw bytes in and out with their content type, the JSON form with base64
//! `data`, versions, transactions, signed download and upload URLs, and the size limit (the
//! 100 MB round trip is `http_binary_large.rs`). The bytes never enter the log (history shows no
//! `data`).

mod common;

use base64::Engine;
use common::{assert_outcome, json_with_status, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const FHIR: &str = "application/fhir+json";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// POSTs raw `bytes` as `content_type`; the new Binary's id.
async fn upload(server: &TestServer, content_type: &str, bytes: Vec<u8>) -> String {
    let response = server.client.post(server.url("Binary")).header("content-type", content_type).body(bytes).send().await.unwrap();
    let created = json_with_status(response, 201).await;
    assert!(created.get("data").is_none(), "the answer does not carry the bytes: {created}");
    created["id"].as_str().unwrap().to_string()
}

async fn raw(server: &TestServer, path: &str) -> (String, Vec<u8>) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, response.bytes().await.unwrap().to_vec())
}

async fn fhir_form(server: &TestServer, path: &str) -> Value {
    json_with_status(server.client.get(server.url(path)).header("accept", FHIR).send().await.unwrap(), 200).await
}

/// The resources of `Binary/id/_history`: what the log holds.
async fn history(server: &TestServer, id: &str) -> Vec<Value> {
    let bundle = json_with_status(server.get(&format!("Binary/{id}/_history")).await, 200).await;
    bundle["entry"].as_array().unwrap().iter().map(|entry| entry["resource"].clone()).collect()
}

#[tokio::test]
async fn raw_and_json_forms_round_trip_and_the_log_holds_no_bytes() {
    let server = TestServer::start().await;
    let png: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
    let id = upload(&server, "image/png", png.clone()).await;

    let response = server.client.get(server.url(&format!("Binary/{id}"))).header("accept", "image/png").send().await.unwrap();
    assert_eq!(response.status(), 200, "an Accept naming the content type gets the bytes");
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["content-security-policy"], "sandbox");
    assert_eq!(response.headers()["etag"], "W/\"1\"");
    assert_eq!(response.bytes().await.unwrap().to_vec(), png);

    let resource = fhir_form(&server, &format!("Binary/{id}")).await;
    assert_eq!(resource["resourceType"], "Binary");
    assert_eq!(resource["contentType"], "image/png");
    assert_eq!(resource["data"], b64(&png), "the FHIR form carries the bytes in base64");
    let (_, again) = raw(&server, &format!("Binary/{id}?_format=json")).await;
    assert_eq!(serde_json::from_slice::<Value>(&again).unwrap()["data"], b64(&png));
    let stored = &history(&server, &id).await[0];
    assert!(stored.get("data").is_none(), "the log holds no bytes: {stored}");
    let hash = hex::encode(Sha256::digest(&png));
    assert!(stored.to_string().contains(&hash) && stored.to_string().contains("70001"), "the log holds the hash and size: {stored}");

    // The JSON form in: the bytes move to the blob store.
    let posted = json!({ "resourceType": "Binary", "contentType": "text/plain", "data": b64(b"hello, world") });
    let created = json_with_status(server.post_json("Binary", &posted).await, 201).await;
    let text_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(raw(&server, &format!("Binary/{text_id}")).await, ("text/plain".to_string(), b"hello, world".to_vec()));
    assert!(history(&server, &text_id).await[0].get("data").is_none());

    // A client cannot point a Binary at bytes it did not send.
    let mut forged = fhir_form(&server, &format!("Binary/{id}")).await;
    forged.as_object_mut().unwrap().remove("data");
    forged.as_object_mut().unwrap().remove("id");
    let created = json_with_status(server.post_json("Binary", &forged).await, 201).await;
    let forged_id = created["id"].as_str().unwrap();
    let (_, bytes) = raw(&server, &format!("Binary/{forged_id}")).await;
    assert!(bytes.is_empty(), "the forged location was dropped");
    assert!(fhir_form(&server, &format!("Binary/{forged_id}")).await.get("data").is_none());

    // Bad base64 is a 400.
    let broken = json!({ "resourceType": "Binary", "contentType": "text/plain", "data": "not base64!" });
    assert_outcome(&json_with_status(server.post_json("Binary", &broken).await, 400).await, "invalid");
    server.stop().await;
}

#[tokio::test]
async fn versions_transactions_and_signed_download_urls() {
    let server = TestServer::start().await;
    let id = upload(&server, "application/pdf", b"%PDF-1 first".to_vec()).await;
    let response = server.client.put(server.url(&format!("Binary/{id}"))).header("content-type", "application/pdf").header("x-security-context", "Patient/p1").body(b"%PDF-1 second".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = server.client.get(server.url(&format!("Binary/{id}"))).send().await.unwrap();
    assert_eq!(response.headers()["x-security-context"], "Patient/p1");
    assert_eq!(response.bytes().await.unwrap().to_vec(), b"%PDF-1 second");
    assert_eq!(raw(&server, &format!("Binary/{id}/_history/1")).await.1, b"%PDF-1 first", "vread serves the old bytes");

    // A transaction's Binary data goes to the blob store too.
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Binary", "contentType": "text/csv", "data": b64(b"a,b\n1,2\n") }, "request": { "method": "POST", "url": "Binary" } }
    ]});
    let answer = json_with_status(server.post_json("", &transaction).await, 200).await;
    let location = answer["entry"][0]["response"]["location"].as_str().unwrap();
    let tx_id = location.split('/').nth(1).unwrap().to_string();
    assert_eq!(raw(&server, &format!("Binary/{tx_id}")).await.1, b"a,b\n1,2\n");
    assert!(history(&server, &tx_id).await[0].get("data").is_none());

    // A signed URL works without a token until it expires; a changed one does not.
    let parameters = json_with_status(server.get(&format!("Binary/{id}/$download-url")).await, 200).await;
    let url = parameters["parameter"][0]["valueUrl"].as_str().unwrap().to_string();
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), b"%PDF-1 second");
    if url.contains("/_blob/") {
        let tampered = url.replace("signature=", "signature=00");
        let refused = reqwest::get(&tampered).await.unwrap();
        assert_eq!(refused.status(), 403);
        assert_outcome(&refused.json().await.unwrap(), "forbidden");
        let expired = url.split("expires=").next().unwrap().to_string() + "expires=1&signature=00";
        assert_eq!(reqwest::get(&expired).await.unwrap().status(), 403);
    }
    assert_eq!(server.get("Binary/nope/$download-url").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn a_signed_upload_url_creates_a_binary_whose_bytes_arrive_later() {
    let server = TestServer::start().await;
    let response = server.client.post(server.url("Binary/$upload-url?contentType=image/jpeg")).send().await.unwrap();
    let parameters = json_with_status(response, 201).await;
    let value = |name: &str, field: &str| parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p[field].as_str().unwrap().to_string());
    let (id, url) = (value("id", "valueId").unwrap(), value("url", "valueUrl").unwrap());
    assert_eq!(value("method", "valueCode").as_deref(), Some("PUT"));
    // Before the upload the bytes are not there.
    assert_eq!(server.client.get(server.url(&format!("Binary/{id}"))).send().await.unwrap().status(), 404);
    assert_eq!(fhir_form(&server, &format!("Binary/{id}")).await["contentType"], "image/jpeg");
    let jpeg = vec![0xffu8, 0xd8, 0xff, 0xe0, 1, 2, 3];
    let uploaded = reqwest::Client::new().put(&url).header("content-type", "image/jpeg").body(jpeg.clone()).send().await.unwrap();
    assert_eq!(uploaded.status(), 200, "no token needed: the signature is the permission");
    assert_eq!(raw(&server, &format!("Binary/{id}")).await, ("image/jpeg".to_string(), jpeg));
    if url.contains("/_blob/") {
        // The signature covers the method and the key.
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 403, "an upload URL does not download");
        let elsewhere = url.replacen("/_blob/binary/", "/_blob/binary/x", 1);
        assert_eq!(reqwest::Client::new().put(&elsewhere).body("x").send().await.unwrap().status(), 403);
    }
    assert_eq!(server.client.post(server.url("Binary/$upload-url")).send().await.unwrap().status(), 400, "contentType is required");
    server.stop().await;
}

#[tokio::test]
async fn uploads_beyond_the_limit_are_refused() {
    let server = TestServer::start_with(|config| config.max_binary_bytes = 1000).await;
    let response = server.client.post(server.url("Binary")).header("content-type", "application/octet-stream").body(vec![1u8; 1001]).send().await.unwrap();
    assert_outcome(&json_with_status(response, 413).await, "too-long");
    upload(&server, "application/octet-stream", vec![1u8; 1000]).await;
    server.stop().await;
}
