//! Transaction: the whole bundle becomes one atomic append to the event log, of any size.
//!
//! 1. Identities, in the specification's order (DELETE, POST, PUT, PATCH): new ids for creates,
//!    conditional URLs and `ifNoneExist` resolved by search, every fullUrl mapped to `Type/id`.
//! 2. Conditional references (`Patient?identifier=...`) resolved to exactly one match.
//! 3. References rewritten everywhere, then each write decided against its stream's head
//!    (`ifMatch`, patches applied, every resource validated; a PUT of what is already stored
//!    writes nothing).
//! 4. One append with every stream's expected version: all or nothing. When another writer got
//!    to one of the resources first, that entry alone is decided again on the new head and the
//!    append retried (with `ifMatch` it is 412 instead).
//!
//! Conditional criteria are locked (the same locks as the single conditional operations) from
//! step 1 until the append, so concurrent conditional creates never duplicate. Reads (GET/HEAD)
//! run after the commit. Any failure answers with an OperationOutcome naming the entry; nothing
//! is written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use event_log::{AppendBatch, Event, ExpectedVersion, LogError, NewEvent, Operation, StreamKey};
use fhir_core::{operation_outcome, Issue};
use serde_json::Value;

use super::dispatch::dispatch;
use super::entry::{BundleEntry, Method, Target};
use super::references::{is_conditional_reference, references_in, rewrite_in};
use super::response::EntryResult;
use crate::access::Interaction;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::handlers::conditional::{lock_key, matches};
use crate::negotiate::{PreferReturn, RequestContext};
use crate::patch::PatchDocument;
use crate::resource::{same_content, stamp, validate, Resource};
use crate::state::AppState;

/// How many times a transaction re-decides a write after losing a race for its resource.
const MAX_CONFLICTS: usize = 64;
/// Stream heads read at once.
const HEAD_READS: usize = 16;

/// What an entry resolved to before its stream's head is read.
enum Identity {
    /// Write to this stream; `fresh` when the server just chose the id.
    Write { key: StreamKey, fresh: bool },
    /// `ifNoneExist` matched: nothing is written, the match is the answer.
    Existing(Event),
    /// A conditional delete that matched nothing.
    Nothing,
    /// GET or HEAD, run after the commit.
    Read,
}

/// What an entry does once its stream's head is known.
enum Decision<'e> {
    Write(Write<'e>),
    /// A PUT of what is already there: nothing is written, the current version is the answer.
    Unchanged(Event),
    /// Nothing to do (deleting what is deleted).
    Nothing,
}

/// One event of the append, and how to answer for it.
struct Write<'e> {
    entry: usize,
    key: StreamKey,
    expected: ExpectedVersion,
    operation: Operation,
    /// The entry's own resource (references rewritten), or a patched one.
    resource: Option<Cow<'e, Resource>>,
    status: StatusCode,
}

pub async fn run(state: &Arc<AppState>, context: &RequestContext, mut entries: Vec<BundleEntry>) -> ApiResult<Vec<EntryResult>> {
    for entry in &entries {
        authorize(context, entry).map_err(|error| error.at_entry(entry.index))?;
    }
    let mut lock_keys: Vec<String> = entries
        .iter()
        .filter_map(|entry| match (&entry.target, &entry.if_none_exist) {
            (Target::Conditional { resource_type, criteria }, _) => Some(lock_key(&context.tenant, resource_type, criteria)),
            (Target::Type { resource_type }, Some(criteria)) => Some(lock_key(&context.tenant, resource_type, criteria)),
            _ => None,
        })
        .collect();
    lock_keys.sort();
    lock_keys.dedup();
    let mut guards = Vec::with_capacity(lock_keys.len());
    for key in lock_keys {
        guards.push(state.conditional_locks.lock(key).await);
    }
    let offloaded = offload_binaries(state, context, &mut entries).await?;
    let committed = commit(state, context, &mut entries).await;
    if committed.is_err() {
        for location in offloaded {
            if let Err(error) = state.blobs.store.delete(&location).await {
                tracing::warn!(%error, "could not remove the bytes of a Binary that was not written");
            }
        }
    }
    let mut results = committed?;
    drop(guards);
    if entries.iter().any(|entry| entry.method.is_read()) {
        let router = crate::handlers::routes(state.clone());
        let base_path = state.config.base_path.trim_end_matches('/');
        for entry in entries.iter().filter(|entry| entry.method.is_read()) {
            results[entry.index] = match dispatch(&router, base_path, context, entry, None).await {
                Ok(answer) => answer.into(),
                Err(error) => error.into(),
            };
        }
    }
    Ok(results)
}

