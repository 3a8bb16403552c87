//! Bulk `$export` over HTTP (Bulk Data Access IG v2): kick-off at system, Patient and Group
//! level by GET and POST, every parameter and its refusals, status polling, the manifest and
//! its files, the point-in-time snapshot, cancellation, the per-tenant limit, a job resumed by a
//! restarted server, files split by size, and SMART bounds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::tokens::{now, sign, trusted_issuer, AUDIENCE, ISSUER};
use common::{assert_outcome, patient, TestServer};
use serde_json::{json, Value};

const FHIR: &str = "application/fhir+json";

struct Seed {
    patients: Vec<String>,
    lab: Vec<String>,
    vitals: Vec<String>,
    group: String,
    practitioner: String,
}

fn observation(patient: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category }] }],
        "code": { "text": category }, "subject": { "reference": format!("Patient/{patient}") }
    })
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_string()
}

/// Three patients with a laboratory and a vital-signs Observation each, a Practitioner, and a
/// Group of the first two.
async fn seed(server: &TestServer) -> Seed {
    let mut seed = Seed { patients: Vec::new(), lab: Vec::new(), vitals: Vec::new(), group: String::new(), practitioner: String::new() };
    for family in ["Ash", "Birch", "Cedar"] {
        let p = id_of(&server.create(patient(family)).await);
        seed.lab.push(id_of(&server.create(observation(&p, "laboratory")).await));
        seed.vitals.push(id_of(&server.create(observation(&p, "vital-signs")).await));
        seed.patients.push(p);
    }
    seed.practitioner = id_of(&server.create(json!({ "resourceType": "Practitioner", "name": [{ "family": "Doc" }] })).await);
    let members: Vec<Value> = seed.patients[..2].iter().map(|p| json!({ "entity": { "reference": format!("Patient/{p}") } })).collect();
    seed.group = id_of(&server.create(json!({ "resourceType": "Group", "type": "person", "actual": true, "member": members })).await);
    seed
}

/// Sends a kick-off; the response.
async fn kick_off(server: &TestServer, token: Option<&str>, method: &str, path: &str, body: Option<Value>, prefer: &str) -> reqwest::Response {
    let mut request = server.client.request(method.parse().unwrap(), server.url(path)).header("accept", FHIR).header("prefer", prefer);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", FHIR).body(body.to_string());
    }
    request.send().await.unwrap()
}

