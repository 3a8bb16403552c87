//! Implementation Guides over HTTP, with the test packages of `testdata/ig`: installing one into
//! a running server (its profiles enforced on writes and in `$validate`, its SearchParameters
//! searchable after a rebuild by replay, for resources written before and after), dependencies,
//! SearchParameters written through the API, packages named by the configuration with a
//! required profile, the offline `ig install`, and the CapabilityStatement.
//!
//! Custom search parameters are per server process, and these servers run in one test
//! process: the tests take turns.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_outcome, json_with_status, TestServer};
use serde_json::{json, Value};

const BASE: &str = "http://fhir-server.dev/ig/test";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn package_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../testdata/ig").join(name)
}

fn tarball(name: &str) -> Vec<u8> {
    implementation_guide::package::pack_dir(&package_dir(name)).unwrap()
}

async fn install(server: &TestServer, name: &str, query: &str) -> (u16, Value) {
    let response = server.client.post(server.url(&format!("$install-package{query}"))).header("content-type", "application/gzip").body(tarball(name)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until no rebuild is running and the last one (if any) is done.
async fn reindexed(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = json_with_status(server.get("$reindex").await, 200).await;
        let state = status["parameter"][0]["valueCode"].as_str().unwrap_or_default().to_string();
        if state == "done" {
            return;
        }
        assert!(state != "failed" && Instant::now() < deadline, "reindex: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn search_ids(server: &TestServer, query: &str) -> Vec<String> {
    let response = server.client.get(server.url(query)).header("prefer", "handling=strict, read-your-writes").send().await.unwrap();
    let bundle = json_with_status(response, 200).await;
    bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect()
}

fn eye_patient(colour: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": colour}], "name": [{"family": "Iris"}], "gender": "female",
           "extension": [{"url": format!("{BASE}/StructureDefinition/eye-colour"), "valueCode": colour}]})
}

/// The valid blood pressure of `testdata/ig/examples`, with these pressures.
fn blood_pressure(systolic: f64, diastolic: f64) -> Value {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../testdata/ig/examples/blood-pressure.json");
    let mut resource: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    resource["component"][0]["valueQuantity"]["value"] = json!(systolic);
    resource["component"][1]["valueQuantity"]["value"] = json!(diastolic);
    resource
}

fn diagnostics(outcome: &Value) -> String {
    outcome["issue"].as_array().into_iter().flatten().filter_map(|i| i["diagnostics"].as_str()).collect::<Vec<_>>().join(" | ")
}

#[tokio::test]
async fn installed_package_is_enforced_and_searchable_after_a_rebuild() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    // Written before the package: the profile is unknown, so nothing is checked yet.
    let before = server.create(eye_patient("hazel")).await;
    let unchecked = server.create(blood_pressure(70.0, 90.0)).await;
    server.create(eye_patient("blue")).await;
    let unknown = server.client.get(server.url("Patient?eye-colour=hazel")).header("prefer", "handling=strict").send().await.unwrap();
    assert_eq!(unknown.status(), 400);

    // The dependent package first: its dependency is not installed.
    let (status, refused) = install(&server, "fhir-server.test.clinic", "").await;
    assert_eq!(status, 422, "{refused}");
    assert!(diagnostics(&refused).contains("needs fhir-server.test.vitals#1.0.x (none is installed)"), "{refused}");

    let (status, report) = install(&server, "fhir-server.test.vitals", "").await;
    assert_eq!(status, 200, "{report}");
    let named: Vec<&str> = report["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "searchParameter").filter_map(|p| p["valueUri"].as_str()).collect();
    assert!(named.contains(&format!("{BASE}/SearchParameter/patient-eye-colour").as_str()), "{report}");
    let (status, report) = install(&server, "fhir-server.test.clinic", "").await;
    assert_eq!(status, 200, "{report}");

    // The rebuild by replay finds what was written before; what comes after is indexed too.
    reindexed(&server).await;
    let after = server.create(eye_patient("hazel")).await;
    let mut found = search_ids(&server, "Patient?eye-colour=hazel&_count=50").await;
    found.sort();
    let mut wanted = vec![before["id"].as_str().unwrap().to_string(), after["id"].as_str().unwrap().to_string()];
    wanted.sort();
    assert_eq!(found, wanted);
    assert_eq!(search_ids(&server, "Observation?systolic=lt80").await, vec![unchecked["id"].as_str().unwrap().to_string()]);

    // Writes claiming the profile are checked: 422 with the reasons.
    let response = server.post_json("Observation", &blood_pressure(70.0, 90.0)).await;
    let outcome = json_with_status(response, 422).await;
    assert_outcome(&outcome, "invariant");
    assert!(diagnostics(&outcome).contains("tbp-1"), "{outcome}");
    let mut no_subject = blood_pressure(120.0, 80.0);
    no_subject.as_object_mut().unwrap().remove("subject");
    no_subject["id"] = unchecked["id"].clone();
    let response = server.put_json(&format!("Observation/{}", unchecked["id"].as_str().unwrap()), &no_subject).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("Observation.subject needs at least 1"));
    server.create(blood_pressure(120.0, 80.0)).await;

    // In a transaction, one entry that does not conform fails the whole.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": blood_pressure(120.0, 80.0), "request": {"method": "POST", "url": "Observation"}},
        {"resource": blood_pressure(60.0, 80.0), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let response = server.post_json("", &bundle).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("tbp-1"));

    // The dependent package's profile adds to its base's.
    let mut clinic = blood_pressure(120.0, 80.0);
    clinic["meta"]["profile"] = json!([format!("{BASE}/clinic/StructureDefinition/clinic-blood-pressure")]);
    let response = server.post_json("Observation", &clinic).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("Observation.performer needs at least 1"));

    // $validate with a profile named, and with one the server does not know.
    let mut unclaimed = blood_pressure(120.0, 80.0);
    unclaimed.as_object_mut().unwrap().remove("meta");
    unclaimed["component"].as_array_mut().unwrap().pop();
    let url = format!("Observation/$validate?profile={BASE}/StructureDefinition/test-blood-pressure");
    let outcome = json_with_status(server.post_json(&url, &unclaimed).await, 200).await;
    assert!(diagnostics(&outcome).contains("slice diastolic of Observation.component needs at least 1"), "{outcome}");
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": blood_pressure(120.0, 80.0)},
        {"name": "profile", "valueUri": format!("{BASE}/clinic/StructureDefinition/clinic-blood-pressure")}]});
    let outcome = json_with_status(server.post_json("Observation/$validate", &parameters).await, 200).await;
    assert!(diagnostics(&outcome).contains("Observation.performer"), "{outcome}");
    let outcome = json_with_status(server.post_json("Observation/$validate?profile=http://example.org/nope", &unclaimed).await, 200).await;
    assert!(diagnostics(&outcome).contains("is not known to this server"), "{outcome}");

    // The CapabilityStatement lists the guides, their profiles and the search parameters.
    let statement = json_with_status(server.get("metadata").await, 200).await;
    let guides: Vec<&str> = statement["implementationGuide"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(guides.contains(&format!("{BASE}/ImplementationGuide/fhir-server.test.vitals|1.0.0").as_str()), "{guides:?}");
    let resource = |name: &str| statement["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == name).unwrap().clone();
    assert!(resource("Observation")["supportedProfile"].as_array().unwrap().contains(&json!(format!("{BASE}/StructureDefinition/test-blood-pressure"))));
    assert!(resource("Patient")["searchParam"].as_array().unwrap().iter().any(|p| p["name"] == "eye-colour" && p["type"] == "token"));

    // After a restart the packages are there, and the index needs no rebuild.
    let server = server.restart(|_| {}).await;
    assert_eq!(search_ids(&server, "Patient?eye-colour=hazel&_count=50").await.len(), 2);
    assert_eq!(json_with_status(server.get("$reindex").await, 200).await["parameter"][0]["valueCode"], "idle");
    let response = server.post_json("Observation", &blood_pressure(70.0, 90.0)).await;
    assert_eq!(response.status(), 422);
    server.stop().await;
}

#[tokio::test]
async fn search_parameters_written_through_the_api() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    let old = server.create(json!({"resourceType": "Patient", "name": [{"family": "Old"}], "extension": [{"url": "http://example.org/shoe-size", "valueInteger": 44}]})).await;
    let parameter = json!({"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/shoe-size", "name": "ShoeSize", "status": "active",
        "description": "shoe size", "code": "shoe-size", "base": ["Patient"], "type": "number",
        "expression": "Patient.extension.where(url = 'http://example.org/shoe-size').value"});
    let mut broken = parameter.clone();
    broken["expression"] = json!("Patient.extension.where(");
    let outcome = json_with_status(server.post_json("SearchParameter", &broken).await, 400).await;
    assert!(diagnostics(&outcome).contains("expression"), "{outcome}");
    let created = server.create(parameter.clone()).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = server.client.get(server.url("Patient?shoe-size=44")).header("prefer", "handling=strict").send().await.unwrap();
        if response.status() == 200 {
            let bundle: Value = response.json().await.unwrap();
            if bundle["entry"][0]["resource"]["id"] == old["id"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the API's SearchParameter never found the older patient");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reindexed(&server).await;
    let newer = server.create(json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/shoe-size", "valueInteger": 38}]})).await;
    assert_eq!(search_ids(&server, "Patient?shoe-size=lt40").await, vec![newer["id"].as_str().unwrap().to_string()]);

    // Retired, it is no longer a parameter (a strict search refuses it).
    let mut retired = created.clone();
    retired["status"] = json!("retired");
    json_with_status(server.put_json(&format!("SearchParameter/{}", created["id"].as_str().unwrap()), &retired).await, 200).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = server.client.get(server.url("Patient?shoe-size=44")).header("prefer", "handling=strict").send().await.unwrap();
        if response.status() == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "the retired SearchParameter is still used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reindexed(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn configured_packages_with_a_required_profile_and_offline_install() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let patient_profile = format!("{BASE}/StructureDefinition/test-patient");
    let required = patient_profile.clone();
    let server = TestServer::start_with(move |config| {
        config.ig.packages = vec![package_dir("fhir-server.test.vitals")];
        config.ig.required_profiles.insert("Patient".into(), vec![required]);
    })
    .await;
    // Required: checked without being claimed.
    let response = server.post_json("Patient", &json!({"resourceType": "Patient", "name": [{"family": "Plain"}], "gender": "female"})).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("Patient.identifier needs at least 1"));
    server.create(eye_patient("green")).await;
    let response = server.post_json("Patient", &eye_patient("violet")).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("outside the required value set"));
    let statement = json_with_status(server.get("metadata").await, 200).await;
    let patient = statement["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap().clone();
    assert_eq!(patient["profile"], json!(patient_profile));
    let mut config = server.config.clone();
    let data = server.stop().await;

    // A required profile no package has stops the start, saying why.
    let mut wrong = config.clone();
    wrong.ig.required_profiles.insert("Observation".into(), vec!["http://example.org/none".into()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let failed = fhir_server::serve::run(wrong, listener, async {}).await.unwrap_err();
    assert!(format!("{failed:#}").contains("http://example.org/none is not in any loaded package"), "{failed:#}");

    // Offline install of the dependent package into the stopped server's data directory.
    config.ig.required_profiles.clear();
    assert!(fhir_server::ig_cli::install_offline(&config, &package_dir("fhir-server.test.clinic"), false).await.unwrap());
    let store = implementation_guide::PackageStore::new(&config.data_dir);
    let installed = store.load().unwrap();
    assert_eq!(installed.iter().map(|p| p.manifest.id()).collect::<Vec<_>>(), vec!["fhir-server.test.clinic#0.2.0"]);

    // Installed offline with its search parameters, then removed: the index is rebuilt each time.
    config.ig.packages.clear();
    assert!(fhir_server::ig_cli::install_offline(&config, &package_dir("fhir-server.test.vitals"), false).await.unwrap());
    assert!(fhir_server::search_params::built_with(&config.data_dir).contains("patient-eye-colour"));
    assert!(fhir_server::ig_cli::remove_offline(&config, "fhir-server.test.vitals").await.is_err(), "the clinic package needs it");
    assert!(fhir_server::ig_cli::remove_offline(&config, "fhir-server.test.clinic").await.unwrap());
    assert!(fhir_server::ig_cli::remove_offline(&config, "fhir-server.test.vitals").await.unwrap());
    assert_eq!(fhir_server::search_params::built_with(&config.data_dir), "");
    assert!(store.load().unwrap().is_empty());
    drop(data);
}

#[tokio::test]
async fn packages_are_not_installed_by_one_tenant_for_all() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with(|config| config.multi_tenancy = true).await;
    let response = server.client.post(server.url("tenant/t1/$install-package")).header("content-type", "application/gzip").body(tarball("fhir-server.test.vitals")).send().await.unwrap();
    let outcome = json_with_status(response, 403).await;
    assert!(diagnostics(&outcome).contains("per server"), "{outcome}");
    server.stop().await;

    // Not a package: 422 saying what is wrong, and nothing installed.
    let server = TestServer::start().await;
    let response = server.client.post(server.url("$install-package")).header("content-type", "application/gzip").body("not a tarball").send().await.unwrap();
    let outcome = json_with_status(response, 422).await;
    assert!(diagnostics(&outcome).contains("not a gzip-compressed tar file"), "{outcome}");
    assert!(implementation_guide::PackageStore::new(&server.config.data_dir).load().unwrap().is_empty());
    server.stop().await;
}

/// A valid token with these claims (and no groups: its scopes alone decide).
fn signed(claims: Value) -> String {
    let mut token = json!({"iss": common::tokens::ISSUER, "aud": common::tokens::AUDIENCE, "sub": "admin", "exp": common::tokens::now() + 300});
    token.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
    common::tokens::sign(&token, "rsa-1")
}

#[tokio::test]
async fn installing_needs_create_on_implementation_guide_and_reindexing_on_search_parameter() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let auth = common::tokens::trusted_issuer().await;
    let server = TestServer::start_with(|config| config.auth = auth).await;
    let send = |claims: Value| {
        server.client.post(server.url("$install-package")).bearer_auth(signed(claims)).header("content-type", "application/gzip").body(tarball("fhir-server.test.vitals")).send()
    };
    assert_eq!(send(json!({"cognito:groups": ["auditor"]})).await.unwrap().status(), 403);
    assert_eq!(send(json!({"scope": "system/Patient.cruds"})).await.unwrap().status(), 403);
    assert_eq!(send(json!({"scope": "system/ImplementationGuide.c"})).await.unwrap().status(), 200);

    // Rebuilding the index (which an install may start) is for those who may add search
    // parameters, like the install, and not without a token.
    let reindex = |claims: Option<Value>| {
        let mut request = server.client.post(server.url("$reindex"));
        if let Some(claims) = claims {
            request = request.bearer_auth(signed(claims));
        }
        request.send()
    };
    assert_eq!(reindex(None).await.unwrap().status(), 401);
    assert_eq!(reindex(Some(json!({"scope": "system/ImplementationGuide.c"}))).await.unwrap().status(), 403);
    let started = reindex(Some(json!({"scope": "system/SearchParameter.c"}))).await.unwrap();
    assert_eq!(started.status(), 202, "{}", started.text().await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn aws_mode_takes_packages_from_the_configuration() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_aws().await;
    let before = server.create(eye_patient("brown")).await;
    // Started again with the package: the existing OpenSearch index gains the new field, new
    // resources are indexed by it, and `fhir-server reindex` indexes the older ones (which the
    // stream may also have brought again, if the projector had not recorded them yet).
    let server = server.restart(|config| config.ig.packages = vec![package_dir("fhir-server.test.vitals")]).await;
    let after = server.create(eye_patient("brown")).await;
    assert!(search_ids(&server, "Patient?eye-colour=brown").await.contains(&after["id"].as_str().unwrap().to_string()));
    let response = server.post_json("Patient", &json!({"resourceType": "Patient", "meta": {"profile": [format!("{BASE}/StructureDefinition/test-patient")]}})).await;
    assert!(diagnostics(&json_with_status(response, 422).await).contains("Patient.identifier needs at least 1"));
    fhir_server::aws::reindex(&server.config).await.unwrap();
    let mut found = search_ids(&server, "Patient?eye-colour=brown").await;
    found.sort();
    let mut wanted = vec![before["id"].as_str().unwrap().to_string(), after["id"].as_str().unwrap().to_string()];
    wanted.sort();
    assert_eq!(found, wanted);
    server.stop().await;
}
