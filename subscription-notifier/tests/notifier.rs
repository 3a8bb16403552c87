//! The notifier over a real SQLite log and a local receiver: matching writes are notified and
//! others are not; payloads and headers; a receiver down for a while gets everything afterwards,
//! in order; a hanging receiver does not hold up another subscription; a notifier killed with a
//! notification in flight and more queued loses none after a restart; retries that run out put the
//! subscription in `error`, keep what was not delivered, and `resend` sends it; a subscription past
//! its end is turned off; topic-based subscriptions get notification Bundles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use serde_json::{json, Value};
use subscription_notifier::{EndpointPolicy, NotifierStore, Settings};
use tokio::sync::watch;

const TENANT: &str = "t1";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    /// The path after the hook's name (`Observation/o1`, or empty).
    path: String,
    method: String,
    body: Bytes,
    /// The `x-secret` header.
    secret: Option<String>,
}

/// What the receiver got, per hook (the first path segment), in arrival order.
type Received = Arc<Mutex<HashMap<String, Vec<Request>>>>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Fail,
    Hang,
}

#[derive(Clone)]
struct Receiver {
    received: Received,
    modes: Arc<Mutex<HashMap<String, Mode>>>,
}

async fn receive(State(receiver): State<Receiver>, Path(path): Path<String>, method: axum::http::Method, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (hook, rest) = path.split_once('/').unwrap_or((&path, ""));
    let (hook, rest) = (hook.to_string(), rest.to_string());
    let mode = receiver.modes.lock().unwrap().get(&hook).copied().unwrap_or(Mode::Ok);
    match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }
        Mode::Fail => StatusCode::SERVICE_UNAVAILABLE,
        Mode::Ok => {
            let secret = headers.get("x-secret").map(|value| value.to_str().unwrap().to_string());
            receiver.received.lock().unwrap().entry(hook).or_default().push(Request { path: rest, method: method.to_string(), body, secret });
            StatusCode::OK
        }
    }
}

async fn receiver() -> (Receiver, String) {
    let receiver = Receiver { received: Arc::default(), modes: Arc::default() };
    let app = axum::Router::new().route("/{*path}", any(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, base)
}

struct World {
    dir: tempfile::TempDir,
    log: Arc<SqliteEventLog>,
    versions: Mutex<HashMap<(String, String), u64>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() };
        let log = Arc::new(SqliteEventLog::open(dir.path().join("events.db"), options).unwrap());
        World { dir, log, versions: Mutex::new(HashMap::new()) }
    }

    /// Writes the next version of `resource` (or deletes it).
    async fn write(&self, resource: Value, delete: bool) {
        let (resource_type, id) = (resource["resourceType"].as_str().unwrap().to_string(), resource["id"].as_str().unwrap().to_string());
        let previous = self.versions.lock().unwrap().get(&(resource_type.clone(), id.clone())).copied().unwrap_or(0);
        let version = previous + 1;
        let mut body = resource.clone();
        body["meta"] = json!({ "versionId": version.to_string() });
        let (operation, body) = match (delete, previous) {
            (true, _) => (Operation::Delete, Bytes::new()),
            (false, 0) => (Operation::Create, Bytes::from(serde_json::to_vec(&body).unwrap())),
            (false, _) => (Operation::Update, Bytes::from(serde_json::to_vec(&body).unwrap())),
        };
        let expected = if previous == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(previous) };
        let batch = AppendBatch {
            transaction_id: uuid::Uuid::new_v4().to_string(),
            actor: "test".into(),
            recorded_at: fhir_core::instant::now(),
            events: vec![NewEvent { key: StreamKey::new(TENANT, &resource_type, &id), expected, operation, body }],
        };
        self.log.append(batch).await.unwrap();
        self.versions.lock().unwrap().insert((resource_type, id), version);
    }

    /// Starts a notifier over the log; stop it with the sender.
    fn notifier(&self, settings: Settings) -> (Arc<NotifierStore>, watch::Sender<bool>, [tokio::task::JoinHandle<()>; 2]) {
        let store = Arc::new(NotifierStore::open(&self.dir.path().join("notifier.db")).unwrap());
        let (stop, stopped) = watch::channel(false);
        let policy = EndpointPolicy { allowed_hosts: vec!["127.0.0.1".into()] };
        let tasks = subscription_notifier::start(store.clone(), self.log.clone(), policy, settings, stopped);
        (store, stop, tasks)
    }
}