/// Kicks off an export expecting 202; the status URL.
async fn start(server: &TestServer, token: Option<&str>, path: &str) -> String {
    let response = kick_off(server, token, "GET", path, None, "respond-async").await;
    let status = response.status();
    let location = response.headers().get("content-location").map(|value| value.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    assert_eq!(status, 202, "kick-off {path}: {body}");
    location.expect("Content-Location")
}

/// Polls until the export is complete; the manifest. Checks the 202s on the way.
async fn finish(server: &TestServer, token: Option<&str>, status_url: &str) -> Value {
    for _ in 0..600 {
        let mut request = server.client.get(status_url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        match response.status().as_u16() {
            202 => {
                assert!(response.headers().contains_key("retry-after"));
                assert!(response.headers()["x-progress"].to_str().unwrap().contains("exported"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            200 => {
                assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
                assert!(response.headers().contains_key("expires"));
                return response.json().await.unwrap();
            }
            other => panic!("status {other}: {}", response.text().await.unwrap()),
        }
    }
    panic!("the export did not complete");
}

/// Every resource of the manifest's files, fetched without a token: type → `Type/id` → body.
async fn contents(manifest: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    assert_eq!(manifest["requiresAccessToken"], false);
    assert_eq!(manifest["error"], json!([]));
    let mut all: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let response = reqwest::get(file["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap(), "count matches the file");
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], file["type"]);
            let name = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
            assert!(all.entry(file["type"].as_str().unwrap().to_string()).or_default().insert(name.clone(), resource).is_none(), "{name} twice");
        }
    }
    all
}

fn names(contents: &BTreeMap<String, BTreeMap<String, Value>>) -> BTreeSet<String> {
    contents.values().flat_map(|resources| resources.keys().cloned()).collect()
}

fn named(resource_type: &str, ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| format!("{resource_type}/{id}")).collect()
}

#[tokio::test]
async fn kick_off_parameters_are_checked() {
    let server = TestServer::start_with(|config| config.export.run_worker = false).await;
    let refused = [
        ("$export?_type=Patient", "respond-sync"),
        ("$export?_outputFormat=text/csv", "respond-async"),
        ("$export?_type=Patient,Nope", "respond-async"),
        ("$export?_since=yesterday", "respond-async"),
        ("$export?_typeFilter=Observation%3Fsubject.name%3Dx", "respond-async"),
        ("$export?_typeFilter=Observation%3Fnope%3Dx", "respond-async"),
        ("$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal", "respond-async"),
        ("$export?_elements=id", "respond-async"),
        ("$export?includeAssociatedData=LatestProvenanceResources", "respond-async"),
        ("$export?patient=Patient/1", "respond-async"),
        ("$export?surprise=1", "respond-async"),
        ("Patient/$export?_type=Practitioner", "respond-async"),
        ("Group/nope/$export", "respond-async"),
    ];
    for (path, prefer) in refused {
        let response = kick_off(&server, None, "GET", path, None, prefer).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
    }
    // Lenient handling ignores what is not supported, and says so.
    let response = kick_off(&server, None, "GET", "$export?_type=Patient&_elements=id", None, "respond-async, handling=lenient").await;
    assert_eq!(response.status(), 202);
    let outcome: Value = response.json().await.unwrap();
    assert!(outcome.to_string().contains("_elements"), "{outcome}");
    // A POST takes a Parameters body.
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "_outputFormat", "valueString": "application/fhir+ndjson" },
        { "name": "_type", "valueString": "Patient" },
        { "name": "_since", "valueInstant": "2020-01-01T00:00:00Z" }
    ]});
    let response = kick_off(&server, None, "POST", "$export", Some(parameters.clone()), "respond-async").await;
    assert_eq!(response.status(), 202);
    let response = kick_off(&server, None, "POST", "$export", Some(parameters), "respond-async").await;
    assert_eq!(response.status(), 429, "the limit of 2 unfinished exports is reached");
    assert_eq!(server.client.get(server.url("$export-status/nope")).send().await.unwrap().status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn system_patient_and_group_exports_with_their_parameters() {
    let server = TestServer::start().await;
    let seed = seed(&server).await;

    // System level, by type; the manifest and its files.
    let status = start(&server, None, "$export?_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson").await;
    let manifest = finish(&server, None, &status).await;
    assert!(manifest["transactionTime"].as_str().is_some());
    let request = manifest["request"].as_str().unwrap();
    assert!(request.starts_with(&server.url("$export?")) && request.contains("_type=") && request.contains("_outputFormat="), "{manifest}");
    let all = contents(&manifest).await;
    let mut expected: BTreeSet<String> = named("Patient", &seed.patients).into_iter().collect();
    expected.extend(named("Observation", &seed.lab));
    expected.extend(named("Observation", &seed.vitals));
    assert_eq!(names(&all), expected);

    // Without _type: every type.
    let all = contents(&finish(&server, None, &start(&server, None, "$export").await).await).await;
    assert!(all["Practitioner"].contains_key(&format!("Practitioner/{}", seed.practitioner)));
    assert!(all["Group"].contains_key(&format!("Group/{}", seed.group)));
    assert_eq!(all["Patient"].len(), 3);

    // Patient level: the Patient compartment only (no Practitioner; the Group is in it, through
    // its members).
    let all = contents(&finish(&server, None, &start(&server, None, "Patient/$export").await).await).await;
    assert_eq!(all.keys().cloned().collect::<Vec<_>>(), vec!["Group".to_string(), "Observation".to_string(), "Patient".to_string()]);
    expected.insert(format!("Group/{}", seed.group));
    assert_eq!(names(&all), expected);

    // Group level: its members' compartments.
    let all = contents(&finish(&server, None, &start(&server, None, &format!("Group/{}/$export", seed.group)).await).await).await;
    let mut members: BTreeSet<String> = named("Patient", &seed.patients[..2]).into_iter().collect();
    members.extend(named("Observation", &seed.lab[..2]));
    members.extend(named("Observation", &seed.vitals[..2]));
    members.insert(format!("Group/{}", seed.group));
    assert_eq!(names(&all), members);

    // _typeFilter, and `patient` in a POST.
    let all = contents(&finish(&server, None, &start(&server, None, "$export?_type=Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory").await).await).await;
    assert_eq!(names(&all), named("Observation", &seed.lab).into_iter().collect());
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "patient", "valueReference": { "reference": format!("Patient/{}", seed.patients[2]) } },
        { "name": "_type", "valueString": "Patient,Observation" }
    ]});
    let response = kick_off(&server, None, "POST", "Patient/$export", Some(parameters), "respond-async").await;
    assert_eq!(response.status(), 202);
    let status = response.headers()["content-location"].to_str().unwrap().to_string();
    let all = contents(&finish(&server, None, &status).await).await;
    let third: BTreeSet<String> = [format!("Patient/{}", seed.patients[2]), format!("Observation/{}", seed.lab[2]), format!("Observation/{}", seed.vitals[2])].into();
    assert_eq!(names(&all), third);

    // _since: only what changed at or after it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = fhir_core::instant::format_instant(fhir_core::instant::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let changed = id_of(&server.create(patient("Later")).await);
    let all = contents(&finish(&server, None, &start(&server, None, &format!("$export?_type=Patient,Observation&_since={}", since.replace('+', "%2B"))).await).await).await;
    assert_eq!(names(&all), [format!("Patient/{changed}")].into());
    server.stop().await;
}