/// Moves the `data` of every Binary the transaction writes into the blob store; the locations.
async fn offload_binaries(state: &AppState, context: &RequestContext, entries: &mut [BundleEntry]) -> ApiResult<Vec<String>> {
    let mut locations = Vec::new();
    for entry in entries.iter_mut().filter(|entry| matches!(entry.method, Method::Post | Method::Put)) {
        let Some(resource) = entry.resource.as_mut().filter(|resource| resource.get("resourceType").and_then(Value::as_str) == Some("Binary")) else {
            continue;
        };
        match crate::handlers::binary::offload(state, &context.tenant, resource).await {
            Ok(location) => locations.extend(location),
            Err(error) => {
                for location in locations {
                    let _ = state.blobs.store.delete(&location).await;
                }
                return Err(error.at_entry(entry.index));
            }
        }
    }
    Ok(locations)
}

/// Whether the caller may make the write `entry` asks for (reads are checked when they run).
fn authorize(context: &RequestContext, entry: &BundleEntry) -> ApiResult<()> {
    let Some(resource_type) = entry.target.resource_type() else { return Ok(()) };
    let interaction = match entry.method {
        Method::Get | Method::Head => return Ok(()),
        Method::Post => Interaction::Create,
        Method::Put => Interaction::Update,
        Method::Patch => Interaction::Patch,
        Method::Delete => Interaction::Delete,
    };
    context.principal.require_one(interaction, resource_type)?;
    if matches!(entry.target, Target::Conditional { .. }) || entry.if_none_exist.is_some() {
        context.principal.require_one(Interaction::Search, resource_type)?;
    }
    Ok(())
}

/// Plans the transaction and appends it.
async fn commit(state: &AppState, context: &RequestContext, entries: &mut [BundleEntry]) -> ApiResult<Vec<EntryResult>> {
    let identities = resolve_identities(state, context, entries).await?;
    let mut names: HashMap<String, String> = HashMap::new();
    for (entry, identity) in entries.iter().zip(&identities) {
        let key = match identity {
            Identity::Write { key, .. } => key,
            Identity::Existing(event) => &event.key,
            _ => continue,
        };
        if let Some(full_url) = &entry.full_url {
            names.insert(full_url.clone(), format!("{}/{}", key.resource_type, key.id));
        }
    }
    resolve_conditional_references(state, context, entries, &mut names).await?;
    if !names.is_empty() {
        for entry in entries.iter_mut().filter(|entry| matches!(entry.method, Method::Post | Method::Put)) {
            if let Some(resource) = &mut entry.resource {
                rewrite_in(resource, &names);
            }
        }
    }
    let entries: &[BundleEntry] = entries;
    let (mut writes, mut unchanged) = decide(state, &context.principal, entries, &identities).await?;
    let recorded_at = fhir_core::instant::now();
    let mut events = writes.iter().map(|write| event_of(write, recorded_at)).collect::<ApiResult<Vec<NewEvent>>>()?;
    let transaction_id = uuid::Uuid::new_v4().to_string();
    let mut conflicts = 0;
    while !events.is_empty() {
        let batch = AppendBatch { transaction_id: transaction_id.clone(), actor: context.principal.actor.clone(), recorded_at, events: events.clone() };
        let key = match state.log.append(batch).await {
            Ok(_) => break,
            Err(LogError::Conflict { key, .. }) => key,
            Err(other) => return Err(other.into()),
        };
        // Another writer changed resources since their heads were read. Only those entries'
        // decisions depend on the heads: decide them again on the new ones, unless the client
        // pinned the version.
        conflicts += 1;
        if conflicts > MAX_CONFLICTS {
            return Err(ApiError::Conflict("the transaction's resources are being changed by many requests at once; retry".into()));
        }
        let mut redecided = Vec::with_capacity(writes.len());
        let mut reevented = Vec::with_capacity(writes.len());
        for (write, event) in writes.into_iter().zip(events) {
            let stale = write.expected != ExpectedVersion::NoStream || write.key == key;
            let latest = if stale { state.log.read_latest(&write.key).await? } else { None };
            let current = latest.as_ref().map_or(ExpectedVersion::NoStream, |event| ExpectedVersion::Exactly(event.version));
            if current == write.expected {
                redecided.push(write);
                reevented.push(event);
                continue;
            }
            let entry = &entries[write.entry];
            if entry.if_match.is_some() {
                return Err(ApiError::PreconditionFailed("the resource changed after the ifMatch version".into()).at_entry(entry.index));
            }
            match decide_one(state, &context.principal, entry, &write.key, false, latest.as_ref()).map_err(|error| error.at_entry(entry.index))? {
                Decision::Write(write) => {
                    reevented.push(event_of(&write, recorded_at)?);
                    redecided.push(write);
                }
                Decision::Unchanged(current) => unchanged.push((entry.index, current)),
                Decision::Nothing => {}
            }
        }
        writes = redecided;
        events = reevented;
    }
    let bodies: Vec<Bytes> = events.into_iter().map(|event| event.body).collect();
    let mut results: Vec<Option<EntryResult>> = (0..entries.len()).map(|_| None).collect();
    for (write, body) in writes.iter().zip(bodies) {
        let version = write.expected.next_version();
        let location = (write.operation != Operation::Delete).then(|| format!("{}/{}/_history/{version}", write.key.resource_type, write.key.id));
        results[write.entry] = Some(written(context, write.status, location, version, &recorded_at, body));
    }
    for (index, current) in unchanged {
        let location = format!("{}/{}/_history/{}", current.key.resource_type, current.key.id, current.version);
        results[index] = Some(written(context, StatusCode::OK, Some(location), current.version, &current.recorded_at, current.body));
    }
    for (index, identity) in identities.iter().enumerate() {
        if let Identity::Existing(event) = identity {
            results[index] = Some(written(context, StatusCode::OK, None, event.version, &event.recorded_at, event.body.clone()));
        }
    }
    // Entries that wrote nothing: a conditional delete without a match, a delete of a deleted
    // resource; reads are filled in after the commit.
    Ok(results.into_iter().map(|result| result.unwrap_or_else(nothing)).collect())
}