fn fast() -> Settings {
    Settings { timeout: Duration::from_millis(500), base_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(100), max_attempts: 1000, ..Settings::default() }
}

fn subscription(id: &str, criteria: &str, endpoint: &str, payload: bool) -> Value {
    let mut channel = json!({ "type": "rest-hook", "endpoint": endpoint, "header": ["x-secret: s3cret"] });
    if payload {
        channel["payload"] = json!("application/fhir+json");
    }
    json!({ "resourceType": "Subscription", "id": id, "status": "active", "reason": "test", "criteria": criteria, "channel": channel })
}

fn observation(id: &str, code: &str) -> Value {
    json!({ "resourceType": "Observation", "id": id, "status": "final", "code": { "coding": [{ "system": "http://loinc.org", "code": code }] } })
}

/// Waits until `check` holds on what was received, or panics after `seconds`.
async fn until(received: &Received, seconds: u64, what: &str, check: impl Fn(&HashMap<String, Vec<Request>>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check(&received.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: received {:?}", received.lock().unwrap().keys().collect::<Vec<_>>());
}

/// The ids of the resources PUT to a hook, in arrival order.
fn arrivals(received: &HashMap<String, Vec<Request>>, hook: &str) -> Vec<String> {
    received.get(hook).map(Vec::as_slice).unwrap_or_default().iter().filter_map(|request| request.path.strip_prefix("Observation/").map(String::from)).collect()
}

#[tokio::test]
async fn matching_writes_are_notified_with_payloads_and_headers() {
    let world = World::new();
    let (receiver, base) = receiver().await;
    let (_store, stop, tasks) = world.notifier(fast());
    world.write(subscription("bare", "Observation?code=http://loinc.org|1234-5", &format!("{base}/bare"), false), false).await;
    world.write(subscription("full", "Observation?code=1234-5", &format!("{base}/full"), true), false).await;
    world.write(observation("o1", "1234-5"), false).await;
    world.write(observation("o2", "9999-9"), false).await;
    world.write(observation("o1", "1234-5"), false).await;
    world.write(observation("o1", "1234-5"), true).await;
    until(&receiver.received, 10, "two notifications each", |received| received.get("bare").map_or(0, Vec::len) == 2 && arrivals(received, "full").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(arrivals(&received, "full"), vec!["o1", "o1"], "not o2, which the criteria do not match, nor the delete");
    assert_eq!(received["bare"].len(), 2, "creates and updates are notified, deletes are not");
    let bare = &received["bare"][0];
    assert_eq!((bare.method.as_str(), bare.path.as_str(), bare.body.is_empty(), bare.secret.as_deref()), ("POST", "", true, Some("s3cret")), "a bare notification carries the channel's headers");
    let full = &received["full"][1];
    assert_eq!(full.method, "PUT");
    assert_eq!(serde_json::from_slice::<Value>(&full.body).unwrap()["meta"]["versionId"], "2", "the version that matched");
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_in_order_and_a_hanging_one_holds_up_nobody() {
    let world = World::new();
    let (receiver, base) = receiver().await;
    let (_store, _stop, _tasks) = world.notifier(fast());
    receiver.modes.lock().unwrap().insert("down".into(), Mode::Fail);
    receiver.modes.lock().unwrap().insert("slow".into(), Mode::Hang);
    world.write(subscription("down", "Observation?code=1111-1", &format!("{base}/down"), true), false).await;
    world.write(subscription("slow", "Observation?code=1111-1", &format!("{base}/slow"), true), false).await;
    world.write(subscription("fast", "Observation?code=1111-1", &format!("{base}/fast"), true), false).await;
    let started = Instant::now();
    for n in 0..10 {
        world.write(observation(&format!("o{n:02}"), "1111-1"), false).await;
    }
    until(&receiver.received, 5, "the fast receiver gets all ten", |received| arrivals(received, "fast").len() == 10).await;
    assert!(started.elapsed() < Duration::from_secs(3), "the hanging receiver did not hold the fast one up: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(arrivals(&receiver.received.lock().unwrap(), "down").is_empty());
    receiver.modes.lock().unwrap().insert("down".into(), Mode::Ok);
    until(&receiver.received, 10, "the receiver that was down gets all ten", |received| arrivals(received, "down").len() == 10).await;
    let expected: Vec<String> = (0..10).map(|n| format!("o{n:02}")).collect();
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(arrivals(&received, "down"), expected, "in the order of the writes");
    assert_eq!(arrivals(&received, "fast"), expected);
}

#[tokio::test]
async fn a_notifier_killed_mid_delivery_loses_nothing_after_a_restart() {
    let world = World::new();
    let (receiver, base) = receiver().await;
    // The first notification hangs: it is in flight when the notifier dies.
    receiver.modes.lock().unwrap().insert("hook".into(), Mode::Hang);
    let (_store, _stop, tasks) = world.notifier(Settings { timeout: Duration::from_secs(20), ..fast() });
    world.write(subscription("s", "Observation?code=2222-2", &format!("{base}/hook"), false), false).await;
    for n in 0..5 {
        world.write(observation(&format!("o{n}"), "2222-2"), false).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for task in tasks {
        task.abort();
    }
    // Written while the notifier is down, too.
    for n in 5..8 {
        world.write(observation(&format!("o{n}"), "2222-2"), false).await;
    }
    receiver.modes.lock().unwrap().insert("hook".into(), Mode::Ok);
    let (store, _stop, _tasks) = world.notifier(fast());
    until(&receiver.received, 10, "all eight after the restart", |received| received.get("hook").map_or(0, Vec::len) >= 8).await;
    assert_eq!(receiver.received.lock().unwrap()["hook"].len(), 8, "each once (the one in flight never got through, so it is sent again)");
    let stats = store.stats(TENANT, "s").unwrap();
    assert_eq!((stats.pending, stats.delivered), (0, 8), "{stats:?}");
    assert!(stats.latency_p50_ms.is_some());
}

#[tokio::test]
async fn retries_that_run_out_put_the_subscription_in_error_and_resend_delivers() {
    let world = World::new();
    let (receiver, base) = receiver().await;
    receiver.modes.lock().unwrap().insert("broken".into(), Mode::Fail);
    let settings = Settings { max_attempts: 3, ..fast() };
    let (store, _stop, _tasks) = world.notifier(settings);
    world.write(subscription("s", "Observation?code=3333-3", &format!("{base}/broken"), false), false).await;
    world.write(observation("o1", "3333-3"), false).await;
    world.write(observation("o2", "3333-3"), false).await;
    let key = StreamKey::new(TENANT, "Subscription", "s");
    let deadline = Instant::now() + Duration::from_secs(10);
    let errored = loop {
        let latest = world.log.read_latest(&key).await.unwrap().unwrap();
        let resource: Value = serde_json::from_slice(&latest.body).unwrap();
        if resource["status"] == "error" {
            break resource;
        }
        assert!(Instant::now() < deadline, "the subscription never went to error");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(errored["error"].as_str().unwrap().contains("503"), "{errored}");
    let stats = store.stats(TENANT, "s").unwrap();
    assert_eq!(stats.failed, 2, "both notifications are kept: {stats:?}");
    assert_eq!(stats.failed_notifications[0].0, "Observation/o1");

    // Back to active, the endpoint fixed: resend delivers what was kept.
    receiver.modes.lock().unwrap().insert("broken".into(), Mode::Ok);
    *world.versions.lock().unwrap().get_mut(&("Subscription".to_string(), "s".to_string())).unwrap() += 1;
    world.write(subscription("s", "Observation?code=3333-3", &format!("{base}/broken"), false), false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.resend(TENANT, "s").unwrap(), 2);
    until(&receiver.received, 10, "both resent", |received| received.get("broken").map_or(0, Vec::len) == 2).await;
}

#[tokio::test]
async fn topic_based_subscriptions_get_notification_bundles() {
    const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    let world = World::new();
    let (receiver, base) = receiver().await;
    let (_store, _stop, _tasks) = world.notifier(fast());
    let topic_subscription = |id: &str, content: &str| {
        json!({ "resourceType": "Subscription", "id": id, "status": "active", "reason": "test",
            "criteria": format!("{}/Observation", subscription_notifier::subscription::TOPIC_BASE),
            "_criteria": { "extension": [{ "url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": "Observation?code=4444-4" }] },
            "channel": { "type": "rest-hook", "endpoint": format!("{base}/{id}"), "payload": "application/fhir+json",
                "_payload": { "extension": [{ "url": format!("{BACKPORT}/backport-payload-content"), "valueCode": content }] } } })
    };
    for content in ["empty", "id-only", "full-resource"] {
        world.write(topic_subscription(content, content), false).await;
    }
    world.write(observation("o1", "4444-4"), false).await;
    world.write(observation("o2", "5555-5"), false).await;
    world.write(observation("o1", "4444-4"), false).await;
    until(&receiver.received, 10, "two bundles each", |received| ["empty", "id-only", "full-resource"].iter().all(|hook| received.get(*hook).map_or(0, Vec::len) == 2)).await;
    let received = receiver.received.lock().unwrap().clone();
    let bundle = |hook: &str, n: usize| -> Value {
        let request = &received[hook][n];
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", ""), "a Bundle is POSTed to the endpoint");
        serde_json::from_slice(&request.body).unwrap()
    };
    let parameter = |status: &Value, name: &str| status["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    for hook in ["empty", "id-only", "full-resource"] {
        let second = bundle(hook, 1);
        assert_eq!(second["type"], "history");
        let status = &second["entry"][0]["resource"];
        assert_eq!(status["resourceType"], "Parameters");
        assert_eq!(parameter(status, "type")["valueCode"], "event-notification");
        assert_eq!(parameter(status, "events-since-subscription-start")["valueString"], "2", "{hook}: the second event");
        assert!(parameter(status, "topic")["valueCanonical"].as_str().unwrap().ends_with("/Observation"));
    }
    assert_eq!(bundle("empty", 0)["entry"].as_array().unwrap().len(), 1, "empty: the status only");
    let id_only = bundle("id-only", 0);
    assert!(id_only["entry"][1]["fullUrl"].as_str().unwrap().ends_with("/Observation/o1"));
    assert!(id_only["entry"][1].get("resource").is_none());
    assert_eq!(id_only["entry"][1]["request"]["method"], "POST", "the first version was a create");
    let full = bundle("full-resource", 1);
    assert_eq!(full["entry"][1]["resource"]["meta"]["versionId"], "2");
    assert_eq!(full["entry"][1]["request"]["method"], "PUT");
}

#[tokio::test]
async fn a_subscription_past_its_end_is_turned_off_and_notified_no_more() {
    let world = World::new();
    let (receiver, base) = receiver().await;
    let (_store, _stop, _tasks) = world.notifier(fast());
    let mut ending = subscription("s", "Observation?code=6666-6", &format!("{base}/hook"), false);
    ending["end"] = json!(fhir_core::instant::format_instant(fhir_core::instant::now() + time::Duration::milliseconds(300)));
    world.write(ending, false).await;
    world.write(observation("o1", "6666-6"), false).await;
    until(&receiver.received, 5, "the notification before the end", |received| received.get("hook").map_or(0, Vec::len) == 1).await;
    let key = StreamKey::new(TENANT, "Subscription", "s");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let latest: Value = serde_json::from_slice(&world.log.read_latest(&key).await.unwrap().unwrap().body).unwrap();
        if latest["status"] == "off" {
            break;
        }
        assert!(Instant::now() < deadline, "the subscription was not turned off: {latest}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world.write(observation("o2", "6666-6"), false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received.lock().unwrap()["hook"].len(), 1, "nothing after the end");
}
