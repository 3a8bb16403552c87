//! The token signing keys, from a JWKS URL (for Cognito
//! `https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json`).
//!
//! Keys are fetched on first use and kept. A token naming a key id not in the cache makes the
//! cache fetch the set again (the issuer rotated its keys), but not more often than the
//! configured minimum interval, so that tokens with made-up key ids cannot make the server hammer
//! the issuer. A set older than [`MAX_AGE`] is fetched again on next use; if that fails the old
//! keys stay in use. Only RSA and P-256 keys are kept: a symmetric key in a JWKS is ignored, so a
//! token can never be checked with an HMAC over a public key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

/// The default least interval between two fetches caused by unknown key ids.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// How long a fetched set is used before it is fetched again.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

pub struct KeyCache {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
}

/// The key set could not be had.
#[derive(Debug, thiserror::Error)]
#[error("the token signing keys cannot be fetched: {0}")]
pub struct Unavailable(String);

impl KeyCache {
    /// A cache of the set at `url`, fetched again for an unknown key id at most every
    /// `min_refresh`.
    pub fn new(url: impl Into<String>, min_refresh: Duration) -> Self {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().unwrap_or_default();
        KeyCache { url: url.into(), client, min_refresh, state: Mutex::new(State::default()) }
    }

    /// The key with id `kid`; `Ok(None)` if the issuer does not publish it.
    pub async fn key(&self, kid: &str) -> Result<Option<Key>, Unavailable> {
        let mut state = self.state.lock().await;
        let age = state.fetched_at.map(|at| at.elapsed());
        let stale = age.is_none_or(|age| age >= MAX_AGE);
        let unknown = !state.keys.contains_key(kid) && age.is_none_or(|age| age >= self.min_refresh);
        if stale || unknown {
            match self.fetch().await {
                Ok(keys) => {
                    *state = State { keys, fetched_at: Some(Instant::now()) };
                }
                // Old keys still verify old tokens; without any, nothing can be verified.
                Err(error) if state.fetched_at.is_some() => {
                    tracing::warn!(%error, "cannot refresh the token signing keys; using the ones fetched before");
                    state.fetched_at = Some(Instant::now());
                }
                Err(error) => return Err(error),
            }
        }
        Ok(state.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, Unavailable> {
        let response = self.client.get(&self.url).send().await.map_err(|error| Unavailable(error.to_string()))?;
        if !response.status().is_success() {
            return Err(Unavailable(format!("{} answered {}", self.url, response.status())));
        }
        let set: JwkSet = response.json().await.map_err(|error| Unavailable(format!("not a JWKS: {error}")))?;
        let keys: HashMap<String, Key> = set.keys.iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, usable(jwk)?))).collect();
        tracing::info!(keys = keys.len(), "token signing keys fetched");
        Ok(keys)
    }
}

/// The key of an RSA or P-256 JWK, with the algorithm it is for.
fn usable(jwk: &Jwk) -> Option<Key> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    Some(Key { algorithm, decoding: DecodingKey::from_jwk(jwk).ok()? })
}
