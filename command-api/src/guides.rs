//! Implementation Guides in the API: the profiles of the loaded packages checked on every write
//! (those a resource claims in `meta.profile` that this server knows, and those the
//! configuration requires for its type), `$validate?profile=`, and `POST [base]/$install-package`.
//!
//! Packages are per server. The binary loads them and installs new ones (see
//! [`PackageInstaller`]); this module only reads the current set, which an install replaces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use implementation_guide::Conformance;
use serde_json::Value;

use crate::access::Interaction;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::RequestContext;
use crate::resource::Resource;
use crate::respond::fhir_json_response;
use crate::state::AppState;

/// Installs a package for the whole server: stores it, makes its profiles and SearchParameters
/// current, and starts what they need (a reindex). Returns a Parameters resource saying what
/// was done.
#[async_trait]
pub trait PackageInstaller: Send + Sync + 'static {
    async fn install(&self, tarball: Vec<u8>, allow_missing_dependencies: bool) -> Result<Value, String>;
}

/// The loaded packages' conformance resources and the profiles required per resource type.
pub struct Guides {
    current: RwLock<Arc<Conformance>>,
    required: HashMap<String, Vec<String>>,
    installer: OnceLock<Arc<dyn PackageInstaller>>,
    /// Bumped by each [`Guides::replace`].
    generation: AtomicU64,
}

impl Default for Guides {
    fn default() -> Self {
        Guides::new(Conformance::default(), HashMap::new())
    }
}

impl Guides {
    pub fn new(conformance: Conformance, required: HashMap<String, Vec<String>>) -> Guides {
        Guides { current: RwLock::new(Arc::new(conformance)), required, installer: OnceLock::new(), generation: AtomicU64::new(0) }
    }

    /// Lets `$install-package` install through `installer` (once; later calls are ignored).
    pub fn set_installer(&self, installer: Arc<dyn PackageInstaller>) {
        let _ = self.installer.set(installer);
    }

    pub fn current(&self) -> Arc<Conformance> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes a new set of packages current; writes already checking go on with the old one.
    pub fn replace(&self, conformance: Conformance) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(conformance);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes with every [`Guides::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The profiles the configuration requires for a resource type.
    pub fn required_for(&self, resource_type: &str) -> &[String] {
        self.required.get(resource_type).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Checks a resource about to be written against its profiles: 422 with the issues if it
/// does not conform. A write that claims no profile, of a type that requires none, costs no
/// more than looking; nothing is cloned unless a profile applies.
///
/// An active SearchParameter also becomes a search parameter of the server (see the binary's
/// `search_params`), so it must be one this server can use: 400 with the reason otherwise.
pub fn check_write(state: &AppState, resource_type: &str, resource: &Resource) -> ApiResult<()> {
    if resource_type == "SearchParameter" && resource.get("status").and_then(Value::as_str) == Some("active") {
        fhir_core::definitions::SearchParameter::from_resource(&Value::Object(resource.clone())).map_err(ApiError::invalid)?;
    }
    let required = state.guides.required_for(resource_type);
    let claimed = resource.get("meta").and_then(|meta| meta.get("profile")).and_then(Value::as_array);
    if claimed.is_none() && required.is_empty() {
        return Ok(());
    }
    let conformance = state.guides.current();
    let claims_known = claimed.is_some_and(|profiles| profiles.iter().filter_map(Value::as_str).any(|url| conformance.profile(url).is_some()));
    if !claims_known && required.is_empty() {
        return Ok(());
    }
    let issues = conformance.validate_claimed(&Value::Object(resource.clone()), required);
    if issues.iter().any(fhir_core::Issue::is_error) {
        return Err(ApiError::Unprocessable(issues));
    }
    Ok(())
}

/// `POST [base]/$install-package`: the body is a package tarball; `allowMissingDependencies=true`
/// installs it even when packages it depends on are not installed. Needs `create` on
/// ImplementationGuide and a token not bounded to a patient or a query. With multi-tenancy on
/// it is refused: packages are per server, so one tenant may not change them for all.
pub async fn install(State(state): State<Arc<AppState>>, context: RequestContext, body: Body) -> ApiResult<Response> {
    context.principal.require_one(Interaction::Create, "ImplementationGuide")?;
    if context.principal.is_bounded() {
        return Err(ApiError::Forbidden("installing packages is for administrators; this token is bounded to a patient or a query".into()));
    }
    if state.config.multi_tenancy {
        return Err(ApiError::Forbidden("packages are per server, not per tenant: install them with `fhir-server ig install` on the server".into()));
    }
    let installer = state.guides.installer.get().cloned().ok_or_else(|| ApiError::NotFound("this server does not install packages over HTTP".into()))?;
    let mut allow_missing = false;
    for (name, value) in &context.params {
        match name.as_str() {
            "allowMissingDependencies" => {
                allow_missing = value.parse().map_err(|_| ApiError::invalid("allowMissingDependencies must be true or false"))?;
            }
            "_format" | "_pretty" => {}
            other => return Err(ApiError::invalid(format!("$install-package does not take the parameter {other}"))),
        }
    }
    let limit = implementation_guide::package::MAX_PACKAGE_BYTES;
    let tarball = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let report = installer.install(tarball.to_vec(), allow_missing).await.map_err(|why| ApiError::Unprocessable(vec![fhir_core::Issue::error(fhir_core::IssueType::Invalid, why)]))?;
    Ok(fhir_json_response(StatusCode::OK, serde_json::to_vec(&report).unwrap_or_default().into()))
}
