//! The configured authentication, wired into the API's `Authenticator` port: a bearer token
//! verified by `access_control` (mode `jwt`) whose groups get the role rules' grants, an
//! `x-api-key` (when one is configured), or nothing; and the rule that a server without
//! authentication listens on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use access_control::{JwtSettings, JwtVerifier, Rejection};
use anyhow::{bail, Context};
use async_trait::async_trait;
use axum::http::{header, HeaderMap};
use access_control::roles::RoleRules;
use access_control::smart;
use figment::providers::Format;
use command_api::access::{Grants, Interaction};
use command_api::auth::{Anonymous, AuthFailure, Authenticator, Principal};

use crate::config::{AuthConfig, AuthMode};

/// The authenticator `config` describes.
pub fn authenticator(config: &AuthConfig) -> anyhow::Result<Arc<dyn Authenticator>> {
    if config.smart.is_some() && config.mode != AuthMode::Jwt {
        bail!("[auth.smart] needs auth.mode = \"jwt\": SMART apps call with bearer tokens");
    }
    let verifier = match config.mode {
        AuthMode::None => None,
        AuthMode::Jwt => Some(JwtVerifier::new(jwt_settings(config)?)),
    };
    if verifier.is_none() && config.api_key.is_none() {
        return Ok(Arc::new(Anonymous));
    }
    let roles = Arc::new(role_rules(config)?);
    Ok(Arc::new(Configured {
        verifier,
        api_key: config.api_key.clone(),
        roles,
        groups_claim: config.groups_claim.clone(),
        tenant_claim: config.tenant_claim.clone(),
    }))
}

/// The role rules of `auth.roles_file`, or the defaults.
fn role_rules(config: &AuthConfig) -> anyhow::Result<RoleRules> {
    let rules = match &config.roles_file {
        None => RoleRules::default(),
        Some(path) => figment::Figment::from(figment::providers::Toml::file_exact(path))
            .extract()
            .with_context(|| format!("cannot read the role rules in {}", path.display()))?,
    };
    let known: Vec<&str> = Interaction::ALL.iter().map(|interaction| interaction.as_str()).collect();
    rules.check(&known).map_err(|why| anyhow::anyhow!("{}: {why}", config.roles_file.as_ref().map_or("role rules".into(), |p| p.display().to_string())))?;
    Ok(rules)
}

