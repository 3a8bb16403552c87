//! Delivery: each live subscription's queue is sent in order, one notification in flight per
//! subscription, many subscriptions at once (up to `concurrency`), each request bounded by a
//! timeout, so a slow or failing endpoint holds up only its own queue. A failure is tried again
//! after an exponential backoff with jitter; after `max_attempts` the subscription goes to
//! `error` (a new version of it in the log, with the reason in `error`) and its undelivered
//! notifications are kept as failed, for `$status` to show and `$resend` to queue again. An
//! active subscription past its `end` goes to `off` the same way.
//!
//! Notifications follow the R4 rest-hook channel: without a payload, an empty `POST` to the
//! endpoint; with one, a `PUT` of the resource to `[endpoint]/[type]/[id]`. A topic-based
//! subscription (Backport IG) gets a `POST` of a `history` Bundle: its status as a Parameters
//! resource, with the event, then the focus by id or whole. The channel's headers are added; they
//! may carry secrets, so they are never logged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::safety::EndpointPolicy;
use crate::store::{Delivery, NotifierStore};
use crate::subscription::{Content, Subscription, Topic};

#[derive(Clone, Debug)]
pub struct Settings {
    /// Longest wait for an endpoint's answer.
    pub timeout: Duration,
    /// Attempts of one notification before the subscription goes to `error`.
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Notifications in flight at once, over all subscriptions.
    pub concurrency: usize,
    /// How long delivered notifications are remembered (for the latency figures).
    pub keep_delivered: Duration,
    /// The server's base URL, for the references in topic-based notifications.
    pub base_url: String,
    /// Whether each tenant's base is `{base_url}/tenant/{id}` (multi-tenancy).
    pub tenant_paths: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 64,
            keep_delivered: Duration::from_secs(3600),
            base_url: "http://localhost:8080/fhir".into(),
            tenant_paths: false,
        }
    }
}

pub struct Dispatcher {
    pub store: Arc<NotifierStore>,
    pub log: Arc<dyn EventLog>,
    pub policy: EndpointPolicy,
    pub settings: Settings,
    client: reqwest::Client,
    /// The queues with a notification in flight.
    busy: Mutex<HashSet<(String, String)>>,
    slots: Arc<Semaphore>,
}

fn now_ms() -> i64 {
    fhir_core::instant::unix_millis(fhir_core::instant::now())
}

/// A number in [0.5, 1.5): how much of a backoff to wait, so that retries do not line up.
fn jitter() -> f64 {
    0.5 + (uuid::Uuid::new_v4().as_u128() >> 64) as f64 / (u64::MAX as f64 + 1.0)
}

