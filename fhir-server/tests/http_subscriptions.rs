//! Rest-hook Subscriptions over HTTP, with a receiver on this machine (allow-listed): checks on
//! create, `requested` becoming `active`, notifications of matching writes only, `$status`, the
//! `error` state when the retries run out, and `$resend`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::any;
use common::{assert_outcome, json_with_status, TestServer};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Receiver {
    /// (method, path) of each notification received.
    received: Arc<Mutex<Vec<(String, String)>>>,
    failing: Arc<Mutex<bool>>,
}

async fn receive(State(receiver): State<Receiver>, method: axum::http::Method, Path(path): Path<String>) -> StatusCode {
    if *receiver.failing.lock().unwrap() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.received.lock().unwrap().push((method.to_string(), path));
    StatusCode::OK
}

async fn receiver() -> (Receiver, String) {
    let receiver = Receiver::default();
    let app = axum::Router::new().route("/{*path}", any(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, base)
}

fn subscription(criteria: &str, endpoint: &str) -> Value {
    json!({ "resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": criteria,
            "channel": { "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json", "header": ["Authorization: Bearer hook-secret"] } })
}

fn observation(code: &str) -> Value {
    json!({ "resourceType": "Observation", "status": "final", "code": { "coding": [{ "system": "http://loinc.org", "code": code }] } })
}

async fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a Value> {
    parameters["parameter"].as_array()?.iter().find(|p| p["name"] == name)
}

#[tokio::test]
async fn subscriptions_are_checked_activated_notified_and_recover_from_errors() {
    let server = TestServer::start_with(|config| {
        config.subscriptions.allowed_hosts = vec!["127.0.0.1".into()];
        config.subscriptions.max_attempts = 2;
        config.subscriptions.base_backoff_ms = 20;
        config.subscriptions.timeout_ms = 2_000;
    })
    .await;
    let (receiver, base) = receiver().await;

    // What cannot be delivered is refused when written.
    for (criteria, endpoint, code) in [
        ("Observation?_include=Observation:subject", format!("{base}/hook"), "invalid"),
        ("Observation?subject.name=x", format!("{base}/hook"), "invalid"),
        ("Observation?code=1", "http://example.org/hook".to_string(), "security"),
    ] {
        let answer = json_with_status(server.post_json("Subscription", &subscription(criteria, &endpoint)).await, 400).await;
        assert_outcome(&answer, code);
    }
    let mut email = subscription("Observation", &format!("{base}/hook"));
    email["channel"]["type"] = json!("email");
    assert_outcome(&json_with_status(server.post_json("Subscription", &email).await, 400).await, "not-supported");

    // A requested subscription is active as soon as it is stored.
    let created = server.create(subscription("Observation?code=http://loinc.org|1234-5", &format!("{base}/hook"))).await;
    assert_eq!(created["status"], "active");
    let id = created["id"].as_str().unwrap().to_string();
    let matching = server.create(observation("1234-5")).await;
    server.create(observation("9999-9")).await;
    let expected = format!("hook/Observation/{}", matching["id"].as_str().unwrap());
    eventually(10, "the matching Observation is notified", || receiver.received.lock().unwrap().iter().any(|(_, path)| *path == expected)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received.lock().unwrap().clone(), vec![("PUT".to_string(), expected.clone())], "only the matching one");

    let status = json_with_status(server.get(&format!("Subscription/{id}/$status")).await, 200).await;
    assert_eq!(parameter(&status, "status").unwrap()["valueCode"], "active");
    assert_eq!(parameter(&status, "delivered").unwrap()["valueUnsignedInt"], 1);
    assert_eq!(parameter(&status, "queueDepth").unwrap()["valueUnsignedInt"], 0);
    assert!(parameter(&status, "latencyP50Ms").is_some());

    // The receiver fails: after the retries the subscription is in error, the notification kept.
    *receiver.failing.lock().unwrap() = true;
    server.create(observation("1234-5")).await;
    let mut errored = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        errored = json_with_status(server.get(&format!("Subscription/{id}")).await, 200).await;
        if errored["status"] == "error" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errored["status"], "error", "{errored}");
    assert!(errored["error"].as_str().unwrap().contains("500"), "{errored}");
    let status = json_with_status(server.get(&format!("Subscription/{id}/$status")).await, 200).await;
    assert_eq!(parameter(&status, "failed").unwrap()["valueUnsignedInt"], 1);
    assert!(parameter(&status, "failedNotification").is_some());
    assert!(!status.to_string().contains("hook-secret"), "headers are not shown");

    // Fixed, and back to active: $resend delivers what was kept.
    *receiver.failing.lock().unwrap() = false;
    let mut active = errored.clone();
    active["status"] = json!("requested");
    active.as_object_mut().unwrap().remove("error");
    assert_eq!(json_with_status(server.put_json(&format!("Subscription/{id}"), &active).await, 200).await["status"], "active");
    let resent = server.client.post(server.url(&format!("Subscription/{id}/$resend"))).send().await.unwrap();
    assert_eq!(resent.status(), 200);
    eventually(10, "the kept notification is resent", || receiver.received.lock().unwrap().len() == 2).await;
    assert_eq!(server.get("Subscription/nope/$status").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn topic_based_subscriptions_of_the_backport_ig() {
    const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    let server = TestServer::start_with(|config| config.subscriptions.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let (receiver, base) = receiver().await;
    let topic_subscription = |topic: &str| {
        json!({ "resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": topic,
            "_criteria": { "extension": [{ "url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": "Observation?code=1234-5" }] },
            "channel": { "type": "rest-hook", "endpoint": format!("{base}/topic"), "payload": "application/fhir+json",
                "_payload": { "extension": [{ "url": format!("{BACKPORT}/backport-payload-content"), "valueCode": "id-only" }] } } })
    };
    let unknown = json_with_status(server.post_json("Subscription", &topic_subscription("http://example.org/topic/admission")).await, 400).await;
    assert!(unknown.to_string().contains("https://fhir-server.dev/SubscriptionTopic/"), "the answer names this server's topics: {unknown}");
    let created = server.create(topic_subscription("https://fhir-server.dev/SubscriptionTopic/Observation")).await;
    assert_eq!(created["status"], "active");
    server.create(observation("1234-5")).await;
    eventually(10, "a notification Bundle", || !receiver.received.lock().unwrap().is_empty()).await;
    assert_eq!(receiver.received.lock().unwrap()[0], ("POST".to_string(), "topic".to_string()));
    let metadata = json_with_status(server.get("metadata").await, 200).await;
    let subscription = metadata["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Subscription").unwrap().clone();
    assert!(subscription["supportedProfile"].to_string().contains("backport-subscription"));
    server.stop().await;
}
