//! Multi-tenancy: routes under `[base]/tenant/{id}`, the token's tenant claim bound to the URL,
//! tenant ids checked, and two tenants holding resources with the same ids that never see each
//! other: read, vread, search with chains, `_include`, `_revinclude`, `_has`, compartments and
//! `$everything`, history at every level, conditional operations, bundles, references from one
//! tenant's bundle to the other's resource, and `$export`.

mod common;

use common::tokens::{token, trusted_issuer};
use common::{assert_outcome, TestServer};
use serde_json::{json, Value};

/// A practitioner's token, of `tenant`.
fn tenant_token(tenant: Option<&str>) -> String {
    token("someone", &["practitioner"], tenant.map_or(json!({}), |tenant| json!({ "custom:tenantId": tenant })))
}

/// A caller of one tenant.
struct Caller<'a> {
    server: &'a TestServer,
    tenant: &'a str,
    token: String,
}

impl Caller<'_> {
    async fn send(&self, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}/tenant/{}/{}", self.server.base, self.tenant, path);
        let mut request = self.server.client.request(method.parse().unwrap(), url).bearer_auth(&self.token).header("prefer", "read-your-writes");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.send(method, path, body, &[]).await;
        assert!((200..300).contains(&status), "{} {method} {path}: {status} {answer}", self.tenant);
        answer
    }

    /// The `Type/id` of every entry of a Bundle answer.
    async fn ids(&self, path: &str) -> Vec<String> {
        let bundle = self.ok("GET", path, None).await;
        bundle["entry"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|entry| {
            let resource = &entry["resource"];
            format!("{}/{}", resource["resourceType"].as_str().unwrap_or("?"), resource["id"].as_str().unwrap_or("?"))
        }).collect()
    }
}