impl Dispatcher {
    pub fn new(store: Arc<NotifierStore>, log: Arc<dyn EventLog>, policy: EndpointPolicy, settings: Settings) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect could lead anywhere, past the address checks.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with these settings");
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Arc::new(Dispatcher { store, log, policy, settings, client, busy: Mutex::new(HashSet::new()), slots })
    }

    /// Sends notifications until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let wake = self.store.wake.clone();
        let mut last_prune = 0;
        while !*stop.borrow() {
            let busy: Vec<(String, String)> = self.busy.lock().map(|busy| busy.iter().cloned().collect()).unwrap_or_default();
            let due = match self.store.due(now_ms(), &busy, self.settings.concurrency) {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "subscriptions: cannot read the queue");
                    Vec::new()
                }
            };
            for delivery in due {
                let Ok(permit) = self.slots.clone().acquire_owned().await else { return };
                if let Ok(mut busy) = self.busy.lock() {
                    busy.insert((delivery.tenant.clone(), delivery.subscription.clone()));
                }
                let dispatcher = self.clone();
                tokio::spawn(async move {
                    let queue = (delivery.tenant.clone(), delivery.subscription.clone());
                    dispatcher.deliver(delivery).await;
                    if let Ok(mut busy) = dispatcher.busy.lock() {
                        busy.remove(&queue);
                    }
                    drop(permit);
                    // The queue's next notification may go now.
                    dispatcher.store.wake.notify_one();
                });
            }
            if now_ms() - last_prune > 60_000 {
                last_prune = now_ms();
                let _ = self.store.prune(now_ms() - self.settings.keep_delivered.as_millis() as i64);
            }
            for (tenant, id) in self.store.ended(fhir_core::instant::now()) {
                if let Err(error) = self.set_status(&tenant, &id, "off", None).await {
                    tracing::warn!(%error, subscription = %id, "subscriptions: cannot turn an ended subscription off");
                }
            }
            let wait = match self.store.next_due_ms() {
                Ok(Some(next)) => Duration::from_millis((next - now_ms()).clamp(5, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) {
        let Some(subscription) = self.store.subscription(&delivery.tenant, &delivery.subscription) else { return };
        match self.send(&subscription, &delivery).await {
            Ok(()) => {
                if let Err(error) = self.store.delivered(delivery.seq) {
                    tracing::warn!(%error, "subscriptions: cannot record a delivery");
                }
            }
            Err(why) => self.failed(&subscription, &delivery, &why).await,
        }
    }

    async fn send(&self, subscription: &Subscription, delivery: &Delivery) -> Result<(), String> {
        self.policy.check_addresses(&subscription.endpoint).await?;
        let mut request = match (&subscription.topic, &subscription.payload) {
            (Some(topic), media) => {
                let event = self.event(delivery).await?;
                let bundle = self.notification(subscription, topic, delivery, &event);
                let media = media.as_deref().unwrap_or("application/fhir+json");
                self.client.post(&subscription.endpoint).header("content-type", media).body(serde_json::to_vec(&bundle).map_err(|error| error.to_string())?)
            }
            (None, None) => self.client.post(&subscription.endpoint),
            (None, Some(media)) => {
                let body = self.event(delivery).await?.body;
                let url = format!("{}/{}/{}", subscription.endpoint.trim_end_matches('/'), delivery.resource_type, delivery.resource_id);
                self.client.put(url).header("content-type", media.as_str()).body(body)
            }
        };
        for (name, value) in &subscription.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|error| if error.is_timeout() { "the endpoint did not answer in time".to_string() } else { format!("the endpoint cannot be reached: {}", without_url(&error)) })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {}", response.status()))
        }
    }

    /// The notified version.
    async fn event(&self, delivery: &Delivery) -> Result<event_log::Event, String> {
        let events = self.log.read_positions(&[delivery.position]).await.map_err(|error| format!("reading the log: {error}"))?;
        events.into_iter().next().ok_or_else(|| "the notified version is not in the log".to_string())
    }

    /// A Backport IG notification: a `history` Bundle whose first entry is the subscription's
    /// status (a Parameters resource, with the event), then the focus, by id or whole.
    fn notification(&self, subscription: &Subscription, topic: &Topic, delivery: &Delivery, event: &event_log::Event) -> Value {
        let base = if self.settings.tenant_paths { format!("{}/tenant/{}", self.settings.base_url, delivery.tenant) } else { self.settings.base_url.clone() };
        let focus = format!("{base}/{}/{}", delivery.resource_type, delivery.resource_id);
        let timestamp = fhir_core::instant::from_unix_millis(delivery.event_ms).map(fhir_core::instant::format_instant);
        let mut event_parts = vec![json!({ "name": "event-number", "valueString": delivery.event_number.to_string() }), json!({ "name": "timestamp", "valueInstant": timestamp })];
        if topic.content != Content::Empty {
            event_parts.push(json!({ "name": "focus", "valueReference": { "reference": focus } }));
        }
        let status = json!({
            "resourceType": "Parameters",
            "meta": { "profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"] },
            "parameter": [
                { "name": "subscription", "valueReference": { "reference": format!("{base}/Subscription/{}", subscription.id) } },
                { "name": "topic", "valueCanonical": topic.url },
                { "name": "status", "valueCode": subscription.status },
                { "name": "type", "valueCode": "event-notification" },
                { "name": "events-since-subscription-start", "valueString": delivery.event_number.to_string() },
                { "name": "notification-event", "part": event_parts },
            ]
        });
        let mut entries = vec![json!({
            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "resource": status,
            "request": { "method": "GET", "url": format!("{base}/Subscription/{}/$status", subscription.id) },
            "response": { "status": "200" }
        })];
        if topic.content != Content::Empty {
            let created = event.version == 1;
            let mut entry = json!({
                "fullUrl": focus,
                "request": { "method": if created { "POST" } else { "PUT" }, "url": if created { delivery.resource_type.clone() } else { format!("{}/{}", delivery.resource_type, delivery.resource_id) } },
                "response": { "status": if created { "201" } else { "200" } }
            });
            if topic.content == Content::FullResource {
                entry["resource"] = serde_json::from_slice(&event.body).unwrap_or(Value::Null);
            }
            entries.push(entry);
        }
        json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "history",
            "timestamp": fhir_core::instant::format_instant(fhir_core::instant::now()),
            "entry": entries
        })
    }

    async fn failed(&self, subscription: &Subscription, delivery: &Delivery, why: &str) {
        let attempts = delivery.attempts + 1;
        tracing::info!(subscription = %delivery.subscription, attempts, why, "subscriptions: a notification failed");
        if attempts < self.settings.max_attempts {
            let backoff = self.settings.base_backoff.as_millis() as f64 * 2f64.powi(attempts as i32 - 1) * jitter();
            let backoff = backoff.min(self.settings.max_backoff.as_millis() as f64) as i64;
            if let Err(error) = self.store.retry_later(delivery.seq, attempts, now_ms() + backoff, why) {
                tracing::warn!(%error, "subscriptions: cannot record a failed attempt");
            }
            return;
        }
        let reason = format!("notifications failed {attempts} times; the last: {why}");
        if let Err(error) = self.store.give_up(&delivery.tenant, &delivery.subscription, &reason) {
            tracing::warn!(%error, "subscriptions: cannot keep the failed notifications");
        }
        if let Err(error) = self.set_status(&delivery.tenant, &subscription.id, "error", Some(&reason)).await {
            tracing::warn!(%error, subscription = %subscription.id, "subscriptions: cannot set the subscription to error");
        }
    }

    /// Writes the subscription's next version with `status` (and `error`, or none).
    async fn set_status(&self, tenant: &str, id: &str, status: &str, reason: Option<&str>) -> Result<(), String> {
        let key = StreamKey::new(tenant, "Subscription", id);
        for _ in 0..5 {
            let latest = self.log.read_latest(&key).await.map_err(|error| error.to_string())?.ok_or("the subscription is gone")?;
            if latest.operation == Operation::Delete {
                return Ok(());
            }
            let mut resource: Value = serde_json::from_slice(&latest.body).map_err(|error| error.to_string())?;
            resource["status"] = json!(status);
            match reason {
                Some(reason) => resource["error"] = json!(reason),
                None => {
                    if let Some(object) = resource.as_object_mut() {
                        object.remove("error");
                    }
                }
            }
            let recorded_at = fhir_core::instant::now();
            let version = latest.version + 1;
            resource["meta"]["versionId"] = json!(version.to_string());
            resource["meta"]["lastUpdated"] = json!(fhir_core::instant::format_instant(recorded_at));
            let body = Bytes::from(serde_json::to_vec(&resource).map_err(|error| error.to_string())?);
            let batch = AppendBatch {
                transaction_id: uuid::Uuid::new_v4().to_string(),
                actor: "subscription-notifier".into(),
                recorded_at,
                events: vec![NewEvent { key: key.clone(), expected: ExpectedVersion::Exactly(latest.version), operation: Operation::Update, body }],
            };
            match self.log.append(batch).await {
                Ok(_) => return Ok(()),
                Err(event_log::LogError::Conflict { .. }) => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("the subscription keeps changing".into())
    }
}

/// An HTTP error without its URL (which may hold a secret in its query).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the endpoint");
    }
    text
}
