//! SMART on FHIR: tokens in the context of one patient see and write only that patient's
//! compartment (read, vread, search with `_include`/`_revinclude`, compartment search,
//! `$everything`, history, batch, transaction, conditional operations); chains and `_has` are
//! refused to them; a `fhirUser` that is a Patient bounds user scopes the same way; v2
//! query-restricted scopes bound reads, searches and writes to their query; and the discovery
//! document `/.well-known/smart-configuration`. Tokens are signed with the test keys.

mod common;

use common::tokens::{now, sign, trusted_issuer, AUDIENCE, ISSUER};
use common::{assert_outcome, patient, TestServer};
use serde_json::{json, Value};

const FHIR: &str = "application/fhir+json";

async fn server(smart: bool) -> TestServer {
    let mut auth = trusted_issuer().await;
    if smart {
        auth.smart = Some(serde_json::from_value(json!({
            "authorization_endpoint": "https://auth.example/authorize",
            "token_endpoint": "https://auth.example/token",
            "revocation_endpoint": "https://auth.example/revoke"
        })).unwrap());
    }
    TestServer::start_with(|config| config.auth = auth).await
}

/// A token with `scope` and these extra claims (`patient`, `fhirUser`).
fn token(scope: &str, extra: Value) -> String {
    let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "app-user", "exp": now() + 300, "scope": scope });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign(&claims, "rsa-1")
}

fn admin() -> String {
    common::tokens::token("admin", &["practitioner"], json!({}))
}

/// The records of two patients: `a` with a laboratory and a vital-signs Observation (the first
/// performed by a Practitioner), `b` with a laboratory one.
struct World {
    a: String,
    b: String,
    doctor: String,
    a_lab: String,
    a_vitals: String,
    b_lab: String,
}

fn observation(patient: &str, category: &str, performer: Option<&str>) -> Value {
    let mut observation = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category }] }],
        "code": { "text": format!("{category} test") },
        "subject": { "reference": format!("Patient/{patient}") }
    });
    if let Some(performer) = performer {
        observation["performer"] = json!([{ "reference": format!("Practitioner/{performer}") }]);
    }
    observation
}