/// The event of one write, its resource stamped with the new version and the commit time.
fn event_of(write: &Write<'_>, recorded_at: time::OffsetDateTime) -> ApiResult<NewEvent> {
    let body = match &write.resource {
        Some(resource) => stamp(resource, &write.key.id, write.expected.next_version(), recorded_at)?,
        None => Bytes::new(),
    };
    Ok(NewEvent { key: write.key.clone(), expected: write.expected, operation: write.operation, body })
}

fn nothing() -> EntryResult {
    EntryResult { status: StatusCode::NO_CONTENT, location: None, etag: None, last_modified: None, resource: None, outcome: None }
}

fn written(context: &RequestContext, status: StatusCode, location: Option<String>, version: u64, at: &time::OffsetDateTime, body: Bytes) -> EntryResult {
    let (resource, outcome) = match context.prefer_return {
        _ if body.is_empty() => (None, None),
        PreferReturn::Representation => (Some(body), None),
        PreferReturn::Minimal => (None, None),
        PreferReturn::OperationOutcome => {
            let message = format!("{} (version {version})", crate::handlers::bundle::status_line(status));
            (None, Some(serde_json::to_vec(&operation_outcome(&[Issue::information(message)])).unwrap_or_default().into()))
        }
    };
    EntryResult {
        status,
        location,
        etag: Some(format!("W/\"{version}\"")),
        last_modified: Some(fhir_core::instant::format_instant(*at)),
        resource,
        outcome,
    }
}

/// Step 1: what each entry writes to, in processing order; no two writes to one resource.
async fn resolve_identities(state: &AppState, context: &RequestContext, entries: &[BundleEntry]) -> ApiResult<Vec<Identity>> {
    let mut order: Vec<&BundleEntry> = entries.iter().collect();
    order.sort_by_key(|entry| (entry.method, entry.index));
    let mut identities: Vec<Option<Identity>> = (0..entries.len()).map(|_| None).collect();
    let mut claimed: HashMap<StreamKey, usize> = HashMap::new();
    for entry in order {
        let identity = resolve_one(state, context, entry).await.map_err(|error| error.at_entry(entry.index))?;
        let touched = match &identity {
            Identity::Write { key, .. } => Some(key),
            Identity::Existing(event) => Some(&event.key),
            Identity::Nothing | Identity::Read => None,
        };
        if let Some(key) = touched {
            if let Some(first) = claimed.insert(key.clone(), entry.index) {
                return Err(ApiError::invalid(format!(
                    "entries {first} and {} both write {}/{}; a transaction may touch a resource once",
                    entry.index, key.resource_type, key.id
                ))
                .at_entry(entry.index));
            }
        }
        identities[entry.index] = Some(identity);
    }
    Ok(identities.into_iter().map(|identity| identity.unwrap_or(Identity::Read)).collect())
}

