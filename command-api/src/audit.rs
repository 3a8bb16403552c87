//! The audit trail of the API: one record per HTTP request, written before the answer goes out,
//! and `GET [base]/$audit` to read it as FHIR AuditEvent resources.
//!
//! The layer (outermost: it also records requests refused for their tenant or their token)
//! gives each request an id (sent back as `x-request-id`) and an [`AuditSlot`] that the inner
//! layers fill in (the tenant, the caller). The record names the caller, the interaction (a FHIR
//! restful-interaction code), the resource type and id from the path, the client's address,
//! the time and the status; never a query string or a body. Records go to a writer task that
//! appends them in batches (one durable commit for all requests waiting) and then lets the
//! answers go.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::{AuditQuery, AuditRecord, AuditStore};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::respond::fhir_json_response;
use crate::state::AppState;

/// Records waiting for the writer, at most.
const QUEUE: usize = 4096;
/// Records per append, at most.
const BATCH: usize = 1000;
/// `$audit` page size, by default and at most.
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;

/// What inner layers tell the audit layer about a request.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<SlotFields>>);

#[derive(Default)]
struct SlotFields {
    tenant: Option<String>,
    actor: Option<String>,
}

impl AuditSlot {
    pub fn set_tenant(&self, tenant: &str) {
        if let Ok(mut fields) = self.0.lock() {
            fields.tenant = Some(tenant.to_string());
        }
    }

    pub fn set_actor(&self, actor: &str) {
        if let Ok(mut fields) = self.0.lock() {
            fields.actor = Some(actor.to_string());
        }
    }
}

/// Set on a response whose interaction the path does not tell (a Bundle: batch or transaction).
#[derive(Clone, Copy)]
pub struct AuditedAs(pub &'static str);

type Pending = (AuditRecord, oneshot::Sender<()>);

/// The writer of the trail.
pub struct AuditTrail {
    queue: mpsc::Sender<Pending>,
    store: Arc<dyn AuditStore>,
}

impl AuditTrail {
    /// Starts the writer task over `store`.
    pub fn start(store: Arc<dyn AuditStore>) -> Arc<Self> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store.clone(), receiver));
        Arc::new(AuditTrail { queue, store })
    }

    /// Queues `record` and waits until it is stored (or the writer gave up on it).
    async fn record(&self, record: AuditRecord) {
        let (done, stored) = oneshot::channel();
        if self.queue.send((record, done)).await.is_ok() {
            let _ = stored.await;
        }
    }
}