async fn create(server: &TestServer, resource: Value) -> String {
    let resource_type = resource["resourceType"].as_str().unwrap().to_string();
    let (status, body) = server.call_as(&admin(), "POST", &resource_type, Some((FHIR, resource)), &[]).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn world(server: &TestServer) -> World {
    let a = create(server, patient("Alpha")).await;
    let b = create(server, patient("Beta")).await;
    let doctor = create(server, json!({ "resourceType": "Practitioner", "name": [{ "family": "Doctor" }] })).await;
    let a_lab = create(server, observation(&a, "laboratory", Some(&doctor))).await;
    let a_vitals = create(server, observation(&a, "vital-signs", None)).await;
    let b_lab = create(server, observation(&b, "laboratory", None)).await;
    World { a, b, doctor, a_lab, a_vitals, b_lab }
}

/// `Type/id` of the entries of a Bundle with `mode` (`match`, `include`; any when `None`).
fn names(bundle: &Value, mode: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| mode.is_none_or(|mode| entry["search"]["mode"] == mode))
        .filter_map(|entry| Some(format!("{}/{}", entry["resource"]["resourceType"].as_str()?, entry["resource"]["id"].as_str()?)))
        .collect();
    names.sort();
    names
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// GETs `path` expecting 200 (a search sees every earlier write, in AWS mode too); the body.
async fn get_ok(server: &TestServer, token: &str, path: &str) -> Value {
    let (status, body) = server.call_as(token, "GET", path, None, &[("prefer", "read-your-writes")]).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn assert_forbidden(server: &TestServer, token: &str, method: &str, path: &str, body: Option<Value>) {
    let (status, answer) = server.call_as(token, method, path, body.map(|body| (FHIR, body)), &[]).await;
    assert_eq!(status, 403, "{method} {path}: {answer}");
    assert_outcome(&answer, "forbidden");
}

#[tokio::test]
async fn a_patient_context_token_reads_and_searches_only_its_compartment() {
    let server = server(false).await;
    let w = world(&server).await;
    let reader = token("openid fhirUser launch/patient patient/*.rs", json!({ "patient": w.a }));
    let (pa, pb) = (format!("Patient/{}", w.a), format!("Patient/{}", w.b));
    let (a_lab, a_vitals, b_lab) = (format!("Observation/{}", w.a_lab), format!("Observation/{}", w.a_vitals), format!("Observation/{}", w.b_lab));

    // Read and vread.
    get_ok(&server, &reader, &pa).await;
    get_ok(&server, &reader, &a_lab).await;
    get_ok(&server, &reader, &format!("{a_lab}/_history/1")).await;
    for path in [pb.clone(), b_lab.clone(), format!("{b_lab}/_history/1"), format!("Practitioner/{}", w.doctor)] {
        assert_forbidden(&server, &reader, "GET", &path, None).await;
    }

    // Searches are bounded to the compartment without naming it.
    let bundle = get_ok(&server, &reader, "Observation?_total=accurate").await;
    assert_eq!(names(&bundle, None), sorted(vec![a_lab.clone(), a_vitals.clone()]));
    assert_eq!(bundle["total"], 2, "the total counts only the compartment");
    assert_eq!(names(&get_ok(&server, &reader, "Patient").await, None), vec![pa.clone()]);
    assert_eq!(names(&get_ok(&server, &reader, "Observation?category=laboratory").await, None), vec![a_lab.clone()]);
    assert_eq!(names(&get_ok(&server, &reader, "?_type=Observation,Patient").await, None), sorted(vec![a_lab.clone(), a_vitals.clone(), pa.clone()]));
    assert_forbidden(&server, &reader, "GET", "Practitioner", None).await;
    assert_forbidden(&server, &reader, "GET", "Observation?subject.family=Beta", None).await;
    assert_forbidden(&server, &reader, "GET", "Patient?_has:Observation:subject:category=laboratory", None).await;

    // Included resources outside the compartment are left out; inside, they come.
    let included = get_ok(&server, &reader, "Observation?_include=Observation:subject&_include=Observation:performer").await;
    assert_eq!(names(&included, Some("include")), vec![pa.clone()], "the Practitioner is not in the compartment: {included}");
    let revincluded = get_ok(&server, &reader, "Patient?_revinclude=Observation:subject").await;
    assert_eq!(names(&revincluded, Some("include")), sorted(vec![a_lab.clone(), a_vitals.clone()]));

    // Compartment search and $everything of its own patient only.
    assert_eq!(names(&get_ok(&server, &reader, &format!("{pa}/Observation")).await, None), sorted(vec![a_lab.clone(), a_vitals.clone()]));
    let everything = get_ok(&server, &reader, &format!("{pa}/$everything")).await;
    assert_eq!(names(&everything, None), sorted(vec![a_lab.clone(), a_vitals.clone(), pa.clone()]), "no Practitioner through _include=*");
    assert_forbidden(&server, &reader, "GET", &format!("{pb}/Observation"), None).await;
    assert_forbidden(&server, &reader, "GET", &format!("{pb}/$everything"), None).await;

    // History lists only the compartment's versions.
    assert_eq!(names(&get_ok(&server, &reader, "Observation/_history").await, None), sorted(vec![a_lab.clone(), a_vitals.clone()]));
    assert!(names(&get_ok(&server, &reader, &format!("{b_lab}/_history")).await, None).is_empty());
    let system = get_ok(&server, &reader, "_history").await;
    assert_eq!(names(&system, None), sorted(vec![a_lab.clone(), a_vitals.clone(), pa.clone()]));

    // A batch checks each read.
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": a_lab } },
        { "request": { "method": "GET", "url": b_lab } },
    ]});
    let (status, answer) = server.call_as(&reader, "POST", "", Some((FHIR, batch)), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(answer["entry"][1]["response"]["status"], "403 Forbidden");

    // Patient scopes without a patient to bind them to grant nothing; the audit trail is not
    // for patient tokens.
    assert_forbidden(&server, &token("patient/*.rs", json!({})), "GET", &a_lab, None).await;
    assert_forbidden(&server, &reader, "GET", "$audit", None).await;
    server.stop().await;
}

