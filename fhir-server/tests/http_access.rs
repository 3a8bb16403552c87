//! Role groups: every interaction × the default groups (`practitioner`, `non-practitioner`,
//! `auditor`) and a caller in no group, allowed (2xx) or denied (403 with an OperationOutcome);
//! and rules from a roles file. Tokens are signed with the test keys of `testdata/auth`.

mod common;

use std::path::PathBuf;

use common::tokens::trusted_issuer;
use common::{assert_outcome, patient, TestServer};
use fhir_server::config::{AuthConfig, AuthMode};
use serde_json::{json, Value};

async fn server(roles_file: Option<PathBuf>) -> TestServer {
    let auth = AuthConfig { roles_file, ..trusted_issuer().await };
    TestServer::start_with(|config| {
        config.auth = auth;
        config.export.max_jobs_per_tenant = 100;
    })
    .await
}

fn token(groups: &[&str]) -> String {
    common::tokens::token("someone", groups, json!({}))
}

async fn call(server: &TestServer, token: &str, method: &str, path: &str, body: Option<(&str, Value)>, headers: &[(&str, &str)]) -> (u16, Value) {
    server.call_as(token, method, path, body, headers).await
}

const FHIR: &str = "application/fhir+json";

/// One interaction of the matrix: its name, method, path, body and headers, and whether it is
/// allowed for the practitioner, the non-practitioner, the auditor and a caller in no group.
type Row<'a> = (&'a str, &'a str, String, Option<(&'a str, Value)>, Vec<(&'a str, &'a str)>, [bool; 4]);