async fn resolve_one(state: &AppState, context: &RequestContext, entry: &BundleEntry) -> ApiResult<Identity> {
    let tenant = context.tenant.as_str();
    let new_key = |resource_type: &str| Identity::Write { key: StreamKey::new(tenant, resource_type, uuid::Uuid::now_v7().to_string()), fresh: true };
    let body_id = entry.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str);
    Ok(match (&entry.target, entry.method) {
        (_, Method::Get | Method::Head) | (Target::Read, _) => Identity::Read,
        (Target::Type { resource_type }, _) => match &entry.if_none_exist {
            None => new_key(resource_type),
            Some(criteria) => match one_match(state, context, resource_type, criteria).await? {
                None => new_key(resource_type),
                Some(existing) => Identity::Existing(existing),
            },
        },
        (Target::Instance { resource_type, id }, method) => {
            if method == Method::Put && body_id.is_some_and(|body_id| body_id != id) {
                return Err(ApiError::invalid("the resource's id does not match the id in request.url"));
            }
            Identity::Write { key: StreamKey::new(tenant, resource_type, id), fresh: false }
        }
        (Target::Conditional { resource_type, criteria }, method) => match one_match(state, context, resource_type, criteria).await? {
            Some(existing) => {
                if body_id.is_some_and(|body_id| body_id != existing.key.id) {
                    return Err(ApiError::invalid("the resource's id differs from the id of the resource the criteria match"));
                }
                Identity::Write { key: existing.key, fresh: false }
            }
            None => match (method, body_id) {
                (Method::Delete, _) => Identity::Nothing,
                (Method::Patch, _) => return Err(ApiError::NotFound(format!("no {resource_type} matches the criteria"))),
                (_, Some(id)) => Identity::Write { key: crate::handlers::instance_key(tenant, resource_type, id)?, fresh: false },
                (_, None) => new_key(resource_type),
            },
        },
    })
}

/// The one current resource matching `criteria`, none, or 412 for several.
async fn one_match(state: &AppState, context: &RequestContext, resource_type: &str, criteria: &[(String, String)]) -> ApiResult<Option<Event>> {
    let mut found = matches(state, &context.principal, &context.tenant, resource_type, criteria).await?;
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(ApiError::PreconditionFailed(format!("the criteria match more than one {resource_type}"))),
    }
}

/// Step 2: `Type?criteria` references must match exactly one resource.
async fn resolve_conditional_references(
    state: &AppState,
    context: &RequestContext,
    entries: &[BundleEntry],
    names: &mut HashMap<String, String>,
) -> ApiResult<()> {
    for entry in entries.iter().filter(|entry| matches!(entry.method, Method::Post | Method::Put)) {
        let Some(resource) = &entry.resource else { continue };
        let mut found = Vec::new();
        references_in(resource, &is_conditional_reference, &mut found);
        for reference in found {
            if names.contains_key(reference) {
                continue;
            }
            let (resource_type, query) = reference.split_once('?').unwrap_or((reference, ""));
            context.principal.require_one(Interaction::Search, resource_type).map_err(|error| error.at_entry(entry.index))?;
            let criteria: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let target = one_match(state, context, resource_type, &criteria).await.map_err(|error| error.at_entry(entry.index))?;
            let target = target.ok_or_else(|| {
                ApiError::PreconditionFailed(format!("a conditional reference to {resource_type} matches no resource")).at_entry(entry.index)
            })?;
            names.insert(reference.to_string(), format!("{}/{}", target.key.resource_type, target.key.id));
        }
    }
    Ok(())
}

/// Step 3: each write against its stream's head. Validation errors of every entry are reported
/// together; other failures stop at the first.
async fn decide<'e>(state: &AppState, principal: &Principal, entries: &'e [BundleEntry], identities: &[Identity]) -> ApiResult<(Vec<Write<'e>>, Vec<(usize, Event)>)> {
    let heads = read_heads(state, identities).await?;
    let mut writes = Vec::new();
    let mut unchanged = Vec::new();
    let mut invalid: Vec<Issue> = Vec::new();
    for ((entry, identity), latest) in entries.iter().zip(identities).zip(heads) {
        let Identity::Write { key, fresh } = identity else { continue };
        match decide_one(state, principal, entry, key, *fresh, latest.as_ref()) {
            Ok(Decision::Write(write)) => writes.push(write),
            Ok(Decision::Unchanged(current)) => unchanged.push((entry.index, current)),
            Ok(Decision::Nothing) => {}
            Err(error @ ApiError::BadRequest(_)) if invalid.len() < 100 => invalid.extend(error.at_entry(entry.index).issues()),
            Err(error) => return Err(error.at_entry(entry.index)),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::BadRequest(invalid));
    }
    Ok((writes, unchanged))
}

