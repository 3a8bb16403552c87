//! Authentication over HTTP: bearer tokens signed by keys of a JWKS (served here on a loopback
//! port, keys from `testdata/auth`), every rejection a 401 with an OperationOutcome, the public
//! CapabilityStatement, bundle entries run as their bundle's caller, the API key, and the refusal
//! to serve a non-loopback address without authentication.

mod common;

use base64::Engine;
use common::tokens::{now, sign, testdata, trusted_issuer, AUDIENCE, ISSUER};
use common::{assert_outcome, json_with_status, patient, TestServer};
use fhir_server::config::AuthConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A practitioner's token with `changes` to its claims (`null` removes one), signed with `kid`.
fn token_with(changes: Value, kid: &str) -> String {
    let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "clinician-7", "exp": now() + 300, "cognito:groups": ["practitioner"] });
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign(&claims, kid)
}

fn token() -> String {
    token_with(json!({}), "rsa-1")
}

async fn get_with(server: &TestServer, path: &str, authorization: Option<String>) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// A 401 whose OperationOutcome says `why`.
async fn assert_rejected(response: reqwest::Response, why: &str) {
    let challenge = response.headers().get("www-authenticate").map(|value| value.to_str().unwrap().to_string());
    let body = json_with_status(response, 401).await;
    assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""), "{body}");
    assert_outcome(&body, "login");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(text.contains(why), "expected {why:?} in {text:?}");
}

#[tokio::test]
async fn a_token_is_required_and_every_bad_one_is_a_401() {
    let auth = trusted_issuer().await;
    let server = TestServer::start_with(|config| config.auth = auth).await;

    assert_eq!(get_with(&server, "metadata", None).await.status(), 200, "the CapabilityStatement is public");
    assert_rejected(get_with(&server, "Patient", None).await, "no bearer token").await;
    assert_rejected(get_with(&server, "NoSuchType/1", None).await, "no bearer token").await;
    assert_rejected(get_with(&server, "Patient", Some(format!("Basic {}", token()))).await, "no bearer token").await;
    assert_eq!(get_with(&server, "Patient", Some(format!("Bearer {}", token()))).await.status(), 200);
    assert_eq!(get_with(&server, "Patient", Some(format!("bearer {}", token_with(json!({}), "ec-1")))).await.status(), 200, "ES256");

    let cases = [
        (token_with(json!({ "exp": now() - 120 }), "rsa-1"), "expired"),
        (token_with(json!({ "nbf": now() + 600 }), "rsa-1"), "not valid yet"),
        (token_with(json!({ "iss": "https://elsewhere.example" }), "rsa-1"), "another issuer"),
        (token_with(json!({ "aud": "another-api" }), "rsa-1"), "another audience"),
        (token_with(json!({}), "rsa-2"), "a key the issuer does not publish"),
        ("abc.def".to_string(), "not a well-formed JWT"),
    ];
    for (token, why) in cases {
        assert_rejected(get_with(&server, "Patient", Some(format!("Bearer {token}"))).await, why).await;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now() + 300 }).to_string();
    let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","kid":"rsa-1"}"#), b64(claims.as_bytes()));
    assert_rejected(get_with(&server, "Patient", Some(format!("Bearer {unsigned}"))).await, "header").await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let hmac = jsonwebtoken::encode(&header, &serde_json::from_str::<Value>(&claims).unwrap(), &EncodingKey::from_secret(&testdata("rsa-1.pub.pem"))).unwrap();
    assert_rejected(get_with(&server, "Patient", Some(format!("Bearer {hmac}"))).await, "algorithm is not accepted").await;
    server.stop().await;
}

#[tokio::test]
async fn writes_record_their_caller_and_bundle_entries_run_as_the_bundles_caller() {
    let auth = trusted_issuer().await;
    let server = TestServer::start_with(|config| config.auth = auth).await;
    let bearer = format!("Bearer {}", token());
    let post = |path: &str, body: Value| server.client.post(server.url(path)).header("authorization", &bearer).header("content-type", "application/fhir+json").body(body.to_string()).send();
    let created = json_with_status(post("Patient", patient("Caller")).await.unwrap(), 201).await;
    let id = created["id"].as_str().unwrap().to_string();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": patient("Bundled"), "request": { "method": "POST", "url": "Patient" } },
        { "request": { "method": "GET", "url": format!("Patient/{id}") } },
    ]});
    let answer = json_with_status(post("", bundle).await.unwrap(), 200).await;
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(answer["entry"][1]["response"]["status"], "200 OK", "a read inside the bundle runs as the bundle's caller");
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": format!("Patient/{id}") } },
    ]});
    let answer = json_with_status(post("", batch).await.unwrap(), 200).await;
    assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");

    let aws = common::aws_mode();
    let data = server.stop().await;
    if !aws {
        let log = rusqlite::Connection::open(data.path().join("events.db")).unwrap();
        let actors: Vec<String> = log.prepare("SELECT DISTINCT actor FROM events").unwrap().query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(actors, vec!["clinician-7".to_string()], "every event names the token's subject");
    }
}

#[tokio::test]
async fn an_api_key_is_required_when_configured() {
    let auth = AuthConfig { api_key: Some("s3cret-key".into()), ..trusted_issuer().await };
    let server = TestServer::start_with(|config| config.auth = auth).await;
    let request = |key: Option<&str>| {
        let mut request = server.client.get(server.url("Patient")).header("authorization", format!("Bearer {}", token()));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    assert_rejected(request(None).await.unwrap(), "API key").await;
    assert_rejected(request(Some("s3cret-kez")).await.unwrap(), "API key").await;
    assert_eq!(request(Some("s3cret-key")).await.unwrap().status(), 200);
    server.stop().await;
}

#[test]
fn without_authentication_only_loopback_is_served() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-server"))
        .args(["--data", data.path().to_str().unwrap(), "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to serve") && stderr.contains("without authentication"), "{stderr}");
}
