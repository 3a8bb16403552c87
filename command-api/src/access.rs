//! What a caller may do. The authenticator gives each [`Principal`] its [`Grants`]: which
//! [`Interaction`]s on which resource types. They are checked in three places:
//!
//! - a layer on the routes, for the interaction a request is (read, vread, history, create,
//!   update, patch, delete, an operation; conditional writes also need `search`);
//! - every search (type, system, compartment, `$everything`): `search` on every type the query
//!   can return or look into: the types searched, `_include` targets, `_revinclude` sources, and
//!   the types a chain or `_has` passes through (a filter on them tells about them too);
//! - each write of a transaction (the reads and batch entries run through the routes).
//!
//! Denied is 403 with an OperationOutcome naming the interaction and type. Within the allowed
//! types, [`crate::reach`] bounds which resources a principal reaches.

use std::collections::BTreeSet;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir_core::search::{registry, Include, ParamPath, SearchQuery};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// The interactions a grant names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    Search,
    History,
    Create,
    Update,
    Patch,
    Delete,
    /// `$validate` and other operations on a type or instance.
    Operation,
}

impl Interaction {
    pub const ALL: [Interaction; 9] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Search,
        Interaction::History,
        Interaction::Create,
        Interaction::Update,
        Interaction::Patch,
        Interaction::Delete,
        Interaction::Operation,
    ];

    /// The interaction a write of `operation` is.
    pub fn of(operation: event_log::Operation) -> Interaction {
        match operation {
            event_log::Operation::Create => Interaction::Create,
            event_log::Operation::Update => Interaction::Update,
            event_log::Operation::Delete => Interaction::Delete,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Search => "search",
            Interaction::History => "history",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::Operation => "operation",
        }
    }
}

/// The resource types an interaction is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Types {
    /// Every type (system search without `_type`, system history, `_include=*`).
    All,
    Some(BTreeSet<String>),
}

/// What a principal may do.
pub trait Grants: Send + Sync {
    fn allows(&self, interaction: Interaction, resource_type: &str) -> bool;
    /// Whether `interaction` is allowed on every type at once.
    fn allows_all(&self, interaction: Interaction) -> bool;
    /// The patient whose compartment bounds everything this principal reads and writes (a
    /// SMART patient context; see [`crate::reach`]).
    fn patient(&self) -> Option<&str> {
        None
    }
    /// The queries (`category=laboratory`) that bound `interaction` on `resource_type`: a
    /// resource is within reach when it matches one of them. Empty: no bound.
    fn restrictions(&self, _interaction: Interaction, _resource_type: &str) -> Vec<&str> {
        Vec::new()
    }
    /// Whether any type is bounded by a query.
    fn restricts_any(&self) -> bool {
        false
    }
}

/// Everything: without authentication, and for the server's own tools.
pub struct AllowAll;

impl Grants for AllowAll {
    fn allows(&self, _: Interaction, _: &str) -> bool {
        true
    }
    fn allows_all(&self, _: Interaction) -> bool {
        true
    }
}

impl Principal {
    /// `Ok` if the principal may do `interaction` on `types`, else 403.
    pub fn require(&self, interaction: Interaction, types: &Types) -> ApiResult<()> {
        let denied = match types {
            Types::All => (!self.grants.allows_all(interaction)).then(|| "every type".to_string()),
            Types::Some(types) => types.iter().find(|t| !self.grants.allows(interaction, t)).cloned(),
        };
        match denied {
            None => Ok(()),
            Some(what) => Err(ApiError::Forbidden(format!("not allowed: {} on {what}", interaction.as_str()))),
        }
    }

    pub fn require_one(&self, interaction: Interaction, resource_type: &str) -> ApiResult<()> {
        self.require(interaction, &Types::Some(BTreeSet::from([resource_type.to_string()])))
    }
}

