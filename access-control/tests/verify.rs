//! Token verification against a JWKS served on a loopback port, with keys from
//! `testdata/auth` (test-only): every rejection case, key rotation, and how often the key set
//! is fetched.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use access_control::{JwtSettings, JwtVerifier, Rejection};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "fhir-api";

fn testdata(file: &str) -> Vec<u8> {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../testdata/auth").join(file);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A JWKS endpoint publishing the test keys named in `published`, counting fetches.
struct Issuer {
    url: String,
    published: Arc<Mutex<Vec<&'static str>>>,
    fetches: Arc<AtomicUsize>,
}

async fn issuer(published: &[&'static str]) -> Issuer {
    let all: Value = serde_json::from_slice(&testdata("jwks.json")).unwrap();
    let published = Arc::new(Mutex::new(published.to_vec()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (keys, count) = (published.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let kids = keys.lock().unwrap().clone();
            let keys: Vec<Value> = all["keys"].as_array().unwrap().iter().filter(|key| kids.contains(&key["kid"].as_str().unwrap())).cloned().collect();
            async move { axum::Json(json!({ "keys": keys })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer { url, published, fetches }
}

fn verifier(issuer: &Issuer, min_refresh: Duration) -> JwtVerifier {
    JwtVerifier::new(JwtSettings {
        jwks_url: issuer.url.clone(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        jwks_min_refresh: min_refresh,
    })
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now() + 300, "iat": now() })
}

fn sign(kid: &str, claims: &Value) -> String {
    let (algorithm, key) = match kid {
        "ec-1" => (Algorithm::ES256, EncodingKey::from_ec_pem(&testdata("ec-1.pem")).unwrap()),
        rsa => (Algorithm::RS256, EncodingKey::from_rsa_pem(&testdata(&format!("{rsa}.pem"))).unwrap()),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

#[tokio::test]
async fn valid_tokens_of_both_algorithms_pass_and_give_their_claims() {
    let issuer = issuer(&["rsa-1", "ec-1"]).await;
    let verifier = verifier(&issuer, Duration::from_secs(3600));
    let verified = verifier.verify(&sign("rsa-1", &claims())).await.unwrap();
    assert_eq!(verified["sub"], "user-1");
    assert!(verifier.verify(&sign("ec-1", &claims())).await.is_ok());
    let listed = with(json!({ "aud": ["other", AUDIENCE] }));
    assert!(verifier.verify(&sign("rsa-1", &listed)).await.is_ok(), "the audience among several");
    let access_token = with(json!({ "aud": null, "client_id": AUDIENCE }));
    assert!(verifier.verify(&sign("rsa-1", &access_token)).await.is_ok(), "Cognito access tokens name the client");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "the keys are fetched once and kept");
}

#[tokio::test]
async fn every_kind_of_bad_token_is_rejected_for_what_it_is() {
    let issuer = issuer(&["rsa-1", "ec-1"]).await;
    let verifier = verifier(&issuer, Duration::from_secs(3600));
    let check = |token: String, expected: Rejection| {
        let verifier = &verifier;
        async move { assert_eq!(verifier.verify(&token).await.unwrap_err(), expected) }
    };
    check(sign("rsa-1", &with(json!({ "exp": now() - 120 }))), Rejection::Expired).await;
    check(sign("rsa-1", &with(json!({ "nbf": now() + 600 }))), Rejection::NotYetValid).await;
    check(sign("rsa-1", &with(json!({ "exp": null }))), Rejection::NoExpiry).await;
    check(sign("rsa-1", &with(json!({ "iss": "https://elsewhere.example" }))), Rejection::Issuer).await;
    check(sign("rsa-1", &with(json!({ "iss": null }))), Rejection::Issuer).await;
    check(sign("rsa-1", &with(json!({ "aud": "another-api" }))), Rejection::Audience).await;
    check(sign("rsa-1", &with(json!({ "aud": null }))), Rejection::Audience).await;
    check(sign("rsa-2", &claims()), Rejection::UnknownKey).await;
    check("not a token".into(), Rejection::Malformed).await;

    // Signed by one key, named as another.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_rsa_pem(&testdata("rsa-2.pem")).unwrap()).unwrap();
    check(forged, Rejection::Signature).await;
    // A payload changed after signing.
    let token = sign("rsa-1", &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(with(json!({ "sub": "admin" })).to_string().as_bytes()), parts[2]);
    check(tampered, Rejection::Signature).await;
    // `alg: none`, unsigned.
    let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","kid":"rsa-1"}"#), b64(claims().to_string().as_bytes()));
    check(unsigned, Rejection::Header).await;
    // HMAC keyed with the RSA public key, which anyone has.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&testdata("rsa-1.pub.pem"))).unwrap();
    check(confused, Rejection::Algorithm).await;
    // An EC-signed token naming the RSA key.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".into());
    let mismatched = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_ec_pem(&testdata("ec-1.pem")).unwrap()).unwrap();
    check(mismatched, Rejection::Algorithm).await;
    // No key id.
    let anonymous = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &EncodingKey::from_rsa_pem(&testdata("rsa-1.pem")).unwrap()).unwrap();
    check(anonymous, Rejection::NoKeyId).await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_but_unknown_keys_do_not_hammer_the_issuer() {
    let issuer = issuer(&["rsa-1"]).await;
    let patient = verifier(&issuer, Duration::from_secs(3600));
    assert!(patient.verify(&sign("rsa-1", &claims())).await.is_ok());
    for _ in 0..5 {
        assert_eq!(patient.verify(&sign("rsa-2", &claims())).await.unwrap_err(), Rejection::UnknownKey);
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "unknown key ids within the interval fetch nothing");

    issuer.published.lock().unwrap().push("rsa-2");
    let eager = verifier(&issuer, Duration::ZERO);
    assert!(eager.verify(&sign("rsa-1", &claims())).await.is_ok());
    let before = issuer.fetches.load(Ordering::SeqCst);
    assert!(eager.verify(&sign("rsa-2", &claims())).await.is_ok(), "a key published since the last fetch is found");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), before, "already in the set fetched for the first token");
    issuer.published.lock().unwrap().retain(|kid| *kid != "rsa-2");
    issuer.published.lock().unwrap().push("ec-1");
    assert!(eager.verify(&sign("ec-1", &claims())).await.is_ok(), "rotation: an unknown kid fetches the set again");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_the_issuers_fault_not_the_tokens() {
    let verifier = JwtVerifier::new(JwtSettings {
        jwks_url: "http://127.0.0.1:9/jwks.json".into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: vec![Algorithm::RS256],
        jwks_min_refresh: Duration::ZERO,
    });
    assert!(matches!(verifier.verify(&sign("rsa-1", &claims())).await, Err(Rejection::KeysUnavailable(_))));
}
