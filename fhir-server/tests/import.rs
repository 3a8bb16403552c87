//! `fhir-server import`: Bundle and NDJSON files through the API, a summary of failures with
//! their line or entry, re-runs that skip finished work and never duplicate, and the data
//! directory lock.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{json_with_status, TestServer};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_fhir-server");

fn import(data: &Path, args: &[&str]) -> Output {
    Command::new(BINARY).arg("--data").arg(data).arg("import").args(args).env("RUST_LOG", "warn").output().expect("run import")
}

fn write_inputs(dir: &Path) {
    let entry = |full_url: &str, resource: Value| {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        json!({ "fullUrl": full_url, "resource": resource, "request": { "method": "POST", "url": resource_type } })
    };
    let observation = |subject: &str| json!({ "resourceType": "Observation", "status": "final", "code": { "text": "pulse" }, "subject": { "reference": subject } });
    let patient = "urn:uuid:11111111-2222-4333-8444-555555555555";
    let good = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        entry(patient, json!({ "resourceType": "Patient", "name": [{ "family": "Imported" }] })),
        entry("urn:uuid:11111111-2222-4333-8444-000000000001", observation(patient)),
        entry("urn:uuid:11111111-2222-4333-8444-000000000002", observation(patient)),
    ]});
    std::fs::write(dir.join("a-good.json"), good.to_string()).unwrap();
    let bad = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        entry("urn:uuid:11111111-2222-4333-8444-000000000003", json!({ "resourceType": "Patient", "name": [{ "family": "Never" }] })),
        entry("urn:uuid:11111111-2222-4333-8444-000000000004", json!({ "resourceType": "Patient", "birthDate": "soon" })),
    ]});
    std::fs::write(dir.join("b-bad.json"), bad.to_string()).unwrap();
    let lines = [
        json!({ "resourceType": "Patient", "name": [{ "family": "Line" }] }).to_string(),
        json!({ "resourceType": "Patient", "id": "line-2", "name": [{ "family": "Line" }] }).to_string(),
        String::new(),
        json!({ "resourceType": "Patient", "name": [{ "family": "Line" }] }).to_string(),
        json!({ "resourceType": "Patient", "gender": "sometimes" }).to_string(),
        "this is not json".to_string(),
    ];
    std::fs::write(dir.join("c-lines.ndjson"), lines.join("\n")).unwrap();
    // A conditional create needs a current search index while the import holds its build.
    let conditional = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": { "resourceType": "Patient", "identifier": [{ "system": "urn:mrn", "value": "77" }], "name": [{ "family": "Once" }] },
        "request": { "method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|77" },
    }]});
    std::fs::write(dir.join("d-conditional.json"), conditional.to_string()).unwrap();
}

/// Whether the search index in `data` has its value indexes (it is built, not building).
fn search_index_built(data: &Path) -> bool {
    let index = rusqlite::Connection::open(data.join("search.db")).unwrap();
    index.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'ix_token_value'", [], |row| row.get::<_, i64>(0)).unwrap() == 1
}

async fn total(server: &TestServer, query: &str) -> u64 {
    let response = server.client.get(server.url(query)).header("prefer", "read-your-writes").send().await.unwrap();
    json_with_status(response, 200).await["total"].as_u64().unwrap()
}