#[tokio::test]
async fn an_export_is_a_snapshot_of_its_kick_off() {
    let server = TestServer::start_with(|config| config.export.run_worker = false).await;
    let seed = seed(&server).await;
    let status = start(&server, None, "$export?_type=Patient").await;
    // After the kick-off: an update, a create and a delete, none of which may show.
    let mut updated = server.client.get(server.url(&format!("Patient/{}", seed.patients[0]))).send().await.unwrap().json::<Value>().await.unwrap();
    updated["active"] = json!(false);
    assert_eq!(server.put_json(&format!("Patient/{}", seed.patients[0]), &updated).await.status(), 200);
    let late = id_of(&server.create(patient("Late")).await);
    assert_eq!(server.client.delete(server.url(&format!("Patient/{}", seed.patients[1]))).send().await.unwrap().status(), 200);
    // The worker starts only now (the restart also shows that a job survives one).
    let old_base = server.base.clone();
    let server = server.restart(|config| config.export.run_worker = true).await;
    let status = status.replace(&old_base, &server.base);
    let all = contents(&finish(&server, None, &status).await).await;
    let patients = &all["Patient"];
    assert_eq!(patients.keys().cloned().collect::<BTreeSet<_>>(), named("Patient", &seed.patients).into_iter().collect());
    assert!(!patients.contains_key(&format!("Patient/{late}")));
    let first = &patients[&format!("Patient/{}", seed.patients[0])];
    assert_eq!(first["meta"]["versionId"], "1", "the version current at the kick-off");
    assert_eq!(first["active"], true);
    server.stop().await;
}

#[tokio::test]
async fn cancellation_and_the_limit_per_tenant() {
    let server = TestServer::start_with(|config| {
        config.export.run_worker = false;
        config.export.max_jobs_per_tenant = 1;
    })
    .await;
    let status = start(&server, None, "$export?_type=Patient").await;
    let polled = server.client.get(&status).send().await.unwrap();
    assert_eq!(polled.status(), 202, "accepted, waiting for a worker");
    let response = kick_off(&server, None, "GET", "$export?_type=Patient", None, "respond-async").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_outcome(&response.json().await.unwrap(), "throttled");

    let cancelled = server.client.delete(&status).send().await.unwrap();
    assert_eq!(cancelled.status(), 202);
    assert_eq!(server.client.get(&status).send().await.unwrap().status(), 404, "a cancelled export is unknown");
    assert_eq!(server.client.delete(&status).send().await.unwrap().status(), 404);
    start(&server, None, "$export?_type=Patient").await;
    server.stop().await;
}

