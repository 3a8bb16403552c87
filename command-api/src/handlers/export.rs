//! Bulk Data `$export` (Bulk Data Access IG v2): kick-off at system, Patient and Group level (GET
//! with query parameters, or POST with a Parameters body), status polling, the completion
//! manifest, and cancellation. The job runs in the `export-worker` as a snapshot of the log at
//! the kick-off's position; this module only plans it, checks who may have it, and reports.
//!
//! - kick-off needs `Prefer: respond-async`; answers 202 with `Content-Location` of the status;
//! - `_outputFormat` (`application/fhir+ndjson`, `application/ndjson`, `ndjson`), `_type`,
//!   `_since`, `_typeFilter` (search criteria, matched per resource), and for Patient and Group
//!   exports `patient`; `includeAssociatedData` and `_elements` are refused (ignored with
//!   `Prefer: handling=lenient`), and so is any other parameter;
//! - the caller needs `search` on every type exported, and its SMART patient context or
//!   query-restricted scopes bound the export as they bound a search;
//! - at most `max_exports_per_tenant` unfinished exports per tenant (429 beyond);
//! - status: 202 with `X-Progress` and `Retry-After` while running, 200 with the manifest when
//!   complete (file URLs signed and expiring, so `requiresAccessToken` is false), 500 with an
//!   OperationOutcome when the export failed, 404 for an unknown, cancelled or expired job or
//!   another caller's; `DELETE` cancels (202) and removes the files.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use export_worker::{ExportJob, JobState, Plan, Progress, StoreError};
use fhir_core::definitions::r4;
use fhir_core::{operation_outcome, Issue, IssueType};
use serde_json::{json, Value};

use super::FhirPath;
use crate::access::{Interaction, Types};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{read_resource_body, RequestContext};
use crate::resource::parse_json;
use crate::respond::fhir_json_response;
use crate::state::AppState;

const OUTPUT_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];
/// Seconds a client is asked to wait between polls.
const RETRY_AFTER: u64 = 2;

/// Which resources an export is about.
enum Level {
    System,
    Patient,
    Group(String),
}

pub async fn system(State(state): State<Arc<AppState>>, method: Method, context: RequestContext, body: Body) -> ApiResult<Response> {
    kick_off(&state, &context, &method, body, Level::System).await
}

pub async fn patient(State(state): State<Arc<AppState>>, method: Method, context: RequestContext, body: Body) -> ApiResult<Response> {
    kick_off(&state, &context, &method, body, Level::Patient).await
}

pub async fn group(State(state): State<Arc<AppState>>, FhirPath(id): FhirPath<String>, method: Method, context: RequestContext, body: Body) -> ApiResult<Response> {
    kick_off(&state, &context, &method, body, Level::Group(id)).await
}

/// The parameters of a kick-off: the query string (GET), or a Parameters body (POST).
async fn parameters(state: &AppState, context: &RequestContext, method: &Method, body: Body) -> ApiResult<Vec<(String, String)>> {
    let mut parameters: Vec<(String, String)> = context.params.iter().filter(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty")).cloned().collect();
    if method != Method::POST {
        return Ok(parameters);
    }
    let body = read_resource_body(state, &context.headers, body).await?;
    if body.is_empty() {
        return Ok(parameters);
    }
    let resource = parse_json(&body)?;
    if resource.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::invalid("a POST $export takes a Parameters resource"));
    }
    for parameter in resource.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let name = parameter.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("a parameter without a name"))?;
        let value = ["valueString", "valueInstant", "valueCode", "valueUri", "valueUrl", "valueDateTime"]
            .iter()
            .find_map(|field| parameter.get(*field).and_then(Value::as_str).map(String::from))
            .or_else(|| parameter.get("valueReference").and_then(|reference| reference.get("reference")).and_then(Value::as_str).map(String::from))
            .or_else(|| parameter.get("valueBoolean").and_then(Value::as_bool).map(|flag| flag.to_string()))
            .ok_or_else(|| ApiError::invalid(format!("parameter {name} has no value this operation understands")))?;
        parameters.push((name.to_string(), value));
    }
    Ok(parameters)
}