fn jwt_settings(config: &AuthConfig) -> anyhow::Result<JwtSettings> {
    let required = |value: &Option<String>, name: &str| value.clone().with_context(|| format!("auth mode jwt needs auth.{name}"));
    let algorithms = config
        .algorithms
        .iter()
        .map(|name| match name.as_str() {
            "RS256" => Ok(access_control::Algorithm::RS256),
            "ES256" => Ok(access_control::Algorithm::ES256),
            other => bail!("auth.algorithms: {other} is not accepted (RS256, ES256)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if algorithms.is_empty() {
        bail!("auth.algorithms is empty");
    }
    Ok(JwtSettings {
        jwks_url: required(&config.jwks_url, "jwks_url")?,
        issuer: required(&config.issuer, "issuer")?,
        audience: required(&config.audience, "audience")?,
        algorithms,
        jwks_min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
    })
}

/// Refuses to serve `address` without authentication unless it is loopback, or the
/// configuration forces it (then warns).
pub fn check_exposure(config: &AuthConfig, address: SocketAddr) -> anyhow::Result<()> {
    if config.mode != AuthMode::None || config.api_key.is_some() || address.ip().is_loopback() {
        return Ok(());
    }
    if !config.allow_remote_without_auth {
        bail!(
            "refusing to serve {address} without authentication: anyone who can reach it could read and change every record. \
             Configure [auth] mode = \"jwt\", listen on a loopback address, or set auth.allow_remote_without_auth = true"
        );
    }
    tracing::warn!(%address, "serving without authentication on a non-loopback address (auth.allow_remote_without_auth)");
    Ok(())
}

struct Configured {
    verifier: Option<JwtVerifier>,
    api_key: Option<String>,
    roles: Arc<RoleRules>,
    groups_claim: String,
    tenant_claim: String,
}

/// A token's groups, granted what the role rules give them.
struct GroupGrants {
    groups: Vec<String>,
    roles: Arc<RoleRules>,
}

impl Grants for GroupGrants {
    fn allows(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.roles.allows(&self.groups, interaction.as_str(), Some(resource_type))
    }

    fn allows_all(&self, interaction: Interaction) -> bool {
        self.roles.allows(&self.groups, interaction.as_str(), None)
    }
}

/// What a token's SMART scopes allow. `patient/` scopes need a patient: the launch context's
/// (`patient` claim), or the user's own record (`fhirUser` naming a Patient); without one they
/// grant nothing. With a patient, everything the token does is bounded to that patient's
/// compartment, and so is a user whose `fhirUser` is a Patient. A scope's v2 query
/// (`?category=laboratory`) bounds what it grants to the resources that match it.
struct ScopeGrants {
    scopes: Vec<smart::Scope>,
    patient: Option<String>,
}

impl ScopeGrants {
    fn new(scopes: Vec<smart::Scope>, claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        let claim = |name: &str| claims.get(name).and_then(|value| value.as_str());
        let launch_patient = claim("patient").filter(|id| command_api::resource::is_valid_id(id)).filter(|_| scopes.iter().any(|scope| scope.context == smart::Context::Patient));
        let own_record = claim("fhirUser").and_then(patient_of);
        let patient = launch_patient.or(own_record).map(String::from);
        ScopeGrants { scopes, patient }
    }

    fn granting(&self) -> impl Iterator<Item = &smart::Scope> {
        self.scopes.iter().filter(|scope| scope.context != smart::Context::Patient || self.patient.is_some())
    }

    fn granting_on<'a, 't>(&'a self, interaction: Interaction, resource_type: &'t str) -> impl Iterator<Item = &'a smart::Scope> + use<'a, 't> {
        self.granting().filter(move |scope| (scope.resource_type == "*" || scope.resource_type == resource_type) && scope.interactions.contains(&interaction.as_str()))
    }
}

impl Grants for ScopeGrants {
    fn allows(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.granting_on(interaction, resource_type).next().is_some()
    }

    fn allows_all(&self, interaction: Interaction) -> bool {
        self.granting().any(|scope| scope.resource_type == "*" && scope.interactions.contains(&interaction.as_str()))
    }

    fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    fn restrictions(&self, interaction: Interaction, resource_type: &str) -> Vec<&str> {
        let scopes: Vec<&smart::Scope> = self.granting_on(interaction, resource_type).collect();
        // One unrestricted scope grants the whole type.
        if scopes.iter().any(|scope| scope.query.is_none()) {
            return Vec::new();
        }
        scopes.iter().filter_map(|scope| scope.query.as_deref()).collect()
    }

    fn restricts_any(&self) -> bool {
        self.granting().any(|scope| scope.query.is_some())
    }
}

/// The id of the Patient a `fhirUser` claim names (`Patient/123` or an absolute URL ending so).
fn patient_of(fhir_user: &str) -> Option<&str> {
    let mut segments = fhir_user.trim_end_matches('/').rsplit('/');
    let id = segments.next()?;
    (segments.next() == Some("Patient") && command_api::resource::is_valid_id(id)).then_some(id)
}

/// Allowed only if every one of the grants allows (a token with both groups and scopes).
struct Every(Vec<Arc<dyn Grants>>);

impl Grants for Every {
    fn allows(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.0.iter().all(|grants| grants.allows(interaction, resource_type))
    }

    fn allows_all(&self, interaction: Interaction) -> bool {
        self.0.iter().all(|grants| grants.allows_all(interaction))
    }

    fn patient(&self) -> Option<&str> {
        self.0.iter().find_map(|grants| grants.patient())
    }

    fn restrictions(&self, interaction: Interaction, resource_type: &str) -> Vec<&str> {
        self.0.iter().flat_map(|grants| grants.restrictions(interaction, resource_type)).collect()
    }

    fn restricts_any(&self) -> bool {
        self.0.iter().any(|grants| grants.restricts_any())
    }
}

/// The grants of a token: its groups' rules, its SMART scopes, or (with both) what both allow.
fn grants_of(claims: &serde_json::Map<String, serde_json::Value>, groups_claim: &str, roles: &Arc<RoleRules>) -> Arc<dyn Grants> {
    let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(serde_json::Value::String(claim)) => smart::parse(claim),
        Some(serde_json::Value::Array(items)) => smart::parse(&items.iter().filter_map(|item| item.as_str()).collect::<Vec<_>>().join(" ")),
        _ => Vec::new(),
    };
    let groups: Arc<dyn Grants> = Arc::new(GroupGrants { groups: groups_in(claims.get(groups_claim)), roles: roles.clone() });
    match (scopes.is_empty(), claims.contains_key(groups_claim)) {
        (true, _) => groups,
        (false, false) => Arc::new(ScopeGrants::new(scopes, claims)),
        (false, true) => Arc::new(Every(vec![groups, Arc::new(ScopeGrants::new(scopes, claims))])),
    }
}