#[tokio::test]
async fn every_interaction_for_every_default_group() {
    let server = server(None).await;
    let admin = token(&["practitioner"]);
    let create = |resource: Value| {
        let (server, admin) = (&server, &admin);
        async move {
            let resource_type = resource["resourceType"].as_str().unwrap().to_string();
            let (status, body) = call(server, admin, "POST", &resource_type, Some((FHIR, resource)), &[]).await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let p = create(patient("Matrix")).await;
    let o = create(json!({ "resourceType": "Observation", "status": "final", "code": { "text": "pulse" }, "subject": { "reference": format!("Patient/{p}") } })).await;
    let a = create(json!({ "resourceType": "Account", "status": "active" })).await;

    let roles: [(&str, Vec<&str>); 4] = [
        ("practitioner", vec!["practitioner"]),
        ("non-practitioner", vec!["non-practitioner"]),
        ("auditor", vec!["auditor"]),
        ("no group", vec![]),
    ];
    for (role, groups) in roles {
        let caller = token(&groups);
        // A resource of the caller's own to change or delete, made by the practitioner.
        let mine = create(patient("Target")).await;
        let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{ "resource": patient("Tx"), "request": { "method": "POST", "url": "Patient" } }] });
        let patch = json!([{ "op": "replace", "path": "/active", "value": false }]);
        let rows: Vec<Row> = vec![
            ("read", "GET", format!("Patient/{p}"), None, vec![], [true, false, true, false]),
            ("vread", "GET", format!("Patient/{p}/_history/1"), None, vec![], [true, false, true, false]),
            ("search", "GET", "Patient?family=Matrix".into(), None, vec![], [true, false, true, false]),
            ("instance history", "GET", format!("Patient/{p}/_history"), None, vec![], [true, false, true, false]),
            ("type history", "GET", "Patient/_history".into(), None, vec![], [true, false, true, false]),
            ("system search of a type", "GET", "?_type=Patient".into(), None, vec![], [true, false, true, false]),
            ("system search", "GET", "?_id=x".into(), None, vec![], [true, false, false, false]),
            ("system history", "GET", "_history".into(), None, vec![], [true, false, false, false]),
            ("read other type", "GET", format!("Observation/{o}"), None, vec![], [true, false, false, false]),
            ("search other type", "GET", format!("Observation?subject=Patient/{p}"), None, vec![], [true, false, false, false]),
            ("read financial", "GET", format!("Account/{a}"), None, vec![], [true, true, false, false]),
            ("search financial", "GET", "Account?status=active".into(), None, vec![], [true, true, false, false]),
            ("_revinclude", "GET", "Patient?_revinclude=Observation:subject".into(), None, vec![], [true, false, false, false]),
            ("_include", "GET", "Observation?_include=Observation:subject".into(), None, vec![], [true, false, false, false]),
            ("_has", "GET", "Patient?_has:Observation:subject:code=x".into(), None, vec![], [true, false, false, false]),
            ("chain", "GET", "Account?subject:Patient.family=x".into(), None, vec![], [true, false, false, false]),
            ("compartment", "GET", format!("Patient/{p}/Observation"), None, vec![], [true, false, false, false]),
            ("$everything", "GET", format!("Patient/{p}/$everything"), None, vec![], [true, false, false, false]),
            ("$export", "GET", "$export?_type=Patient".into(), None, vec![("prefer", "respond-async")], [true, false, true, false]),
            ("$export of every type", "GET", "$export".into(), None, vec![("prefer", "respond-async")], [true, true, true, false]),
            ("Patient/$export", "GET", "Patient/$export?_type=Patient,Observation".into(), None, vec![("prefer", "respond-async")], [true, false, false, false]),
            ("Subscription create", "POST", "Subscription".into(), Some((FHIR, json!({ "resourceType": "Subscription", "status": "requested", "reason": "matrix", "criteria": "Observation?code=never-1", "channel": { "type": "rest-hook", "endpoint": "https://example.org/hook" } }))), vec![], [true, false, false, false]),
            ("$validate", "POST", "Patient/$validate".into(), Some((FHIR, patient("V"))), vec![], [true, false, false, false]),
            ("create", "POST", "Patient".into(), Some((FHIR, patient("New"))), vec![], [true, false, false, false]),
            ("conditional create", "POST", "Patient".into(), Some((FHIR, patient("Cond"))), vec![("if-none-exist", "family=Cond")], [true, false, false, false]),
            ("update", "PUT", format!("Patient/{mine}"), Some((FHIR, json!({ "resourceType": "Patient", "id": mine, "active": true }))), vec![], [true, false, false, false]),
            ("patch", "PATCH", format!("Patient/{mine}"), Some(("application/json-patch+json", patch)), vec![], [true, false, false, false]),
            ("transaction", "POST", "".into(), Some((FHIR, transaction)), vec![], [true, false, false, false]),
            ("delete", "DELETE", format!("Patient/{mine}"), None, vec![], [true, false, false, false]),
        ];
        let column = ["practitioner", "non-practitioner", "auditor", "no group"].iter().position(|name| *name == role).unwrap();
        for (interaction, method, path, body, headers, allowed) in rows {
            let (status, answer) = call(&server, &caller, method, &path, body, &headers).await;
            if allowed[column] {
                assert!((200..300).contains(&status), "{role} may {interaction}: {status} {answer}");
            } else {
                assert_eq!(status, 403, "{role} may not {interaction}: {answer}");
                assert_outcome(&answer, "forbidden");
            }
        }
        // A batch is allowed to all; each entry is checked as if sent alone.
        let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
            { "request": { "method": "GET", "url": format!("Patient/{p}") } },
            { "request": { "method": "GET", "url": format!("Account/{a}") } },
        ]});
        let (status, answer) = call(&server, &caller, "POST", "", Some((FHIR, batch)), &[]).await;
        assert_eq!(status, 200, "{answer}");
        let entry_status = |index: usize| answer["entry"][index]["response"]["status"].as_str().unwrap().to_string();
        let expected = |allowed: bool| if allowed { "200 OK" } else { "403 Forbidden" };
        assert_eq!(entry_status(0), expected([true, false, true, false][column]), "{role}: batch read of Patient");
        assert_eq!(entry_status(1), expected([true, true, false, false][column]), "{role}: batch read of Account");
    }
    server.stop().await;
}

