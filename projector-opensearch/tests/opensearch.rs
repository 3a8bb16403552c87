//! The OpenSearch projection against osmem-server (`scripts/test` starts it and sets
//! `FHIR_TEST_OPENSEARCH_URL`), and its mappings against every R4 example.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions};
use event_log::{AppendBatch, Event, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use opensearch::indices::IndicesGetMappingParts;
use opensearch::SearchParts;
use projector_opensearch::mapping::{mappings, unmapped};
use projector_opensearch::{document, OpenSearchIndex};
use serde_json::{json, Value};
use time::OffsetDateTime;

fn index() -> OpenSearchIndex {
    let url = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL is not set: run the tests with scripts/test, which starts osmem-server");
    // A prefix of its own per test: the tests share one server.
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    OpenSearchIndex::new(&url, &prefix).unwrap()
}

fn event(tenant: &str, id: &str, version: u64, operation: Operation, body: Value) -> Event {
    Event {
        position: version * 10,
        key: StreamKey::new(tenant, body["resourceType"].as_str().unwrap_or("Patient"), id),
        version,
        operation,
        recorded_at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + version as i64).unwrap(),
        transaction_id: format!("tx{version}"),
        actor: "test".into(),
        body: Bytes::from(body.to_string()),
        hash: [0; 32],
        prev_hash: [0; 32],
        envelope_version: 1,
    }
}

fn patient(id: &str, gender: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "gender": gender, "name": [{"family": "Chalmers"}]})
}

