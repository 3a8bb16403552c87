//! One bearer token checked. It must be a JWS whose header names an allowed algorithm (RS256 or
//! ES256; never `none`, never an HMAC) and a key id the issuer publishes for that algorithm; its
//! signature must verify; `exp` must be present and not past, `nbf` (if present) not future
//! (both with a small leeway for clock skew); `iss` must be the configured issuer; and the
//! configured audience must be in `aud` or, for tokens without `aud` (Cognito access tokens),
//! be the `client_id`. Every failure is a [`Rejection`] whose message says which check failed,
//! never the token's contents.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::jwks::KeyCache;

/// Seconds of clock skew tolerated for `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    /// Of RS256 and ES256; others are refused.
    pub algorithms: Vec<Algorithm>,
    /// Least interval between JWKS fetches caused by unknown key ids.
    pub jwks_min_refresh: Duration,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted (allowed: RS256, ES256)")]
    Algorithm,
    #[error("the token's header is not valid, or names an algorithm other than RS256 and ES256")]
    Header,
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is meant for another audience")]
    Audience,
    /// Not the token's fault: the issuer's keys cannot be had.
    #[error("{0}")]
    KeysUnavailable(String),
}

pub struct JwtVerifier {
    settings: JwtSettings,
    keys: KeyCache,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        let keys = KeyCache::new(settings.jwks_url.clone(), settings.jwks_min_refresh);
        JwtVerifier { settings, keys }
    }

    /// The claims of a token that passes every check.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            // Among them an algorithm this library does not know, such as `none`.
            ErrorKind::Json(_) | ErrorKind::InvalidAlgorithmName => Rejection::Header,
            _ => Rejection::Malformed,
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) || !self.settings.algorithms.contains(&header.alg) {
            return Err(Rejection::Algorithm);
        }
        let kid = header.kid.ok_or(Rejection::NoKeyId)?;
        let key = self.keys.key(&kid).await.map_err(|error| Rejection::KeysUnavailable(error.to_string()))?.ok_or(Rejection::UnknownKey)?;
        if key.algorithm != header.alg {
            return Err(Rejection::Algorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        // Checked below: Cognito's access tokens carry the audience as `client_id`.
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation).map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature => Rejection::Signature,
            ErrorKind::ExpiredSignature => Rejection::Expired,
            ErrorKind::ImmatureSignature => Rejection::NotYetValid,
            ErrorKind::InvalidIssuer => Rejection::Issuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => Rejection::NoExpiry,
            ErrorKind::MissingRequiredClaim(_) => Rejection::Issuer,
            ErrorKind::InvalidAlgorithm => Rejection::Algorithm,
            _ => Rejection::Malformed,
        })?;
        if !meant_for(&data.claims, &self.settings.audience) {
            return Err(Rejection::Audience);
        }
        Ok(data.claims)
    }
}

/// Whether `audience` is the token's `aud` (a string or one of a list) or, without `aud`, its
/// `client_id`.
fn meant_for(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        Some(_) => false,
        None => claims.get("client_id").and_then(Value::as_str) == Some(audience),
    }
}