#[tokio::test]
async fn rules_from_a_roles_file_and_a_transaction_names_the_denied_entry() {
    let dir = tempfile::tempdir().unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, "[[device]]\ninteractions = [\"create\", \"read\"]\ntypes = [\"Observation\", \"Device\"]\n").unwrap();
    let server = server(Some(roles)).await;
    let device = token(&["device"]);
    let observation = json!({ "resourceType": "Observation", "status": "final", "code": { "text": "pulse" } });
    let (status, created) = call(&server, &device, "POST", "Observation", Some((FHIR, observation.clone())), &[]).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = call(&server, &device, "POST", "Patient", Some((FHIR, patient("No"))), &[]).await;
    assert_eq!(status, 403);
    let (status, _) = call(&server, &token(&["practitioner"]), "GET", "Patient", None, &[]).await;
    assert_eq!(status, 403, "a roles file replaces the default groups");

    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": observation, "request": { "method": "POST", "url": "Observation" } },
        { "resource": patient("No"), "request": { "method": "POST", "url": "Patient" } },
    ]});
    let (status, answer) = call(&server, &device, "POST", "", Some((FHIR, transaction)), &[]).await;
    assert_eq!(status, 403, "{answer}");
    let diagnostics = answer["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("entry 1") && diagnostics.contains("create on Patient"), "{diagnostics}");
    let (_, found) = call(&server, &device, "GET", &format!("Observation/{}", created["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(found["resourceType"], "Observation");
    server.stop().await;

    std::fs::write(dir.path().join("bad.toml"), "[[device]]\ninteractions = [\"destroy\"]\ntypes = [\"*\"]\n").unwrap();
    let auth = AuthConfig { mode: AuthMode::Jwt, jwks_url: Some("http://127.0.0.1:9/jwks.json".into()), issuer: Some("i".into()), audience: Some("a".into()), roles_file: Some(dir.path().join("bad.toml")), ..AuthConfig::default() };
    let refused = fhir_server::auth::authenticator(&auth).err().expect("an unknown interaction is refused");
    assert!(refused.to_string().contains("destroy"), "{refused}");
}

/// Scopes, groups, method, path, body, and the status expected.
type ScopeCase<'a> = (&'a str, Option<&'a [&'a str]>, &'a str, String, Option<Value>, u16);

/// A token with these SMART `scope`s and, if given, groups.
fn scoped(scope: &str, groups: Option<&[&str]>) -> String {
    let mut claims = json!({ "iss": common::tokens::ISSUER, "aud": common::tokens::AUDIENCE, "sub": "app", "exp": common::tokens::now() + 300, "scope": scope });
    if let Some(groups) = groups {
        claims["cognito:groups"] = json!(groups);
    }
    common::tokens::sign(&claims, "rsa-1")
}

#[tokio::test]
async fn smart_user_and_system_scopes_v1_and_v2() {
    let server = server(None).await;
    let admin = token(&["practitioner"]);
    let (_, created) = call(&server, &admin, "POST", "Patient", Some((FHIR, patient("Scoped"))), &[]).await;
    let p = created["id"].as_str().unwrap().to_string();
    let observation = json!({ "resourceType": "Observation", "status": "final", "code": { "text": "pulse" } });
    let (_, created) = call(&server, &admin, "POST", "Observation", Some((FHIR, observation)), &[]).await;
    let o = created["id"].as_str().unwrap().to_string();

    let cases: Vec<ScopeCase> = vec![
        ("system/Patient.rs", None, "GET", format!("Patient/{p}"), None, 200),
        ("system/Patient.rs", None, "GET", "Patient?family=Scoped".into(), None, 200),
        ("system/Patient.rs", None, "POST", "Patient".into(), Some(patient("No")), 403),
        ("system/Patient.rs", None, "GET", format!("Observation/{o}"), None, 403),
        ("system/Patient.r", None, "GET", "Patient?family=Scoped".into(), None, 403),
        ("user/Observation.read user/Patient.write", None, "GET", format!("Observation/{o}"), None, 200),
        ("user/Observation.read user/Patient.write", None, "GET", "Observation?code:text=pulse".into(), None, 200),
        ("user/Observation.read user/Patient.write", None, "POST", "Patient".into(), Some(patient("Written")), 201),
        ("user/Observation.read user/Patient.write", None, "GET", format!("Patient/{p}"), None, 403),
        ("system/*.cruds", None, "GET", "_history".into(), None, 200),
        ("system/*.cruds", None, "DELETE", format!("Observation/{o}"), None, 200),
        ("openid profile", None, "GET", format!("Patient/{p}"), None, 403),
        // Patient scopes without a patient grant nothing; a query restriction bounds the read
        // (http_smart.rs tests both further).
        ("patient/*.read", None, "GET", format!("Patient/{p}"), None, 403),
        ("user/Patient.rs?identifier=x", None, "GET", format!("Patient/{p}"), None, 403),
        ("user/Patient.rs?family=Scoped", None, "GET", format!("Patient/{p}"), None, 200),
        // Groups and scopes together: what both allow.
        ("user/Patient.rs", Some(&["practitioner"]), "GET", format!("Patient/{p}"), None, 200),
        ("user/Patient.rs", Some(&["practitioner"]), "POST", "Patient".into(), Some(patient("No")), 403),
        ("user/*.cruds", Some(&["auditor"]), "POST", "Patient".into(), Some(patient("No")), 403),
    ];
    for (scope, groups, method, path, body, expected) in cases {
        let (status, answer) = call(&server, &scoped(scope, groups), method, &path, body.map(|body| (FHIR, body)), &[]).await;
        assert_eq!(status, expected, "{scope} {groups:?}: {method} {path}: {answer}");
    }
    server.stop().await;
}