#[tokio::test]
async fn a_patient_context_token_writes_only_into_its_compartment() {
    let server = server(false).await;
    let w = world(&server).await;
    let writer = token("launch/patient patient/*.cruds", json!({ "patient": w.a }));
    let (b_lab, a_vitals) = (format!("Observation/{}", w.b_lab), format!("Observation/{}", w.a_vitals));

    let (status, created) = server.call_as(&writer, "POST", "Observation", Some((FHIR, observation(&w.a, "survey", None))), &[]).await;
    assert_eq!(status, 201, "{created}");
    assert_forbidden(&server, &writer, "POST", "Observation", Some(observation(&w.b, "survey", None))).await;
    assert_forbidden(&server, &writer, "POST", "Patient", Some(patient("Stranger"))).await;

    // Moving its own record to another patient, or touching another's, is refused.
    let mut moved = observation(&w.b, "vital-signs", None);
    moved["id"] = json!(w.a_vitals);
    assert_forbidden(&server, &writer, "PUT", &a_vitals, Some(moved)).await;
    let mut taken = observation(&w.a, "laboratory", None);
    taken["id"] = json!(w.b_lab);
    assert_forbidden(&server, &writer, "PUT", &b_lab, Some(taken)).await;
    let patch = json!([{ "op": "replace", "path": "/status", "value": "amended" }]);
    let (status, answer) = server.call_as(&writer, "PATCH", &b_lab, Some(("application/json-patch+json", patch)), &[]).await;
    assert_eq!(status, 403, "{answer}");
    assert_forbidden(&server, &writer, "DELETE", &b_lab, None).await;

    // A conditional delete sees only the compartment: another patient's match is not deleted.
    let (status, answer) = server.call_as(&writer, "DELETE", &format!("Observation?_id={}", w.b_lab), None, &[]).await;
    assert!((200..300).contains(&status), "{answer}");
    get_ok(&server, &admin(), &b_lab).await;

    // A transaction with one write outside the compartment writes nothing.
    let before = get_ok(&server, &admin(), "Observation?_summary=count").await["total"].clone();
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": observation(&w.a, "survey", None), "request": { "method": "POST", "url": "Observation" } },
        { "resource": observation(&w.b, "survey", None), "request": { "method": "POST", "url": "Observation" } },
    ]});
    let (status, answer) = server.call_as(&writer, "POST", "", Some((FHIR, transaction)), &[]).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.to_string().contains("entry 1") || answer.to_string().contains("entry[1]"), "names the entry: {answer}");
    assert_eq!(get_ok(&server, &admin(), "Observation?_summary=count").await["total"], before);

    // Its own records it may delete.
    let (status, answer) = server.call_as(&writer, "DELETE", &a_vitals, None, &[]).await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_user_whose_fhir_user_is_a_patient_is_bounded_to_that_patient() {
    let server = server(false).await;
    let w = world(&server).await;
    let user = token("openid fhirUser user/*.rs", json!({ "fhirUser": format!("https://fhir.example/fhir/Patient/{}", w.a) }));
    get_ok(&server, &user, &format!("Observation/{}", w.a_lab)).await;
    assert_forbidden(&server, &user, "GET", &format!("Observation/{}", w.b_lab), None).await;
    assert_eq!(names(&get_ok(&server, &user, "Observation?category=laboratory").await, None), vec![format!("Observation/{}", w.a_lab)]);
    // A practitioner user is not bounded by a compartment.
    let doctor = token("openid fhirUser user/*.rs", json!({ "fhirUser": format!("Practitioner/{}", w.doctor) }));
    get_ok(&server, &doctor, &format!("Observation/{}", w.b_lab)).await;
    server.stop().await;
}

