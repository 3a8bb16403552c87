//! The API's side of Subscriptions: every write of a Subscription is checked (its criteria, its
//! rest-hook channel, its endpoint's scheme) and a `requested` one becomes `active` as it is
//! stored, so it takes effect for the next write; `GET Subscription/[id]/$status` shows its
//! queue (pending, delivered, failed, latency, the failed notifications) and
//! `POST Subscription/[id]/$resend` queues the failed notifications again.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use subscription_notifier::{EndpointPolicy, NotifierStore};

use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::resource::Resource;
use crate::respond::fhir_json_response;
use crate::state::AppState;

/// Where notifications may go, and the notifier's queue when this process runs it.
#[derive(Clone, Default)]
pub struct Subscriptions {
    pub policy: EndpointPolicy,
    pub notifier: Option<Arc<NotifierStore>>,
}

/// Checks a Subscription about to be written, and activates a `requested` one.
pub fn prepare(state: &AppState, resource: &mut Resource) -> ApiResult<()> {
    let subscription = subscription_notifier::subscription::parse(&Value::Object(resource.clone())).map_err(ApiError::BadRequest)?;
    state.subscriptions.policy.check_scheme(&subscription.endpoint).map_err(|why| ApiError::BadRequest(vec![fhir_core::Issue::error(fhir_core::IssueType::Security, why).at("Subscription.channel.endpoint")]))?;
    if subscription.status == "requested" {
        resource.insert("status".into(), json!("active"));
    }
    Ok(())
}

/// The notifier's queue, or 404 where this process does not run it.
fn notifier(state: &AppState) -> ApiResult<&Arc<NotifierStore>> {
    state.subscriptions.notifier.as_ref().ok_or_else(|| ApiError::NotFound("this server does not run the subscription notifier".into()))
}

/// The Subscription `id`, which the caller must be allowed to read.
async fn readable(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<()> {
    context.principal.require_one(Interaction::Read, "Subscription")?;
    let key = crate::handlers::instance_key(&context.tenant, "Subscription", id)?;
    match state.log.read_latest(&key).await? {
        Some(event) if event.operation != event_log::Operation::Delete => context.principal.check_stored(Interaction::Read, &event.body),
        _ => Err(ApiError::NotFound(format!("Subscription/{id} is not known"))),
    }
}

/// `GET Subscription/[id]/$status`: a Parameters resource of its queue's figures.
pub async fn status(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<Response> {
    readable(state, context, id).await?;
    let notifier = notifier(state)?;
    let stats = notifier.stats(&context.tenant, id).map_err(|error| ApiError::Internal(error.to_string()))?;
    let status = notifier.subscription(&context.tenant, id).map(|subscription| subscription.status).unwrap_or_else(|| "unknown".into());
    let mut parameter = vec![
        json!({ "name": "subscription", "valueReference": { "reference": format!("Subscription/{id}") } }),
        json!({ "name": "status", "valueCode": status }),
        json!({ "name": "queueDepth", "valueUnsignedInt": stats.pending }),
        json!({ "name": "delivered", "valueUnsignedInt": stats.delivered }),
        json!({ "name": "failed", "valueUnsignedInt": stats.failed }),
    ];
    if let Some(p50) = stats.latency_p50_ms {
        parameter.push(json!({ "name": "latencyP50Ms", "valueInteger": p50 }));
    }
    if let Some(p99) = stats.latency_p99_ms {
        parameter.push(json!({ "name": "latencyP99Ms", "valueInteger": p99 }));
    }
    if let Some(error) = stats.last_error {
        parameter.push(json!({ "name": "lastError", "valueString": error }));
    }
    for (reference, error) in stats.failed_notifications {
        parameter.push(json!({ "name": "failedNotification", "part": [
            { "name": "focus", "valueReference": { "reference": reference } },
            { "name": "error", "valueString": error },
        ]}));
    }
    let body = serde_json::to_vec(&json!({ "resourceType": "Parameters", "parameter": parameter })).unwrap_or_default();
    Ok(fhir_json_response(StatusCode::OK, body.into()))
}

/// `POST Subscription/[id]/$resend`: queues its failed notifications again (they go once the
/// subscription is `active`).
pub async fn resend(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<Response> {
    readable(state, context, id).await?;
    context.principal.require_one(Interaction::Update, "Subscription")?;
    let resent = notifier(state)?.resend(&context.tenant, id).map_err(|error| ApiError::Internal(error.to_string()))?;
    let outcome = fhir_core::operation_outcome(&[fhir_core::Issue::information(format!("{resent} notifications queued again"))]);
    Ok(fhir_json_response(StatusCode::OK, serde_json::to_vec(&outcome).unwrap_or_default().into()))
}