#[tokio::test]
async fn large_exports_are_split_into_files_and_files_of_cancelled_exports_go() {
    let server = TestServer::start_with(|config| config.export.max_file_bytes = 600).await;
    let seed = seed(&server).await;
    let manifest = finish(&server, None, &start(&server, None, "$export?_type=Observation").await).await;
    let files = manifest["output"].as_array().unwrap();
    assert!(files.len() >= 3, "{} files", files.len());
    let all = contents(&manifest).await;
    assert_eq!(all["Observation"].len(), seed.lab.len() + seed.vitals.len());
    // Cancelling a completed export removes its files.
    let status = start(&server, None, "$export?_type=Observation").await;
    let manifest = finish(&server, None, &status).await;
    let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(server.client.delete(&status).send().await.unwrap().status(), 202);
    let mut gone = false;
    for _ in 0..100 {
        if reqwest::get(&url).await.unwrap().status() != 200 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the files of a cancelled export are removed");
    server.stop().await;
}

fn token(sub: &str, scope: &str, patient: Option<&str>) -> String {
    let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 300, "scope": scope });
    if let Some(patient) = patient {
        claims["patient"] = json!(patient);
    }
    sign(&claims, "rsa-1")
}

#[tokio::test]
async fn smart_tokens_bound_exports_and_only_the_owner_sees_one() {
    let auth = trusted_issuer().await;
    let server = TestServer::start_with(|config| config.auth = auth).await;
    let admin = token("admin", "system/*.cruds", None);
    let mut seed = Seed { patients: Vec::new(), lab: Vec::new(), vitals: Vec::new(), group: String::new(), practitioner: String::new() };
    for family in ["Ash", "Birch"] {
        let (_, created) = server.call_as(&admin, "POST", "Patient", Some((FHIR, patient(family))), &[]).await;
        let p = id_of(&created);
        let (_, lab) = server.call_as(&admin, "POST", "Observation", Some((FHIR, observation(&p, "laboratory"))), &[]).await;
        let (_, vitals) = server.call_as(&admin, "POST", "Observation", Some((FHIR, observation(&p, "vital-signs"))), &[]).await;
        seed.lab.push(id_of(&lab));
        seed.vitals.push(id_of(&vitals));
        seed.patients.push(p);
    }
    // A patient token exports its own compartment, whatever level it asks at.
    let patient_token = token("patient-app", "patient/*.rs", Some(&seed.patients[0]));
    let status = start(&server, Some(&patient_token), "Patient/$export").await;
    let all = contents(&finish(&server, Some(&patient_token), &status).await).await;
    let own: BTreeSet<String> = [format!("Patient/{}", seed.patients[0]), format!("Observation/{}", seed.lab[0]), format!("Observation/{}", seed.vitals[0])].into();
    assert_eq!(names(&all), own);
    let all = contents(&finish(&server, Some(&patient_token), &start(&server, Some(&patient_token), "$export?_type=Observation").await).await).await;
    assert_eq!(names(&all).len(), 2);
    let response = kick_off(&server, Some(&patient_token), "GET", "$export?_type=Practitioner", None, "respond-async").await;
    assert_eq!(response.status(), 403);

    // Another caller cannot poll it; a query-restricted scope filters its type.
    assert_eq!(server.client.get(&status).bearer_auth(&admin).send().await.unwrap().status(), 404);
    let labs = token("lab-app", "system/Observation.rs?category=laboratory", None);
    let all = contents(&finish(&server, Some(&labs), &start(&server, Some(&labs), "$export?_type=Observation").await).await).await;
    assert_eq!(names(&all), named("Observation", &seed.lab).into_iter().collect());
    // Without search on the types, no export.
    let response = kick_off(&server, Some(&token("reader", "system/Patient.r", None)), "GET", "$export?_type=Patient", None, "respond-async").await;
    assert_eq!(response.status(), 403);
    server.stop().await;
}
