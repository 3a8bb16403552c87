//! The write path shared by create, update, patch and delete: read the stream's head, decide,
//! stamp the body with the next version, append with that expectation, and retry when another
//! writer got there first (unless the client pinned a version with `If-Match`).

use bytes::Bytes;
use event_log::{AppendBatch, Event, ExpectedVersion, LogError, NewEvent, Operation, StreamKey};
use time::OffsetDateTime;

use crate::access::Interaction;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::resource::{stamp, Resource};
use crate::state::AppState;

/// How many times a write re-reads and retries after losing a race.
const MAX_ATTEMPTS: usize = 16;

/// What a write decided to do, given the stream's current head.
pub enum Plan {
    /// Append a new version holding this resource (create or update).
    Put(Resource),
    /// Append a delete.
    Delete,
    /// Write nothing (e.g. deleting what is already deleted).
    Nothing,
}

/// A committed (or skipped) write.
pub struct Written {
    pub operation: Option<Operation>,
    pub version: u64,
    pub recorded_at: OffsetDateTime,
    pub body: Bytes,
    /// Whether the resource did not exist (or was deleted) before this write.
    pub created: bool,
}

/// Runs `decide` against the current head and appends its plan, retrying on conflicts.
/// `decide` may be called several times; it must not have side effects. The principal must
/// reach the current version and the new one (see [`crate::reach`]).
pub async fn write_with_retry(
    state: &AppState,
    principal: &Principal,
    key: &StreamKey,
    if_match: Option<u64>,
    mut decide: impl FnMut(Option<&Event>) -> ApiResult<Plan>,
) -> ApiResult<Written> {
    for _ in 0..MAX_ATTEMPTS {
        let latest = state.log.read_latest(key).await?;
        if let Some(required) = if_match {
            match &latest {
                Some(event) if event.version == required && event.operation != Operation::Delete => {}
                Some(event) => {
                    return Err(ApiError::PreconditionFailed(format!(
                        "If-Match names version {required}, but the current version is {}",
                        event.version
                    )))
                }
                None => return Err(ApiError::PreconditionFailed(format!("If-Match names version {required}, but the resource does not exist"))),
            }
        }
        let expected = latest.as_ref().map_or(ExpectedVersion::NoStream, |event| ExpectedVersion::Exactly(event.version));
        let was_live = latest.as_ref().is_some_and(|event| event.operation != Operation::Delete);
        let live = latest.as_ref().filter(|event| event.operation != Operation::Delete).map(|event| &event.body[..]);
        let plan = decide(latest.as_ref())?;
        let interaction = match (&plan, was_live) {
            (Plan::Delete, _) => Interaction::Delete,
            (Plan::Put(_), false) => Interaction::Create,
            _ => Interaction::Update,
        };
        principal.check_write(interaction, live, None)?;
        let (operation, resource) = match plan {
            Plan::Nothing => {
                let latest = latest.ok_or_else(|| ApiError::Internal("nothing to do on a missing resource".into()))?;
                return Ok(Written { operation: None, version: latest.version, recorded_at: latest.recorded_at, body: latest.body, created: false });
            }
            Plan::Delete => (Operation::Delete, None),
            Plan::Put(resource) => (if was_live { Operation::Update } else { Operation::Create }, Some(resource)),
        };
        match append_one(state, principal, key, expected, operation, resource).await {
            Ok(written) => return Ok(Written { created: !was_live && operation != Operation::Delete, ..written }),
            Err(ApiError::Conflict(_)) if if_match.is_some() => {
                return Err(ApiError::PreconditionFailed("the resource changed after the If-Match version; re-read and retry".into()))
            }
            Err(ApiError::Conflict(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(ApiError::Conflict("the resource is being changed by many requests at once; retry".into()))
}

/// Appends one event for `key` at `expected` by `principal` (who must reach the new resource),
/// stamping the resource with the new version.
pub async fn append_one(
    state: &AppState,
    principal: &Principal,
    key: &StreamKey,
    expected: ExpectedVersion,
    operation: Operation,
    resource: Option<Resource>,
) -> ApiResult<Written> {
    let mut resource = resource;
    if let Some(resource) = resource.as_mut().filter(|_| key.resource_type == "Subscription") {
        crate::subscriptions::prepare(state, resource)?;
    }
    if let Some(resource) = &resource {
        crate::guides::check_write(state, &key.resource_type, resource)?;
    }
    principal.check_write(Interaction::of(operation), None, resource.as_ref())?;
    let version = expected.next_version();
    let recorded_at = fhir_core::instant::now();
    let body = match resource {
        Some(resource) => stamp(&resource, &key.id, version, recorded_at)?,
        None => Bytes::new(),
    };
    let batch = AppendBatch {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        actor: principal.actor.clone(),
        recorded_at,
        events: vec![NewEvent { key: key.clone(), expected, operation, body: body.clone() }],
    };
    match state.log.append(batch).await {
        Ok(_) => Ok(Written { operation: Some(operation), version, recorded_at, body, created: operation == Operation::Create }),
        Err(LogError::Conflict { .. }) => Err(ApiError::Conflict("the resource was changed by another request".into())),
        Err(other) => Err(other.into()),
    }
}