/// The groups a claim lists: a JSON list of names, or names separated by spaces.
fn groups_in(claim: Option<&serde_json::Value>) -> Vec<String> {
    match claim {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|item| item.as_str()).map(String::from).collect(),
        Some(serde_json::Value::String(names)) => names.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    }
}

#[async_trait]
impl Authenticator for Configured {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        if let Some(key) = &self.api_key {
            let presented = headers.get("x-api-key").and_then(|value| value.to_str().ok()).unwrap_or("");
            if !access_control::api_key::accepts(std::slice::from_ref(key), presented) {
                return Err(AuthFailure::Unauthenticated("the request has no valid API key (x-api-key)".into()));
            }
        }
        let Some(verifier) = &self.verifier else { return Ok(Principal::anonymous()) };
        let token = bearer_token(headers).ok_or_else(|| AuthFailure::Unauthenticated("the request has no bearer token (Authorization: Bearer ...)".into()))?;
        match verifier.verify(token).await {
            Ok(claims) => {
                let actor = claims.get("sub").and_then(|sub| sub.as_str()).unwrap_or("unknown").to_string();
                let grants = grants_of(&claims, &self.groups_claim, &self.roles);
                // A token without the claim belongs to no tenant (with multi-tenancy: none may be used).
                let tenant = Some(claims.get(&self.tenant_claim).and_then(|tenant| tenant.as_str()).unwrap_or_default().to_string());
                Ok(Principal { actor, claims, grants, tenant })
            }
            Err(Rejection::KeysUnavailable(why)) => {
                tracing::error!(%why, "cannot verify tokens");
                Err(AuthFailure::Unavailable("tokens cannot be verified right now; retry".into()))
            }
            Err(rejection) => Err(AuthFailure::Unauthenticated(rejection.to_string())),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_authentication_unless_forced() {
        let open = AuthConfig::default();
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_exposure(&open, "127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(check_exposure(&open, "[::1]:8080".parse().unwrap()).is_ok());
        assert!(check_exposure(&open, everywhere).is_err());
        assert!(check_exposure(&AuthConfig { allow_remote_without_auth: true, ..open.clone() }, everywhere).is_ok());
        assert!(check_exposure(&AuthConfig { mode: AuthMode::Jwt, ..open.clone() }, everywhere).is_ok());
        assert!(check_exposure(&AuthConfig { api_key: Some("k".into()), ..open }, everywhere).is_ok());
    }

    #[test]
    fn jwt_mode_needs_its_settings_and_known_algorithms() {
        let jwt = AuthConfig { mode: AuthMode::Jwt, jwks_url: Some("http://127.0.0.1:1/jwks.json".into()), issuer: Some("i".into()), audience: Some("a".into()), ..AuthConfig::default() };
        assert!(authenticator(&jwt).is_ok());
        assert!(authenticator(&AuthConfig { issuer: None, ..jwt.clone() }).is_err());
        assert!(authenticator(&AuthConfig { algorithms: vec!["HS256".into()], ..jwt.clone() }).is_err());
        assert!(authenticator(&AuthConfig { algorithms: Vec::new(), ..jwt }).is_err());
    }
}
