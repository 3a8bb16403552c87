//! Black-box tests of every error status: each is an OperationOutcome, never a 5xx.

mod common;

use common::{assert_outcome, json_with_status, patient, TestServer};
use serde_json::json;

#[tokio::test]
async fn malformed_and_invalid_bodies_are_400() {
    let server = TestServer::start().await;
    let post_raw = |body: &'static str| {
        server.client.post(server.url("Patient")).header("content-type", "application/fhir+json").body(body).send()
    };
    let bad_json = json_with_status(post_raw("{\"resourceType\": \"Patient\",").await.unwrap(), 400).await;
    assert_outcome(&bad_json, "structure");
    let not_object = json_with_status(post_raw("[1,2]").await.unwrap(), 400).await;
    assert_outcome(&not_object, "structure");
    let wrong_type = json_with_status(post_raw("{\"resourceType\":\"Observation\"}").await.unwrap(), 400).await;
    assert_outcome(&wrong_type, "invalid");

    let mut invalid = patient("Invalid");
    invalid["birthDate"] = json!("02/01/1990");
    invalid["unknownElement"] = json!(true);
    let response = json_with_status(server.post_json("Patient", &invalid).await, 400).await;
    let text = response.to_string();
    assert!(text.contains("Patient.birthDate"), "the issue names the element path: {text}");
    assert!(text.contains("Patient.unknownElement"), "every error is reported: {text}");
    assert!(!text.contains("02/01/1990"), "diagnostics do not echo values: {text}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_types_ids_and_urls_are_404_or_400() {
    let server = TestServer::start().await;
    assert_outcome(&json_with_status(server.get("Patientt/1").await, 404).await, "not-found");
    assert_outcome(&json_with_status(server.get("Patient/unknown").await, 404).await, "not-found");
    assert_outcome(&json_with_status(server.get("Patient/bad_id!").await, 400).await, "invalid");
    assert_outcome(&json_with_status(server.get("Patient/1/extra/segments/here").await, 404).await, "not-found");
    assert_outcome(&json_with_status(server.post_json("Nope", &json!({"resourceType": "Nope"})).await, 404).await, "not-found");
    // Outside the base path.
    let outside = server.client.get(server.base.replace("/fhir", "/elsewhere")).send().await.unwrap();
    assert_eq!(outside.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let server = TestServer::start().await;
    let created = server.create(patient("Methods")).await;
    let id = created["id"].as_str().unwrap();
    let post_instance = server.post_json(&format!("Patient/{id}"), &created).await;
    assert_outcome(&json_with_status(post_instance, 405).await, "not-supported");
    let delete_metadata = server.client.delete(server.url("metadata")).send().await.unwrap();
    assert_outcome(&json_with_status(delete_metadata, 405).await, "not-supported");
    let put_history = server.client.put(server.url("Patient/_history")).body("{}").send().await.unwrap();
    assert_eq!(put_history.status(), 405);
    server.stop().await;
}

#[tokio::test]
async fn media_types_406_and_415() {
    let server = TestServer::start().await;
    let xml_accept = server.client.get(server.url("metadata")).header("accept", "application/fhir+xml").send().await.unwrap();
    assert_outcome(&json_with_status(xml_accept, 406).await, "not-supported");
    assert_eq!(server.get("metadata?_format=xml").await.status(), 406);
    assert_eq!(server.get("metadata?_format=json").await.status(), 200);
    assert_eq!(server.get("metadata?_format=application/fhir%2Bjson").await.status(), 200);
    let xml_body = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+xml")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .unwrap();
    assert_outcome(&json_with_status(xml_body, 415).await, "not-supported");
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 1024).await;
    let mut big = patient("Big");
    big["name"][0]["given"] = json!(vec!["x".repeat(100); 20]);
    let response = json_with_status(server.post_json("Patient", &big).await, 413).await;
    assert_outcome(&response, "too-long");
    // A chunked body without Content-Length is cut off at the limit too.
    let stream = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100])));
    let chunked = server
        .client
        .post(server.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    assert_eq!(server.post_json("Patient", &patient("Small")).await.status(), 201);
    server.stop().await;
}

#[tokio::test]
async fn pretty_output() {
    let server = TestServer::start().await;
    let pretty = server.get("metadata?_pretty=true").await.text().await.unwrap();
    assert!(pretty.contains("\n  \"resourceType\""));
    let compact = server.get("metadata").await.text().await.unwrap();
    assert!(!compact.contains('\n'));
    assert_eq!(server.get("metadata?_pretty=maybe").await.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn validate_operation() {
    let server = TestServer::start().await;
    let ok = json_with_status(server.post_json("Patient/$validate", &patient("Valid")).await, 200).await;
    assert_eq!(ok["issue"][0]["severity"], "information");

    let mut bad = patient("Invalid");
    bad["gender"] = json!("sometimes");
    let issues = json_with_status(server.post_json("Patient/$validate", &bad).await, 200).await;
    assert_eq!(issues["issue"][0]["severity"], "error");
    assert!(issues.to_string().contains("Patient.gender"));

    let wrapped = json!({ "resourceType": "Parameters", "parameter": [{ "name": "resource", "resource": bad }] });
    let issues = json_with_status(server.post_json("Patient/$validate", &wrapped).await, 200).await;
    assert_eq!(issues["issue"][0]["severity"], "error");

    let mismatch = json_with_status(server.post_json("Observation/$validate", &patient("X")).await, 200).await;
    assert_eq!(mismatch["issue"][0]["severity"], "error");

    // Nothing was stored by $validate.
    assert_eq!(server.get("Patient/$validate").await.status(), 400);
    let unknown_operation = server.post_json("Patient/$frobnicate", &patient("X")).await;
    assert_eq!(unknown_operation.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn metadata_describes_what_is_implemented() {
    let server = TestServer::start().await;
    let statement = json_with_status(server.get("metadata").await, 200).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146, "every R4 resource type");
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> = patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for expected in ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"] {
        assert!(interactions.contains(&expected), "{expected} is advertised");
    }
    let params: Vec<&str> = patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for expected in ["name", "birthdate", "identifier", "_id", "_lastUpdated", "organization"] {
        assert!(params.contains(&expected), "Patient?{expected} is advertised");
    }
    let location = resources.iter().find(|r| r["type"] == "Location").unwrap();
    assert!(!location["searchParam"].to_string().contains("\"near\""), "special parameters are not advertised");
    assert_eq!(patient["conditionalCreate"], true);
    let system: Vec<&str> = statement["rest"][0]["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, ["transaction", "batch", "history-system", "search-system"]);
    assert_eq!(statement["patchFormat"], json!(["application/json-patch+json", "application/fhir+json"]));
    assert!(patient["operation"].to_string().contains("Patient-everything"));
    assert!(patient["operation"].to_string().contains("bulkdata/OperationDefinition/patient-export"));
    let group = resources.iter().find(|r| r["type"] == "Group").unwrap();
    assert!(group["operation"].to_string().contains("bulkdata/OperationDefinition/group-export"));
    assert_eq!(statement["rest"][0]["operation"][0]["name"], "export");
    assert_eq!(statement["instantiates"][0], "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data");
    assert!(statement["rest"][0]["compartment"].to_string().contains("CompartmentDefinition/patient"));
    server.stop().await;
}