/// What each tenant writes: a Patient `shared` (same id in both), an Observation about it with
/// a tenant-specific code, and a Patient whose name only this tenant has.
async fn populate(caller: &Caller<'_>, family: &str, code: &str) {
    caller.ok("PUT", "Patient/shared", Some(json!({ "resourceType": "Patient", "id": "shared", "name": [{ "family": family }] }))).await;
    caller.ok("PUT", "Patient/shared", Some(json!({ "resourceType": "Patient", "id": "shared", "name": [{ "family": family }], "active": true }))).await;
    let observation = json!({ "resourceType": "Observation", "id": "obs", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": code }] }, "subject": { "reference": "Patient/shared" } });
    caller.ok("PUT", "Observation/obs", Some(observation)).await;
    caller.ok("POST", "Patient", Some(json!({ "resourceType": "Patient", "identifier": [{ "system": "urn:t", "value": family }], "name": [{ "family": format!("{family}-only") }] }))).await;
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let auth = trusted_issuer().await;
    let server = TestServer::start_with(|config| {
        config.auth = auth;
        config.multi_tenancy = true;
    })
    .await;
    let one = Caller { server: &server, tenant: "clinic-1", token: tenant_token(Some("clinic-1")) };
    let two = Caller { server: &server, tenant: "clinic-2", token: tenant_token(Some("clinic-2")) };
    populate(&one, "Alpha", "1111-1").await;
    populate(&two, "Beta", "2222-2").await;

    // The URL's tenant must be the token's; ids are checked; there is no tenant-free API.
    let intruder = Caller { server: &server, tenant: "clinic-2", token: tenant_token(Some("clinic-1")) };
    let (status, answer) = intruder.send("GET", "Patient/shared", None, &[]).await;
    assert_eq!(status, 403, "{answer}");
    assert_outcome(&answer, "forbidden");
    let homeless = Caller { server: &server, tenant: "clinic-1", token: tenant_token(None) };
    assert_eq!(homeless.send("GET", "Patient", None, &[]).await.0, 403, "a token without a tenant may use none");
    let bad = Caller { server: &server, tenant: "bad.id", token: tenant_token(Some("bad.id")) };
    assert_eq!(bad.send("GET", "Patient", None, &[]).await.0, 400);
    let untenanted = server.client.get(server.url("Patient")).bearer_auth(&one.token).send().await.unwrap();
    assert_eq!(untenanted.status(), 404);
    assert_eq!(server.client.get(server.url("metadata")).send().await.unwrap().status(), 200);

    // Same ids, different resources.
    assert_eq!(one.ok("GET", "Patient/shared", None).await["name"][0]["family"], "Alpha");
    assert_eq!(two.ok("GET", "Patient/shared", None).await["name"][0]["family"], "Beta");
    assert_eq!(one.ok("GET", "Patient/shared/_history/1", None).await["name"][0]["family"], "Alpha");
    let created = one.send("POST", "Patient", Some(json!({ "resourceType": "Patient" })), &[]).await.1;
    let (status, _) = two.send("GET", &format!("Patient/{}", created["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(status, 404, "one tenant's new resource is unknown to the other");

    // Searches of every kind.
    assert_eq!(one.ids("Patient?family=Beta").await, Vec::<String>::new());
    assert_eq!(one.ids("Patient?family:exact=Alpha").await, vec!["Patient/shared"]);
    assert_eq!(one.ids("Observation?subject:Patient.family=Beta").await, Vec::<String>::new(), "chain");
    assert_eq!(one.ids("Observation?subject:Patient.family=Alpha").await, vec!["Observation/obs"]);
    assert_eq!(one.ids("Patient?_has:Observation:subject:code=2222-2").await, Vec::<String>::new(), "_has");
    assert_eq!(one.ids("Patient?_has:Observation:subject:code=1111-1").await, vec!["Patient/shared"]);
    let included = one.ok("GET", "Observation?_include=Observation:subject", None).await;
    let included: Vec<&str> = included["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["name"][0]["family"].as_str()).collect();
    assert_eq!(included, vec!["Alpha"], "_include");
    let revincluded = one.ok("GET", "Patient?_id=shared&_revinclude=Observation:subject", None).await;
    let codes: Vec<&str> = revincluded["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["code"]["coding"][0]["code"].as_str()).collect();
    assert_eq!(codes, vec!["1111-1"], "_revinclude");
    assert_eq!(one.ids("?_type=Patient,Observation&_count=100").await.len(), 4, "system search: 3 Patients and 1 Observation");
    assert_eq!(one.ids("Patient/shared/Observation").await, vec!["Observation/obs"], "compartment");
    let everything = one.ok("GET", "Patient/shared/$everything", None).await;
    assert!(everything.to_string().contains("1111-1") && !everything.to_string().contains("2222-2") && !everything.to_string().contains("Beta"));

    // History at every level.
    let history = one.ok("GET", "_history?_count=100", None).await;
    assert!(!history.to_string().contains("Beta") && !history.to_string().contains("2222-2"), "system history");
    assert_eq!(history["entry"].as_array().unwrap().len(), 5, "clinic-1's five versions");
    assert_eq!(one.ok("GET", "Patient/_history", None).await["entry"].as_array().unwrap().len(), 4);
    let instance = one.ok("GET", "Patient/shared/_history", None).await;
    assert!(instance.to_string().contains("Alpha") && !instance.to_string().contains("Beta"));

    // Conditional operations match only the tenant's own resources.
    let (status, _) = one.send("POST", "Patient", Some(json!({ "resourceType": "Patient", "name": [{ "family": "Beta" }] })), &[("if-none-exist", "identifier=urn:t|Beta")]).await;
    assert_eq!(status, 201, "clinic-2's Beta does not count in clinic-1");
    one.ok("DELETE", "Patient?identifier=urn:t|Alpha", None).await;
    assert_eq!(one.ids("Patient?identifier=urn:t|Alpha").await.len(), 0, "deleted in clinic-1");
    assert_eq!(two.ids("Patient?identifier=urn:t|Beta").await.len(), 1, "clinic-2's Beta is still there");

    // A transaction in one tenant referring to the other's resource by id finds only its own.
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "cross" }, "subject": { "reference": format!("Patient/{}", created["id"].as_str().unwrap()) } },
          "request": { "method": "POST", "url": "Observation" } },
        { "request": { "method": "GET", "url": "Patient/shared" } },
    ]});
    let answer = two.ok("POST", "", Some(bundle)).await;
    assert_eq!(answer["entry"][1]["resource"]["name"][0]["family"], "Beta", "a bundle's read runs in its tenant");
    let cross = two.ok("GET", "Observation?code:text=cross&_include=Observation:subject", None).await;
    assert_eq!(cross["entry"].as_array().unwrap().len(), 1, "the reference to clinic-1's Patient includes nothing: {cross}");
    let conditional_reference = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "x" }, "subject": { "reference": "Patient?identifier=urn:t|Alpha" } },
          "request": { "method": "POST", "url": "Observation" } },
    ]});
    assert_eq!(two.send("POST", "", Some(conditional_reference), &[]).await.0, 412, "clinic-1's Alpha is no match in clinic-2");

    // Links name the tenant.
    let page = one.ok("GET", "Patient?_count=1", None).await;
    let next = page["link"].as_array().unwrap().iter().find(|link| link["relation"] == "next").unwrap()["url"].as_str().unwrap().to_string();
    assert!(next.contains("/tenant/clinic-1/Patient?"), "{next}");
    assert!(page["entry"][0]["fullUrl"].as_str().unwrap().contains("/tenant/clinic-1/Patient/"));

    // An export holds the tenant's own resources; the other tenant cannot poll it.
    let kick_off = server
        .client
        .get(format!("{}/tenant/clinic-1/$export?_type=Patient,Observation", server.base))
        .bearer_auth(&one.token)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(kick_off.status(), 202);
    let status_url = kick_off.headers()["content-location"].to_str().unwrap().to_string();
    assert!(status_url.contains("/tenant/clinic-1/$export-status/"), "{status_url}");
    let job = status_url.rsplit('/').next().unwrap().to_string();
    let manifest: Value = loop {
        let response = server.client.get(&status_url).bearer_auth(&one.token).send().await.unwrap();
        match response.status().as_u16() {
            202 => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            200 => break response.json().await.unwrap(),
            other => panic!("export status {other}"),
        }
    };
    let mut exported = String::new();
    for file in manifest["output"].as_array().unwrap() {
        exported.push_str(&reqwest::get(file["url"].as_str().unwrap()).await.unwrap().text().await.unwrap());
    }
    assert!(exported.contains("Alpha") && exported.contains("1111-1"), "{exported}");
    assert!(!exported.contains("Beta-only") && !exported.contains("2222-2"), "no clinic-2 resource is exported: {exported}");
    assert_eq!(two.send("GET", &format!("$export-status/{job}"), None, &[]).await.0, 404, "clinic-2 cannot see clinic-1's export");
    server.stop().await;
}