// Several threads: the import processes block this test's thread while the server answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_failures_and_never_duplicates() {
    let inputs = tempfile::tempdir().unwrap();
    write_inputs(inputs.path());
    let data = tempfile::tempdir().unwrap();

    let first = import(data.path(), &[inputs.path().to_str().unwrap()]);
    let report = String::from_utf8_lossy(&first.stdout).to_string();
    assert_eq!(first.status.code(), Some(1), "failures make the exit status 1: {report}");
    assert!(report.contains("imported 7 resources from 4 files"), "{report}");
    assert!(search_index_built(data.path()), "an import ends with its resources searchable");
    assert!(!report.contains("d-conditional"), "{report}");
    assert!(report.contains("b-bad.json") && report.contains("entry 1"), "the failing bundle entry is named: {report}");
    assert!(report.contains("c-lines.ndjson line 6: not a JSON object"), "{report}");
    assert!(report.contains("c-lines.ndjson line 5: 400"), "{report}");
    assert!(!report.contains("sometimes") && !report.contains("soon"), "values are never echoed: {report}");

    // Again: what finished is skipped, what failed is tried again (and fails again).
    let second = import(data.path(), &[inputs.path().to_str().unwrap()]);
    let report = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(report.contains("4 skipped as already imported"), "{report}");

    // Without the progress file every unit is sent again: still no duplicates.
    std::fs::remove_file(data.path().join("import-progress.json")).unwrap();
    import(data.path(), &[inputs.path().to_str().unwrap()]);

    let server = TestServer::start_with(|config| config.data_dir = data.path().to_path_buf()).await;
    assert_eq!(total(&server, "Patient?family=Imported&_summary=count").await, 1);
    assert_eq!(total(&server, "Observation?_summary=count").await, 2);
    assert_eq!(total(&server, "Patient?family=Line&_summary=count").await, 3);
    assert_eq!(total(&server, "Patient?family=Never&_summary=count").await, 0, "a failed transaction leaves nothing");
    assert_eq!(total(&server, "Patient?family=Once&_summary=count").await, 1, "a conditional create is not repeated");
    let line = json_with_status(server.get("Patient/line-2").await, 200).await;
    assert_eq!(line["meta"]["versionId"], "1", "sending the same resource again wrote no new version");
    let observation: Value = json_with_status(server.get("Observation?_count=1").await, 200).await;
    let patient: Value = json_with_status(server.get("Patient?family=Imported").await, 200).await;
    let patient_id = patient["entry"][0]["resource"]["id"].as_str().unwrap();
    assert_eq!(observation["entry"][0]["resource"]["subject"]["reference"], format!("Patient/{patient_id}"), "references follow the imported id");
    let observation_id = observation["entry"][0]["resource"]["id"].as_str().unwrap();
    assert_eq!(observation_id[..12], patient_id[..12], "one bundle's resources share an id prefix");

    // The data directory is in use: a second writer is refused; --server goes through the API.
    let refused = import(data.path(), &[inputs.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another fhir-server process"));
    let elsewhere = tempfile::tempdir().unwrap();
    let via_api = import(elsewhere.path(), &["--server", &server.base, inputs.path().join("a-good.json").to_str().unwrap()]);
    assert!(via_api.status.success(), "{}", String::from_utf8_lossy(&via_api.stdout));
    assert_eq!(total(&server, "Observation?_summary=count").await, 2);
    server.stop().await;
}

/// In AWS mode the import serves the API on a loopback port for itself (with a key made for the
/// run) and sends over HTTP.
#[test]
fn import_in_aws_mode() {
    let moto = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let opensearch = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL is not set: run the tests with scripts/test");
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let inputs = tempfile::tempdir().unwrap();
    write_inputs(inputs.path());
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BINARY)
            .arg("--data")
            .arg(data.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .env("FHIR_SERVER_BACKEND", "aws")
            .env("FHIR_SERVER_AWS__ENDPOINT_URL", &moto)
            .env("FHIR_SERVER_AWS__REGION", "sa-east-1")
            .env("FHIR_SERVER_AWS__EVENTS_TABLE", format!("events-{unique}"))
            .env("FHIR_SERVER_AWS__BODIES_BUCKET", format!("bodies-{unique}"))
            .env("FHIR_SERVER_AWS__STREAM", format!("events-{unique}"))
            .env("FHIR_SERVER_AWS__LEASES_TABLE", format!("leases-{unique}"))
            .env("FHIR_SERVER_AWS__HISTORY_TABLE", format!("history-{unique}"))
            .env("FHIR_SERVER_AWS__OPENSEARCH_URL", &opensearch)
            .env("FHIR_SERVER_AWS__INDEX_PREFIX", format!("x{unique}"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .expect("run fhir-server")
    };
    let setup = run(&["aws-setup"]);
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let imported = run(&["import", inputs.path().join("a-good.json").to_str().unwrap()]);
    let report = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{report} {}", String::from_utf8_lossy(&imported.stderr));
    assert!(report.contains("imported 3 resources from 1 files"), "{report}");
}

/// With multi-tenancy, `--tenant` loads into that tenant and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_into_a_tenant() {
    let inputs = tempfile::tempdir().unwrap();
    write_inputs(inputs.path());
    let data = tempfile::tempdir().unwrap();
    let good = inputs.path().join("a-good.json");
    let run = |args: &[&str], tenancy: bool| {
        let mut command = Command::new(BINARY);
        command.arg("--data").arg(data.path()).arg("import").args(args).env("RUST_LOG", "warn");
        if tenancy {
            command.env("FHIR_SERVER_MULTI_TENANCY", "true");
        }
        command.output().expect("run import")
    };
    let refused = run(&["--tenant", "clinic-9", good.to_str().unwrap()], false);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tenant needs multi_tenancy"));
    let bad = run(&["--tenant", "no/slash", good.to_str().unwrap()], true);
    assert!(!bad.status.success());
    let imported = run(&["--tenant", "clinic-9", good.to_str().unwrap()], true);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    let server = TestServer::start_with(|config| {
        config.data_dir = data.path().to_path_buf();
        config.multi_tenancy = true;
    })
    .await;
    assert_eq!(total(&server, "tenant/clinic-9/Patient?family=Imported&_summary=count").await, 1);
    assert_eq!(total(&server, "tenant/clinic-9/Observation?_summary=count").await, 2);
    assert_eq!(total(&server, "tenant/default/Patient?family=Imported&_summary=count").await, 0);
    assert_eq!(total(&server, "tenant/clinic-8/Observation?_summary=count").await, 0);
    server.stop().await;
}