#[tokio::test]
async fn query_restricted_scopes_bound_reads_searches_and_writes() {
    let server = server(false).await;
    let w = world(&server).await;
    let (a_lab, a_vitals, b_lab) = (format!("Observation/{}", w.a_lab), format!("Observation/{}", w.a_vitals), format!("Observation/{}", w.b_lab));

    // With a patient: the compartment and the query.
    let labs = token("patient/Observation.rs?category=laboratory patient/Patient.rs", json!({ "patient": w.a }));
    assert_eq!(names(&get_ok(&server, &labs, "Observation").await, None), vec![a_lab.clone()]);
    get_ok(&server, &labs, &a_lab).await;
    assert_forbidden(&server, &labs, "GET", &a_vitals, None).await;
    assert_forbidden(&server, &labs, "GET", &b_lab, None).await;
    assert_eq!(names(&get_ok(&server, &labs, "Patient?_revinclude=Observation:subject").await, Some("include")), vec![a_lab.clone()]);
    assert_forbidden(&server, &labs, "GET", "?_type=Observation,Patient", None).await;

    // Two queries on one parameter join; the user context spans patients.
    let both = token("user/Observation.rs?category=laboratory user/Observation.rs?category=vital-signs", json!({}));
    assert_eq!(names(&get_ok(&server, &both, "Observation").await, None), sorted(vec![a_lab.clone(), a_vitals.clone(), b_lab.clone()]));
    let user_labs = token("user/Observation.rs?category=laboratory", json!({}));
    assert_eq!(names(&get_ok(&server, &user_labs, "Observation").await, None), sorted(vec![a_lab.clone(), b_lab.clone()]));
    // Queries on different parameters cannot be one search; reads still check each.
    let mixed = token("user/Observation.rs?category=laboratory user/Observation.rs?status=amended", json!({}));
    assert_forbidden(&server, &mixed, "GET", "Observation", None).await;
    get_ok(&server, &mixed, &a_lab).await;
    assert_forbidden(&server, &mixed, "GET", &a_vitals, None).await;

    // Writes must stay inside the query.
    let lab_writer = token("user/Observation.cu?category=laboratory", json!({}));
    let (status, answer) = server.call_as(&lab_writer, "POST", "Observation", Some((FHIR, observation(&w.b, "laboratory", None))), &[]).await;
    assert_eq!(status, 201, "{answer}");
    assert_forbidden(&server, &lab_writer, "POST", "Observation", Some(observation(&w.b, "vital-signs", None))).await;
    let mut relabelled = observation(&w.a, "vital-signs", None);
    relabelled["id"] = json!(w.a_lab);
    assert_forbidden(&server, &lab_writer, "PUT", &a_lab, Some(relabelled)).await;
    server.stop().await;
}

#[tokio::test]
async fn smart_configuration_is_published_when_configured() {
    let smart = server(true).await;
    let response = smart.client.get(smart.url(".well-known/smart-configuration")).send().await.unwrap();
    assert_eq!(response.status(), 200, "public, no token needed");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["issuer"], ISSUER);
    assert!(document["jwks_uri"].as_str().unwrap().ends_with("/jwks.json"));
    assert_eq!(document["authorization_endpoint"], "https://auth.example/authorize");
    assert_eq!(document["token_endpoint"], "https://auth.example/token");
    assert_eq!(document["revocation_endpoint"], "https://auth.example/revoke");
    assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
    for capability in ["permission-patient", "permission-v2", "context-standalone-patient"] {
        assert!(document["capabilities"].as_array().unwrap().iter().any(|c| c == capability), "{capability}: {document}");
    }
    let metadata: Value = smart.client.get(smart.url("metadata")).send().await.unwrap().json().await.unwrap();
    let security = &metadata["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris = &security["extension"][0];
    assert_eq!(uris["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    assert!(uris["extension"].as_array().unwrap().iter().any(|uri| uri["url"] == "token" && uri["valueUri"] == "https://auth.example/token"));
    smart.stop().await;

    let plain = server(false).await;
    let response = plain.client.get(plain.url(".well-known/smart-configuration")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_outcome(&response.json().await.unwrap(), "not-found");
    let metadata: Value = plain.client.get(plain.url("metadata")).send().await.unwrap().json().await.unwrap();
    assert!(metadata["rest"][0].get("security").is_none(), "SMART is not advertised when not configured");
    plain.stop().await;
}