/// The last event of every stream the transaction writes to (none for fresh ids), a few reads
/// at a time.
async fn read_heads(state: &AppState, identities: &[Identity]) -> ApiResult<Vec<Option<Event>>> {
    async fn head(state: &AppState, identity: &Identity) -> event_log::Result<Option<Event>> {
        match identity {
            Identity::Write { key, fresh: false } => state.log.read_latest(key).await,
            _ => Ok(None),
        }
    }
    let reads: Vec<_> = identities.iter().map(|identity| head(state, identity)).collect();
    let heads: Vec<event_log::Result<Option<Event>>> = futures::stream::iter(reads).buffered(HEAD_READS).collect().await;
    Ok(heads.into_iter().collect::<Result<_, _>>()?)
}

/// What one entry writes, against its stream's head, if the principal reaches both the
/// current version and the new one (see [`crate::reach`]).
fn decide_one<'e>(state: &AppState, principal: &Principal, entry: &'e BundleEntry, key: &StreamKey, fresh: bool, latest: Option<&Event>) -> ApiResult<Decision<'e>> {
    let mut decision = decide_unchecked(state, entry, key, fresh, latest)?;
    if let Decision::Write(Write { resource: Some(resource), .. }) = &mut decision {
        if key.resource_type == "Subscription" {
            let mut prepared = resource.clone().into_owned();
            crate::subscriptions::prepare(state, &mut prepared)?;
            *resource = Cow::Owned(prepared);
        }
        crate::guides::check_write(state, &key.resource_type, resource.as_ref())?;
    }
    let live = latest.filter(|event| event.operation != Operation::Delete).map(|event| &event.body[..]);
    let (interaction, new) = match &decision {
        Decision::Write(write) => (Interaction::of(write.operation), write.resource.as_deref()),
        Decision::Unchanged(_) => (Interaction::Update, None),
        Decision::Nothing => return Ok(decision),
    };
    principal.check_write(interaction, live, new)?;
    Ok(decision)
}

fn decide_unchecked<'e>(state: &AppState, entry: &'e BundleEntry, key: &StreamKey, fresh: bool, latest: Option<&Event>) -> ApiResult<Decision<'e>> {
    let live = latest.filter(|event| event.operation != Operation::Delete);
    if let Some(required) = entry.if_match {
        if live.map(|event| event.version) != Some(required) {
            return Err(ApiError::PreconditionFailed(format!("ifMatch names version {required}, which is not the current version")));
        }
    }
    let expected = latest.map_or(ExpectedVersion::NoStream, |event| ExpectedVersion::Exactly(event.version));
    let write = |operation, resource, status| Decision::Write(Write { entry: entry.index, key: key.clone(), expected, operation, resource, status });
    let (resource_type, id) = (&key.resource_type, &key.id);
    Ok(match entry.method {
        Method::Delete => match (latest, live) {
            (None, _) => return Err(ApiError::NotFound(format!("{resource_type}/{id} is not known"))),
            (Some(_), None) => Decision::Nothing,
            (Some(_), Some(_)) => write(Operation::Delete, None, StatusCode::NO_CONTENT),
        },
        Method::Post | Method::Put => {
            if latest.is_none() && !fresh && !state.config.update_create {
                return Err(ApiError::MethodNotAllowed("this server does not let PUT create resources with client-chosen ids".into()));
            }
            let resource = entry.resource.as_ref().ok_or_else(|| ApiError::invalid("the entry has no resource"))?;
            validate(resource, false)?;
            match live {
                Some(current) if same_content(resource, &current.body) => Decision::Unchanged(current.clone()),
                Some(_) => write(Operation::Update, Some(Cow::Borrowed(resource)), StatusCode::OK),
                None => write(Operation::Create, Some(Cow::Borrowed(resource)), StatusCode::CREATED),
            }
        }
        Method::Patch => {
            let current = match latest {
                None => return Err(ApiError::NotFound(format!("{resource_type}/{id} is not known"))),
                Some(event) if event.operation == Operation::Delete => {
                    return Err(ApiError::Gone { version: event.version, deleted_at: event.recorded_at })
                }
                Some(event) => event,
            };
            let patch = PatchDocument::from_resource(entry.resource.as_ref().ok_or_else(|| ApiError::invalid("the entry has no patch"))?)?;
            let patched = patch.patched(&current.body, resource_type, id)?;
            write(Operation::Update, Some(Cow::Owned(patched)), StatusCode::OK)
        }
        Method::Get | Method::Head => Decision::Nothing,
    })
}