/// The documents of one alias that a nested query on `p.{param}` finds, as (id, version, deleted).
async fn find(index: &OpenSearchIndex, tenant: &str, resource_type: &str, query: Value) -> Vec<(String, u64, bool)> {
    index.refresh().await.unwrap();
    let alias = index.names().alias(tenant, resource_type);
    let response = index.client().search(SearchParts::Index(&[&alias])).body(json!({"query": query, "sort": [{"id": "asc"}]})).send().await.unwrap();
    let answer: Value = response.json().await.unwrap();
    answer["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|hit| (hit["_source"]["id"].as_str().unwrap().to_string(), hit["_source"]["version"].as_u64().unwrap(), hit["_source"]["deleted"] == true))
        .collect()
}

fn gender(code: &str) -> Value {
    json!({"nested": {"path": "p.gender", "query": {"term": {"p.gender.code": code}}}})
}

#[tokio::test]
async fn versions_never_go_backwards_and_a_delete_stays_deleted() {
    let index = index();
    let v1 = event("t1", "p1", 1, Operation::Create, patient("p1", "male"));
    let v2 = event("t1", "p1", 2, Operation::Update, patient("p1", "female"));
    let v3 = event("t1", "p1", 3, Operation::Update, patient("p1", "other"));
    index.apply(&[v1.clone(), v3.clone()]).await.unwrap();
    index.apply(std::slice::from_ref(&v2)).await.unwrap();
    index.apply(&[v1.clone(), v2.clone(), v3.clone()]).await.unwrap();
    assert_eq!(find(&index, "t1", "Patient", gender("other")).await, vec![("p1".into(), 3, false)], "late and repeated versions change nothing");
    assert!(find(&index, "t1", "Patient", gender("female")).await.is_empty());

    let v4 = event("t1", "p1", 4, Operation::Delete, json!({}));
    index.apply(&[v4]).await.unwrap();
    index.apply(&[v3]).await.unwrap();
    assert!(find(&index, "t1", "Patient", gender("other")).await.is_empty(), "a late version does not bring a deleted resource back");
    assert_eq!(find(&index, "t1", "Patient", json!({"term": {"id": "p1"}})).await, vec![("p1".into(), 4, true)], "the tombstone");
}

#[tokio::test]
async fn each_tenant_and_type_has_its_own_index_with_the_mapping_of_its_type() {
    let index = index();
    let observation = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    index
        .apply(&[
            event("Ab", "p1", 1, Operation::Create, patient("p1", "male")),
            event("ab", "p1", 1, Operation::Create, patient("p1", "female")),
            event("ab", "o1", 1, Operation::Create, observation),
        ])
        .await
        .unwrap();
    assert_eq!(find(&index, "Ab", "Patient", gender("male")).await.len(), 1);
    assert!(find(&index, "Ab", "Patient", gender("female")).await.is_empty(), "tenants differing only in case never mix");
    assert_eq!(find(&index, "ab", "Patient", gender("female")).await.len(), 1);

    let alias = index.names().alias("ab", "Observation");
    let by_subject = json!({"nested": {"path": "p.subject", "query": {"bool": {"must": [{"term": {"p.subject.type": "Patient"}}, {"term": {"p.subject.id": "p1"}}]}}}});
    assert_eq!(find(&index, "ab", "Observation", by_subject).await.len(), 1);
    let heavy = json!({"nested": {"path": "p.value-quantity", "query": {"range": {"p.value-quantity.value": {"gt": 70}}}}});
    assert_eq!(find(&index, "ab", "Observation", heavy).await.len(), 1);
    let response = index.client().indices().get_mapping(IndicesGetMappingParts::Index(&[&alias])).send().await.unwrap();
    let answer: Value = response.json().await.unwrap();
    let (_, description) = answer.as_object().unwrap().iter().next().unwrap();
    let p = &description["mappings"]["properties"]["p"]["properties"];
    assert_eq!(p["value-quantity"]["properties"]["value"]["type"], "double");
    assert_eq!(p["code-value-quantity"]["properties"]["1"]["properties"]["code"]["type"], "keyword");
    assert_eq!(description["mappings"]["dynamic"], "strict");
}

#[tokio::test]
async fn reindex_builds_the_next_generation_from_the_log_and_moves_the_aliases() {
    let index = index();
    let directory = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteEventLog::open(directory.path().join("events.db"), SqliteOptions::default()).unwrap());
    let append = |id: &str, version: u64, gender: &str| AppendBatch {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        actor: "test".into(),
        recorded_at: OffsetDateTime::now_utc(),
        events: vec![NewEvent {
            key: StreamKey::new("t1", "Patient", id),
            expected: if version == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version - 1) },
            operation: if version == 1 { Operation::Create } else { Operation::Update },
            body: Bytes::from(patient(id, gender).to_string()),
        }],
    };
    for id in ["a", "b", "c"] {
        log.append(append(id, 1, "male")).await.unwrap();
    }
    log.append(append("a", 2, "female")).await.unwrap();
    // The live projection saw only part of the log.
    index.apply(&log.read_from(0, 2).await.unwrap()).await.unwrap();
    let alias = index.names().alias("t1", "Patient");
    assert_eq!(index.current_indexes().await.unwrap()[&alias], format!("{alias}.g1"));

    let reindexed = index.reindex(log.as_ref()).await.unwrap();
    assert_eq!((reindexed.generation, reindexed.events, reindexed.indexes), (2, 4, 1));
    assert_eq!(index.current_indexes().await.unwrap()[&alias], format!("{alias}.g2"), "the alias moved");
    assert_eq!(find(&index, "t1", "Patient", gender("male")).await.iter().map(|hit| hit.0.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(find(&index, "t1", "Patient", gender("female")).await, vec![("a".into(), 2, false)]);
    let old = index.client().indices().exists(opensearch::indices::IndicesExistsParts::Index(&[&format!("{alias}.g1")])).send().await.unwrap();
    assert_eq!(old.status_code().as_u16(), 404, "the old generation is gone");

    // The stream's writes go on through the alias, into the new generation.
    log.append(append("b", 2, "female")).await.unwrap();
    index.apply(&log.read_from(4, 10).await.unwrap()).await.unwrap();
    assert_eq!(find(&index, "t1", "Patient", gender("female")).await.len(), 2);
}

fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FHIR_R4_EXAMPLES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(std::env::var_os("HOME").expect("HOME or FHIR_R4_EXAMPLES")).join(".cache/fhir-r4-examples")
}

/// The mapping describes every value extraction produces, for every example of the spec (the
/// test script fetches them; missing ones fail this test).
#[test]
fn the_mappings_describe_every_value_of_every_r4_example() {
    let directory = examples_dir();
    let files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("the R4 examples are not in {} ({error}): run scripts/fetch-examples", directory.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(files.len() >= 700, "only {} examples", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let resource: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let Some(resource_type) = resource["resourceType"].as_str() else { continue };
        let id = resource["id"].as_str().unwrap_or("x");
        let document = document::document(&event("t", id, 1, Operation::Create, resource.clone())).unwrap();
        for path in unmapped(&mappings(resource_type), &document) {
            problems.push(format!("{}: {path}", file.display()));
        }
    }
    assert!(problems.is_empty(), "{} values not in the mappings, e.g. {:?}", problems.len(), &problems[..problems.len().min(10)]);
}
