//! Black-box tests of the search API: type, POST `_search` and system search, paging links that
//! stay consistent while writes go on, includes, totals, and how unknown parameters are reported.

mod common;

use common::{json_with_status, patient, TestServer};
use serde_json::{json, Value};

async fn search(server: &TestServer, query: &str) -> Value {
    let response = server.client.get(server.url(query)).header("prefer", "read-your-writes").send().await.unwrap();
    json_with_status(response, 200).await
}

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == relation).map(|l| l["url"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn type_search_reads_its_writes() {
    let server = TestServer::start().await;
    let smith = server.create(patient("Smith")).await;
    server.create(patient("Jones")).await;
    let bundle = search(&server, "Patient?name=smi").await;
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(ids(&bundle, "match"), vec![format!("Patient/{}", smith["id"].as_str().unwrap())]);
    assert_eq!(bundle["entry"][0]["fullUrl"], format!("{}/Patient/{}", server.base, smith["id"].as_str().unwrap()));

    let form = server
        .client
        .post(server.url("Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("prefer", "read-your-writes")
        .body("family=jones")
        .send()
        .await
        .unwrap();
    let form = json_with_status(form, 200).await;
    assert_eq!(ids(&form, "match").len(), 1);

    let count = search(&server, "Patient?_summary=count").await;
    assert_eq!(count["total"], 2);
    assert!(count.get("entry").is_none());
    let total = search(&server, "Patient?gender=female&_total=accurate").await;
    assert_eq!(total["total"], 2);
    server.stop().await;
}

#[tokio::test]
async fn paging_is_consistent_while_writes_go_on() {
    let server = TestServer::start().await;
    for n in 0..7 {
        server.create(patient(&format!("Page{n}"))).await;
    }
    let first = search(&server, "Patient?_count=3&_sort=family").await;
    assert_eq!(ids(&first, "match").len(), 3);
    // A write after the first page does not shift the later pages.
    server.create(patient("Page00")).await;
    let mut families = Vec::new();
    let mut page = first;
    loop {
        families.extend(page["entry"].as_array().unwrap().iter().map(|e| e["resource"]["name"][0]["family"].as_str().unwrap().to_string()));
        let Some(next) = link(&page, "next") else { break };
        page = json_with_status(server.client.get(next).send().await.unwrap(), 200).await;
    }
    assert_eq!(families, vec!["Page0", "Page1", "Page2", "Page3", "Page4", "Page5", "Page6"]);
    assert!(link(&page, "previous").is_some());
    // A new search sees the new write.
    assert_eq!(search(&server, "Patient?_count=100").await["entry"].as_array().unwrap().len(), 8);
    server.stop().await;
}

#[tokio::test]
async fn includes_chains_and_has() {
    let server = TestServer::start().await;
    let organization = server.create(json!({ "resourceType": "Organization", "name": "Acme Health" })).await;
    let org_id = organization["id"].as_str().unwrap().to_string();
    let mut member = patient("Member");
    member["managingOrganization"] = json!({ "reference": format!("Organization/{org_id}") });
    let member = server.create(member).await;
    let member_id = member["id"].as_str().unwrap().to_string();
    server.create(json!({
        "resourceType": "Observation", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{member_id}") }
    }))
    .await;

    let included = search(&server, &format!("Patient?_id={member_id}&_include=Patient:organization&_revinclude=Observation:subject")).await;
    assert_eq!(ids(&included, "match"), vec![format!("Patient/{member_id}")]);
    let mut extra = ids(&included, "include");
    extra.sort();
    assert_eq!(extra.len(), 2);
    assert!(extra.contains(&format!("Organization/{org_id}")));

    let chained = search(&server, "Observation?subject:Patient.organization.name=acme").await;
    assert_eq!(ids(&chained, "match").len(), 1);
    let reverse = search(&server, "Patient?_has:Observation:subject:code=http://loinc.org|8867-4").await;
    assert_eq!(ids(&reverse, "match"), vec![format!("Patient/{member_id}")]);
    let system = search(&server, "?_type=Organization,Patient&_count=10").await;
    assert_eq!(ids(&system, "match").len(), 2);
    let system = search(&server, &format!("?_type=Organization&_id={org_id}")).await;
    assert_eq!(ids(&system, "match"), vec![format!("Organization/{org_id}")]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_parameters_are_reported_or_rejected() {
    let server = TestServer::start().await;
    server.create(patient("Known")).await;
    let lenient = search(&server, "Patient?frobnicate=1&name=known").await;
    assert_eq!(ids(&lenient, "match").len(), 1);
    let outcome = lenient["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "outcome").expect("an outcome entry");
    assert!(outcome["resource"].to_string().contains("frobnicate"));
    assert!(!link(&lenient, "self").unwrap().contains("frobnicate"), "the self link shows what was applied");

    let strict = server.client.get(server.url("Patient?frobnicate=1")).header("prefer", "handling=strict").send().await.unwrap();
    assert_eq!(strict.status(), 400);
    assert_eq!(server.get("Patient?birthdate=yesterday").await.status(), 400);
    assert_eq!(server.get("Patient?name:nonsense=x").await.status(), 400);
    assert_eq!(server.get("Patient?_cursor=garbage").await.status(), 400);
    assert_eq!(server.get("Nope?name=x").await.status(), 404);
    server.stop().await;
}

/// A patient with a practitioner, an encounter and two observations (one in the encounter), and a
/// second patient with one observation: (patient id, practitioner id, encounter id).
async fn small_record(server: &TestServer) -> (String, String, String) {
    let id = |resource: &Value| resource["id"].as_str().unwrap().to_string();
    let doctor = id(&server.create(json!({ "resourceType": "Practitioner", "name": [{ "family": "House" }] })).await);
    let mut person = patient("Compartment");
    person["generalPractitioner"] = json!([{ "reference": format!("Practitioner/{doctor}") }]);
    let person = id(&server.create(person).await);
    let visit = id(&server
        .create(json!({
            "resourceType": "Encounter", "status": "finished",
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
            "subject": { "reference": format!("Patient/{person}") },
            "participant": [{ "individual": { "reference": format!("Practitioner/{doctor}") } }]
        }))
        .await);
    for (code, encounter) in [("8867-4", Some(&visit)), ("8310-5", None)] {
        let mut observation = json!({
            "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
            "subject": { "reference": format!("Patient/{person}") }
        });
        if let Some(encounter) = encounter {
            observation["encounter"] = json!({ "reference": format!("Encounter/{encounter}") });
        }
        server.create(observation).await;
    }
    let other = id(&server.create(patient("Other")).await);
    server
        .create(json!({
            "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
            "subject": { "reference": format!("Patient/{other}") }
        }))
        .await;
    (person, doctor, visit)
}

#[tokio::test]
async fn compartment_search() {
    let server = TestServer::start().await;
    let (person, doctor, visit) = small_record(&server).await;

    let observations = search(&server, &format!("Patient/{person}/Observation")).await;
    assert_eq!(ids(&observations, "match").len(), 2);
    let heart_rate = search(&server, &format!("Patient/{person}/Observation?code=http://loinc.org|8867-4&_total=accurate")).await;
    assert_eq!(heart_rate["total"], 1);
    assert!(link(&heart_rate, "self").unwrap().contains(&format!("/Patient/{person}/Observation?")));

    let mut everything_in = ids(&search(&server, &format!("Patient/{person}/*")).await, "match");
    everything_in.sort();
    assert_eq!(everything_in.len(), 4, "the patient, the encounter and two observations: {everything_in:?}");
    assert!(everything_in.contains(&format!("Encounter/{visit}")));

    // The encounter compartment holds the observation made in it; the practitioner's holds the
    // practitioner, the encounter and the patient who names them as general practitioner.
    assert_eq!(ids(&search(&server, &format!("Encounter/{visit}/Observation")).await, "match").len(), 1);
    let mut doctors = ids(&search(&server, &format!("Practitioner/{doctor}/*")).await, "match");
    doctors.sort();
    assert_eq!(doctors, {
        let mut expected = vec![format!("Encounter/{visit}"), format!("Patient/{person}"), format!("Practitioner/{doctor}")];
        expected.sort();
        expected
    });

    assert_eq!(server.get(&format!("Patient/{person}/Organization")).await.status(), 400);
    assert_eq!(server.get(&format!("Patient/{person}/Nope")).await.status(), 404);
    assert_eq!(server.get(&format!("Organization/{doctor}/Patient")).await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn patient_everything() {
    let server = TestServer::start().await;
    let (person, doctor, visit) = small_record(&server).await;

    let everything = search(&server, &format!("Patient/{person}/$everything")).await;
    let mut matched = ids(&everything, "match");
    matched.sort();
    assert_eq!(matched.len(), 4, "the patient, the encounter and two observations: {matched:?}");
    assert!(matched.contains(&format!("Patient/{person}")));
    assert!(matched.contains(&format!("Encounter/{visit}")));
    assert_eq!(ids(&everything, "include"), vec![format!("Practitioner/{doctor}")], "referenced resources come along");

    let only = search(&server, &format!("Patient/{person}/$everything?_type=Observation")).await;
    assert_eq!(ids(&only, "match").len(), 2);
    let future = search(&server, &format!("Patient/{person}/$everything?_since=2999-01-01T00:00:00Z")).await;
    assert!(ids(&future, "match").is_empty());

    // Paging follows the links.
    let mut page = search(&server, &format!("Patient/{person}/$everything?_count=3")).await;
    let mut seen = ids(&page, "match");
    while let Some(next) = link(&page, "next") {
        assert!(next.contains("/$everything?"));
        page = json_with_status(server.client.get(next).send().await.unwrap(), 200).await;
        seen.extend(ids(&page, "match"));
    }
    seen.sort();
    assert_eq!(seen, matched);

    assert_eq!(server.get("Patient/unknown/$everything").await.status(), 404);
    assert_eq!(server.get(&format!("Patient/{person}/$everything?start=2020-01-01")).await.status(), 400);
    assert_eq!(server.get(&format!("Patient/{person}/$everything?_type=Organization")).await.status(), 400);
    assert_eq!(server.get(&format!("Patient/{person}/$frobnicate")).await.status(), 404);
    server.stop().await;
}