async fn kick_off(state: &AppState, context: &RequestContext, method: &Method, body: Body, level: Level) -> ApiResult<Response> {
    if !context.prefers("respond-async") {
        return Err(ApiError::invalid("$export runs asynchronously: send Prefer: respond-async"));
    }
    let lenient = context.prefers("handling=lenient");
    let parameters = parameters(state, context, method, body).await?;
    let mut requested_types: Option<Vec<String>> = None;
    let mut type_filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut since_ms = None;
    let mut patients: Option<Vec<String>> = None;
    let mut warnings = Vec::new();
    for (name, value) in &parameters {
        match name.as_str() {
            "_outputFormat" if OUTPUT_FORMATS.contains(&value.as_str()) => {}
            "_outputFormat" => return Err(ApiError::invalid(format!("_outputFormat '{value}' is not offered; use application/fhir+ndjson"))),
            "_type" => {
                let types = requested_types.get_or_insert_with(Vec::new);
                for resource_type in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !r4().is_resource_type(resource_type) {
                        return Err(ApiError::invalid(format!("_type: '{resource_type}' is not a FHIR R4 resource type")));
                    }
                    if !types.iter().any(|t| t == resource_type) {
                        types.push(resource_type.to_string());
                    }
                }
            }
            "_since" => {
                let (start, _) = fhir_core::instant::parse_range(value).ok_or_else(|| ApiError::invalid(format!("_since '{value}' is not an instant")))?;
                since_ms = Some(fhir_core::instant::unix_millis(start));
            }
            "_typeFilter" => {
                for filter in split_type_filters(value) {
                    let (resource_type, query) = filter.split_once('?').ok_or_else(|| ApiError::invalid(format!("_typeFilter '{filter}' is not Type?criteria")))?;
                    if !r4().is_resource_type(resource_type) {
                        return Err(ApiError::invalid(format!("_typeFilter: '{resource_type}' is not a FHIR R4 resource type")));
                    }
                    export_worker::filter::criteria(resource_type, query).map_err(|why| ApiError::invalid(format!("_typeFilter: {why}")))?;
                    type_filters.entry(resource_type.to_string()).or_default().push(query.to_string());
                }
            }
            "patient" if !matches!(level, Level::System) => {
                let id = value.strip_prefix("Patient/").filter(|id| crate::resource::is_valid_id(id)).ok_or_else(|| ApiError::invalid(format!("patient '{value}' is not a Patient reference")))?;
                patients.get_or_insert_with(Vec::new).push(id.to_string());
            }
            other if lenient => warnings.push(format!("parameter {other} was ignored")),
            "includeAssociatedData" | "_elements" => {
                return Err(ApiError::BadRequest(vec![Issue::error(IssueType::NotSupported, format!("{name} is not supported by this server (send Prefer: handling=lenient to ignore it)"))]));
            }
            other => return Err(ApiError::invalid(format!("$export has no parameter '{other}' here (send Prefer: handling=lenient to ignore it)"))),
        }
    }
    if let Some(types) = &requested_types {
        if let Some(stray) = type_filters.keys().find(|t| !types.contains(t)) {
            return Err(ApiError::invalid(format!("_typeFilter names {stray}, which is not in _type")));
        }
    }
    let patient_compartment = !matches!(level, Level::System);
    if let Level::Group(id) = &level {
        let members = group_members(state, context, id).await?;
        patients = Some(match patients {
            Some(asked) => asked.into_iter().filter(|patient| members.contains(patient)).collect(),
            None => members,
        });
    }
    let principal = &context.principal;
    let types = plan_types(context, &level, requested_types)?;
    principal.require(Interaction::Search, &Types::Some(types.iter().cloned().collect()))?;
    let mut plan = Plan { types, since_ms, type_filters, patient_compartment, patients, restrictions: BTreeMap::new() };
    bound(context, &mut plan)?;
    let id = uuid::Uuid::now_v7().to_string();
    let as_of = state.log.head().await?;
    let now = fhir_core::instant::now();
    let job = ExportJob {
        id: id.clone(),
        tenant: context.tenant.clone(),
        owner: principal.actor.clone(),
        request: request_url(context, &level),
        state: JobState::Accepted,
        as_of,
        transaction_time: fhir_core::instant::format_instant(now),
        plan,
        progress: Progress::default(),
        output: Vec::new(),
        error: None,
        created_ms: fhir_core::instant::unix_millis(now),
        finished_ms: None,
    };
    match state.exports.jobs.create(&job, state.config.max_exports_per_tenant).await {
        Ok(()) => {}
        Err(StoreError::Busy(limit)) => {
            return Err(ApiError::TooManyRequests { message: format!("this tenant already has {limit} exports in progress; retry when one has finished"), retry_after_secs: 30 })
        }
        Err(other) => return Err(ApiError::Internal(other.to_string())),
    }
    state.exports.wake.notify_one();
    let mut issues = vec![Issue::information(format!("export accepted as of log position {as_of}; poll the Content-Location"))];
    issues.extend(warnings.into_iter().map(|text| Issue::warning(IssueType::NotSupported, text)));
    let body = serde_json::to_vec(&operation_outcome(&issues)).unwrap_or_default();
    let mut response = fhir_json_response(StatusCode::ACCEPTED, body.into());
    let location = format!("{}/$export-status/{id}", context.base_url);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::CONTENT_LOCATION, value);
    }
    Ok(response)
}