async fn write(store: Arc<dyn AuditStore>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let (records, waiting): (Vec<AuditRecord>, Vec<oneshot::Sender<()>>) = batch.drain(..).unzip();
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=5 {
            match store.append(&records).await {
                Ok(()) => break,
                Err(error) if attempt == 5 => tracing::error!(%error, lost = records.len(), "audit records could not be stored"),
                Err(error) => {
                    tracing::warn!(%error, "cannot store audit records; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// The layer.
pub(crate) async fn layer(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let Some(trail) = state.audit.clone() else { return next.run(request).await };
    let request_id = uuid::Uuid::new_v4().to_string();
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".to_string(), |info| info.0.ip().to_string());
    let method = request.method().clone();
    let (interaction, resource_type, resource_id) = describe(&state, &method, request.uri().path());
    let mut response = next.run(request).await;
    let interaction = response.extensions().get::<AuditedAs>().map_or(interaction, |audited| audited.0);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let (tenant, actor) = {
        let fields = slot.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (fields.tenant.clone().unwrap_or_else(|| state.config.default_tenant.clone()), fields.actor.clone().unwrap_or_else(|| "unauthenticated".into()))
    };
    let record = AuditRecord {
        request_id,
        at_ms: fhir_core::instant::unix_millis(fhir_core::instant::now()),
        tenant,
        actor,
        client,
        method: method.to_string(),
        interaction: interaction.to_string(),
        resource_type,
        resource_id,
        status: response.status().as_u16(),
    };
    trail.record(record).await;
    response
}

/// The interaction code, type and id a request's method and path show.
fn describe(state: &AppState, method: &Method, path: &str) -> (&'static str, Option<String>, Option<String>) {
    let rest = path.strip_prefix(state.config.base_path.trim_end_matches('/')).unwrap_or(path);
    let rest = match rest.strip_prefix("/tenant/") {
        Some(tenanted) => tenanted.split_once('/').map_or("", |(_, rest)| rest),
        None => rest.trim_start_matches('/'),
    };
    let segments: Vec<&str> = rest.split('/').filter(|segment| !segment.is_empty()).collect();
    let get = matches!(*method, Method::GET | Method::HEAD);
    let owned = |segment: &str| Some(segment.to_string());
    match segments.as_slice() {
        [] if get => ("search-system", None, None),
        [] => ("transaction", None, None),
        ["metadata"] => ("capabilities", None, None),
        ["_history"] => ("history-system", None, None),
        ["$audit"] => ("operation", None, None),
        [kind] => {
            let interaction = match *method {
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "search-type",
            };
            (interaction, owned(kind), None)
        }
        [kind, "_history"] => ("history-type", owned(kind), None),
        [kind, "_search"] => ("search-type", owned(kind), None),
        [kind, operation] if operation.starts_with('$') => ("operation", owned(kind), None),
        [kind, id] => {
            let interaction = match *method {
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "read",
            };
            (interaction, owned(kind), owned(id))
        }
        [kind, id, "_history"] => ("history-instance", owned(kind), owned(id)),
        [kind, id, "_history", _] => ("vread", owned(kind), owned(id)),
        [kind, id, "$everything", ..] => ("operation", owned(kind), owned(id)),
        [kind, id, _] => ("search-type", owned(kind), owned(id)),
        _ => ("unknown", None, None),
    }
}

/// `GET [base]/$audit`: the tenant's records as AuditEvent resources, newest first. Parameters:
/// `date` (with `ge`/`le` prefixes), `agent` (the actor), `entity-type`, `_count`. Needs
/// `search` on AuditEvent.
pub async fn query(State(state): State<Arc<AppState>>, context: RequestContext) -> ApiResult<Response> {
    context.principal.require_one(Interaction::Search, "AuditEvent")?;
    if context.principal.is_bounded() {
        return Err(ApiError::Forbidden("the audit trail is for administrators; this token is bounded to a patient or a query".into()));
    }
    let trail = state.audit.as_ref().ok_or_else(|| ApiError::NotFound("this server keeps no audit trail".into()))?;
    let mut query = AuditQuery { limit: DEFAULT_COUNT, ..AuditQuery::default() };
    for (name, value) in &context.params {
        match name.as_str() {
            "date" => {
                let (prefix, instant) = value.split_at(value.len().min(2));
                let at = fhir_core::instant::parse_range(instant).ok_or_else(|| ApiError::invalid("date must be ge or le and a date or instant"))?;
                match prefix {
                    "ge" | "gt" => query.since_ms = Some(fhir_core::instant::unix_millis(at.0)),
                    "le" | "lt" => query.until_ms = Some(fhir_core::instant::unix_millis(at.1)),
                    _ => return Err(ApiError::invalid("date takes the prefix ge or le")),
                }
            }
            "agent" => query.actor = Some(value.clone()),
            "entity-type" => query.resource_type = Some(value.clone()),
            "_count" => {
                let count: usize = value.parse().map_err(|_| ApiError::invalid("_count must be a number"))?;
                query.limit = count.clamp(1, MAX_COUNT);
            }
            "_format" | "_pretty" => {}
            other => return Err(ApiError::invalid(format!("$audit does not take the parameter {other}"))),
        }
    }
    let records = trail.store.query(&context.tenant, &query).await.map_err(|error| ApiError::Internal(error.to_string()))?;
    let entries: Vec<Value> = records.iter().map(|record| json!({ "resource": audit_event(record) })).collect();
    let bundle = json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries });
    Ok(fhir_json_response(StatusCode::OK, serde_json::to_vec(&bundle).unwrap_or_default().into()))
}

/// A record as an R4 AuditEvent.
fn audit_event(record: &AuditRecord) -> Value {
    let action = match record.interaction.as_str() {
        "create" => "C",
        "update" | "patch" => "U",
        "delete" => "D",
        "read" | "vread" | "search-type" | "search-system" | "history-type" | "history-instance" | "history-system" | "capabilities" => "R",
        _ => "E",
    };
    let outcome = match record.status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(record.at_ms as i128 * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": record.request_id,
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
        "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": record.interaction }],
        "action": action,
        "recorded": fhir_core::instant::format_instant(at),
        "outcome": outcome,
        "outcomeDesc": format!("HTTP {} {}", record.status, record.method),
        "agent": [{ "who": { "identifier": { "value": record.actor } }, "requestor": true, "network": { "address": record.client, "type": "2" } }],
        "source": { "observer": { "display": "fhir-server" } },
    });
    if let Some(resource_type) = &record.resource_type {
        let what = match &record.resource_id {
            Some(id) => format!("{resource_type}/{id}"),
            None => resource_type.clone(),
        };
        event["entity"] = json!([{ "what": { "reference": what } }]);
    }
    event
}