/// The layer: the interaction a request is, by method and route, checked before the handler.
/// Searches are checked where their query is parsed ([`check_search`]); bundles entry by entry.
pub(crate) async fn authorize(request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>() else { return next.run(request).await };
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string()).unwrap_or_default();
    let route = route.rsplit_once("/{type}").map(|(_, rest)| format!("/{{type}}{rest}")).unwrap_or(route);
    let resource_type = request.uri().path().split('/').rev().nth(depth(&route)).unwrap_or_default().to_string();
    let conditional_create = request.headers().contains_key("if-none-exist");
    let needed: Vec<(Interaction, Types)> = {
        let one = |interaction| (interaction, Types::Some(BTreeSet::from([resource_type.clone()])));
        let method = request.method();
        match (route.as_str(), method) {
            (r, _) if r.ends_with("/_history") && !r.contains("{type}") => vec![(Interaction::History, Types::All)],
            ("/{type}", &Method::POST) if conditional_create => vec![one(Interaction::Create), one(Interaction::Search)],
            ("/{type}", &Method::POST) => vec![one(Interaction::Create)],
            ("/{type}", &Method::PUT) => vec![one(Interaction::Update), one(Interaction::Search)],
            ("/{type}", &Method::PATCH) => vec![one(Interaction::Patch), one(Interaction::Search)],
            ("/{type}", &Method::DELETE) => vec![one(Interaction::Delete), one(Interaction::Search)],
            ("/{type}/_history" | "/{type}/{id}/_history", _) => vec![one(Interaction::History)],
            ("/{type}/{id}", &Method::GET | &Method::HEAD) => vec![one(Interaction::Read)],
            ("/{type}/{id}", &Method::PUT) => vec![one(Interaction::Update)],
            ("/{type}/{id}", &Method::PATCH) => vec![one(Interaction::Patch)],
            ("/{type}/{id}", &Method::DELETE) => vec![one(Interaction::Delete)],
            ("/{type}/{id}", &Method::POST) if request.uri().path().ends_with("/_search") => Vec::new(),
            ("/{type}/{id}", &Method::POST) => vec![one(Interaction::Operation)],
            ("/{type}/{id}/_history/{version}", _) => vec![one(Interaction::Vread)],
            // Searches (type, system, compartment), bundles, the CapabilityStatement.
            _ => Vec::new(),
        }
    };
    for (interaction, types) in needed {
        if let Err(error) = principal.require(interaction, &types) {
            return error.into_response();
        }
    }
    next.run(request).await
}

/// How many path segments after the type a route has (`/{type}/{id}` has one).
fn depth(route: &str) -> usize {
    route.strip_prefix("/{type}").map_or(0, |rest| rest.matches('/').count())
}

/// `search` on every type `query` can return or look into.
pub fn check_search(principal: &Principal, query: &SearchQuery) -> ApiResult<()> {
    principal.require(Interaction::Search, &touched_types(query))
}

fn touched_types(query: &SearchQuery) -> Types {
    if query.types.is_empty() {
        return Types::All;
    }
    let mut types: BTreeSet<String> = query.types.iter().cloned().collect();
    if let Some(compartment) = &query.compartment {
        types.extend(compartment.members.iter().map(|(member, _)| member.clone()));
    }
    for criterion in &query.criteria {
        path_types(&criterion.path, &mut types);
    }
    for include in &query.include {
        match include_targets(include) {
            Some(targets) => types.extend(targets),
            None => return Types::All,
        }
    }
    for revinclude in &query.revinclude {
        match &revinclude.source_type {
            Some(source) => {
                types.insert(source.clone());
            }
            None => return Types::All,
        }
    }
    Types::Some(types)
}

fn path_types(path: &ParamPath, types: &mut BTreeSet<String>) {
    match path {
        ParamPath::Direct { .. } => {}
        ParamPath::Chain { target_types, next, .. } => {
            types.extend(target_types.iter().cloned());
            path_types(next, types);
        }
        ParamPath::Has { source_type, next, .. } => {
            types.insert(source_type.clone());
            path_types(next, types);
        }
    }
}

/// The types an `_include` can bring in; `None` for any.
fn include_targets(include: &Include) -> Option<Vec<String>> {
    if let Some(target) = &include.target_type {
        return Some(vec![target.clone()]);
    }
    let (source, param) = (include.source_type.as_ref()?, include.param.as_ref()?);
    let targets = registry::search_parameter(source, param)?.target.clone();
    (!targets.is_empty()).then_some(targets)
}