/// `_typeFilter` values separated by commas; a comma inside a query (an OR of values) stays.
fn split_type_filters(value: &str) -> Vec<String> {
    let mut filters: Vec<String> = Vec::new();
    for piece in value.split(',') {
        let starts_filter = piece.split_once('?').is_some_and(|(head, _)| r4().is_resource_type(head.trim()));
        match filters.last_mut() {
            Some(last) if !starts_filter => {
                last.push(',');
                last.push_str(piece);
            }
            _ => filters.push(piece.trim().to_string()),
        }
    }
    filters.into_iter().filter(|filter| !filter.is_empty()).collect()
}

/// The types exported: `_type`, or every type the caller may search (system level), or the
/// Patient compartment's (Patient and Group level).
fn plan_types(context: &RequestContext, level: &Level, requested: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let grants = &context.principal.grants;
    let mut compartment: Vec<String> = r4().compartment_members("Patient").iter().map(|(member, _)| member.clone()).collect();
    if !compartment.iter().any(|t| t == "Patient") {
        compartment.insert(0, "Patient".to_string());
    }
    let in_scope = |resource_type: &String| matches!(level, Level::System) || compartment.contains(resource_type);
    match requested {
        Some(types) => {
            if let Some(outside) = types.iter().find(|t| !in_scope(t)) {
                return Err(ApiError::invalid(format!("_type: {outside} is not in the Patient compartment, which a Patient or Group export holds")));
            }
            Ok(types)
        }
        None => {
            let all: Vec<String> = match level {
                Level::System => r4().resource_types().map(String::from).collect(),
                _ => compartment,
            };
            let allowed: Vec<String> = all.into_iter().filter(|t| grants.allows(Interaction::Search, t)).collect();
            if allowed.is_empty() {
                return Err(ApiError::Forbidden("not allowed: search on any type, which an export needs".into()));
            }
            Ok(allowed)
        }
    }
}

/// A SMART patient context bounds the export to that patient's compartment; query-restricted
/// scopes filter their types.
fn bound(context: &RequestContext, plan: &mut Plan) -> ApiResult<()> {
    let grants = &context.principal.grants;
    if let Some(patient) = grants.patient() {
        if let Some(outside) = crate::reach::outside_patient_compartment(&plan.types) {
            return Err(ApiError::Forbidden(format!("{outside} is not in the Patient compartment; a token in the context of Patient/{patient} exports only that compartment")));
        }
        if plan.patients.as_ref().is_some_and(|patients| !patients.iter().any(|p| p == patient)) {
            return Err(ApiError::Forbidden(format!("this token may export only Patient/{patient}")));
        }
        plan.patient_compartment = true;
        plan.patients = Some(vec![patient.to_string()]);
    }
    for resource_type in &plan.types {
        let restrictions = grants.restrictions(Interaction::Search, resource_type);
        if !restrictions.is_empty() {
            plan.restrictions.insert(resource_type.clone(), restrictions.iter().map(|query| query.to_string()).collect());
        }
    }
    Ok(())
}

