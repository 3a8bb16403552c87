//! Tokens for the authentication tests: a JWKS endpoint on a loopback port publishing the
//! test-only keys of `testdata/auth`, the `jwt` settings that trust it, and signed tokens.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use fhir_server::config::{AuthConfig, AuthMode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "fhir-api";

pub fn testdata(file: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../testdata/auth").join(file)).expect("test key")
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Serves the keys `rsa-1` and `ec-1` of `testdata/auth/jwks.json` (not `rsa-2`); returns the
/// settings of `jwt` mode that trust them.
pub async fn trusted_issuer() -> AuthConfig {
    let mut keys: Value = serde_json::from_slice(&testdata("jwks.json")).unwrap();
    keys["keys"].as_array_mut().unwrap().retain(|key| key["kid"] != "rsa-2");
    let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { axum::Json(keys) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    AuthConfig { mode: AuthMode::Jwt, jwks_url: Some(jwks_url), issuer: Some(ISSUER.into()), audience: Some(AUDIENCE.into()), ..AuthConfig::default() }
}

/// `claims` signed with the test key `kid` (`rsa-1`, `rsa-2` or `ec-1`).
pub fn sign(claims: &Value, kid: &str) -> String {
    let (algorithm, key) = match kid {
        "ec-1" => (Algorithm::ES256, EncodingKey::from_ec_pem(&testdata("ec-1.pem")).unwrap()),
        rsa => (Algorithm::RS256, EncodingKey::from_rsa_pem(&testdata(&format!("{rsa}.pem"))).unwrap()),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A valid token of `sub` in `groups`, with `extra` claims added.
pub fn token(sub: &str, groups: &[&str], extra: Value) -> String {
    let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 300, "cognito:groups": groups });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign(&claims, "rsa-1")
}