/// The Patients a Group lists as active members.
async fn group_members(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<Vec<String>> {
    context.principal.require_one(Interaction::Read, "Group")?;
    let key = super::instance_key(&context.tenant, "Group", id)?;
    let event = state.log.read_latest(&key).await?.filter(|event| event.operation != event_log::Operation::Delete).ok_or_else(|| ApiError::NotFound(format!("Group/{id} is not known")))?;
    context.principal.check_stored(Interaction::Read, &event.body)?;
    let group: Value = serde_json::from_slice(&event.body).map_err(|error| ApiError::Internal(format!("stored body: {error}")))?;
    let members = group.get("member").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Ok(members
        .iter()
        .filter(|member| member.get("inactive").and_then(Value::as_bool) != Some(true))
        .filter_map(|member| member.get("entity")?.get("reference")?.as_str()?.strip_prefix("Patient/").map(String::from))
        .collect())
}

fn request_url(context: &RequestContext, level: &Level) -> String {
    let path = match level {
        Level::System => "$export".to_string(),
        Level::Patient => "Patient/$export".to_string(),
        Level::Group(id) => format!("Group/{id}/$export"),
    };
    super::bundle::link_url(&context.base_url, &path, &context.params)
}

/// The job `id` if the caller may see it: its own, not cancelled.
async fn own_job(state: &AppState, context: &RequestContext, id: &str) -> ApiResult<ExportJob> {
    let unknown = || ApiError::NotFound(format!("no export '{id}' (unknown, cancelled or expired)"));
    let job = state.exports.jobs.get(&context.tenant, id).await.map_err(|error| ApiError::Internal(error.to_string()))?.ok_or_else(unknown)?;
    if job.state == JobState::Cancelled || job.owner != context.principal.actor {
        return Err(unknown());
    }
    Ok(job)
}

/// `GET [base]/$export-status/[id]`.
pub async fn status(State(state): State<Arc<AppState>>, FhirPath(id): FhirPath<String>, context: RequestContext) -> ApiResult<Response> {
    let job = own_job(&state, &context, &id).await?;
    match job.state {
        JobState::Accepted | JobState::Running => {
            let types = job.plan.types.len();
            let at = job.plan.types.get(job.progress.type_index).map_or("done", String::as_str);
            let progress = format!("{} resources exported; at {at} ({} of {types} types)", job.progress.exported, (job.progress.type_index + 1).min(types));
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER));
            if let Ok(value) = HeaderValue::from_str(&progress) {
                headers.insert("x-progress", value);
            }
            Ok(response)
        }
        JobState::Failed => {
            let why = job.error.unwrap_or_else(|| "the export failed".into());
            let body = serde_json::to_vec(&operation_outcome(&[Issue::error(IssueType::Exception, format!("the export failed: {why}"))])).unwrap_or_default();
            Ok(fhir_json_response(StatusCode::INTERNAL_SERVER_ERROR, body.into()))
        }
        JobState::Completed => manifest(&state, &context, &job).await,
        JobState::Cancelled => Err(ApiError::NotFound(format!("no export '{id}'"))),
    }
}

async fn manifest(state: &AppState, context: &RequestContext, job: &ExportJob) -> ApiResult<Response> {
    let mut output = Vec::with_capacity(job.output.len());
    for file in &job.output {
        let url = state.blobs.download_url(&context.base_url, &file.key, state.config.download_url_ttl).await?;
        output.push(json!({ "type": file.resource_type, "url": url, "count": file.count }));
    }
    let manifest = json!({
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": false,
        "output": output,
        "error": [],
    });
    let mut response = axum::Json(manifest).into_response();
    if let Some(finished) = job.finished_ms.and_then(fhir_core::instant::from_unix_millis) {
        let expires = finished + state.config.export_retention;
        if let Ok(value) = HeaderValue::from_str(&fhir_core::instant::http_date(expires)) {
            response.headers_mut().insert(header::EXPIRES, value);
        }
    }
    Ok(response)
}

/// `DELETE [base]/$export-status/[id]`: cancels the export and removes its files.
pub async fn cancel(State(state): State<Arc<AppState>>, FhirPath(id): FhirPath<String>, context: RequestContext) -> ApiResult<Response> {
    own_job(&state, &context, &id).await?;
    state.exports.jobs.cancel(&context.tenant, &id).await.map_err(|error| ApiError::Internal(error.to_string()))?;
    state.exports.wake.notify_one();
    let body = serde_json::to_vec(&operation_outcome(&[Issue::information(format!("export {id} cancelled; its files are being removed"))])).unwrap_or_default();
    Ok(fhir_json_response(StatusCode::ACCEPTED, body.into()))
}
