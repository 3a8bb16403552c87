//! The Lambda handlers invoked in-process with API Gateway and Kinesis events as AWS sends them,
//! over AWS mode on the local stand-ins (`scripts/test` starts moto and osmem-server): REST API
//! and HTTP API requests through the API (JSON, a base64 Binary, the caller's address in the
//! audit trail), the outbox relay woken twice at once, and the search projector applying a batch,
//! reporting its first failing record, and applying the rest when Lambda retries from it.
//! OpenSearch requests are SigV4-signed here, as on AWS.

use base64::Engine;
use fhir_server::config::{AwsConfig, BackendKind};
use fhir_server::Config;
use serde_json::{json, Value};

fn config() -> Config {
    let moto = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let opensearch = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL is not set: run the tests with scripts/test");
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let aws = AwsConfig {
        stream_shards: 1,
        // Requests are signed as for an AWS domain (the stand-in does not check signatures).
        opensearch_signing: "es".into(),
        ..AwsConfig::isolated(&moto, &opensearch, &unique, "ap-southeast-2")
    };
    // Searches wait for the projector's watermark, which these tests do not run: do not wait.
    Config { backend: BackendKind::Aws, aws, search_wait_ms: 0, ..Config::default() }
}

/// An API Gateway REST API (v1) proxy event.
fn rest_event(method: &str, path: &str, body: Option<&str>, base64: bool, content_type: &str) -> String {
    json!({
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": { "content-type": content_type, "accept": "application/fhir+json", "host": "api.example.org" },
        "multiValueHeaders": { "content-type": [content_type], "accept": ["application/fhir+json"], "host": ["api.example.org"] },
        "queryStringParameters": null, "multiValueQueryStringParameters": null, "pathParameters": { "proxy": path.trim_start_matches('/') },
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "resourceId": "abc123", "stage": "prod", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": { "sourceIp": "203.0.113.7", "userAgent": "test" }, "resourcePath": "/{proxy+}", "httpMethod": method,
            "apiId": "1234567890", "path": format!("/prod{path}"), "protocol": "HTTP/1.1", "requestTimeEpoch": 1700000000000u64
        },
        "body": body, "isBase64Encoded": base64
    })
    .to_string()
}

/// An API Gateway HTTP API (v2) event.
fn http_event(method: &str, path: &str, query: &str) -> String {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": { "accept": "application/fhir+json", "host": "api.example.org" },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api-id", "domainName": "api.example.org", "domainPrefix": "api",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.9", "userAgent": "test" },
            "requestId": "id", "routeKey": "$default", "stage": "$default", "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390u64
        },
        "isBase64Encoded": false
    })
    .to_string()
}

/// The API over already opened stores (the functions' `api_only` opens its own).
fn router_over(stores: &fhir_server::aws::Stores, config: &Config) -> axum::Router {
    let jobs = fhir_server::exports::aws_store(config, stores.clients.dynamodb.clone());
    let exports = command_api::state::Exports { jobs, wake: Default::default() };
    command_api::router_for(stores.api(config, stores.history_port(config), exports, command_api::state::Subscriptions::default()).unwrap())
}

async fn call(router: &axum::Router, event: &str) -> (u16, lambda_http::http::HeaderMap, Vec<u8>) {
    let request = lambda_http::request::from_str(event).expect("an API Gateway event");
    let response = lambda::api::handle(router.clone(), request).await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.into_body() {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    (status, headers, body)
}

#[tokio::test]
async fn the_api_answers_rest_and_http_api_events() {
    let config = config();
    fhir_server::aws::setup(&config).await.unwrap();
    let router = command_api::router_for(fhir_server::aws::api_only(&config).await.unwrap());

    let patient = json!({ "resourceType": "Patient", "name": [{ "family": "Lambda" }] }).to_string();
    let (status, headers, body) = call(&router, &rest_event("POST", "/fhir/Patient", Some(&patient), false, "application/fhir+json")).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert!(headers["location"].to_str().unwrap().starts_with("http://api.example.org/fhir/Patient/"));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();

    let (status, _, body) = call(&router, &http_event("GET", &format!("/fhir/Patient/{id}"), "_elements=name")).await;
    assert_eq!(status, 200);
    let read: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(read["name"][0]["family"], "Lambda");

    // A raw Binary arrives base64-encoded and goes back the same way.
    let png = vec![0x89u8, b'P', b'N', b'G', 0, 1, 2, 255];
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    let (status, _, body) = call(&router, &rest_event("POST", "/fhir/Binary", Some(&encoded), true, "image/png")).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let binary = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let mut raw = serde_json::from_str::<Value>(&http_event("GET", &format!("/fhir/Binary/{binary}"), "")).unwrap();
    raw["headers"]["accept"] = json!("image/png");
    let (status, headers, body) = call(&router, &raw.to_string()).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "image/png"), "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, png);

    // Errors are OperationOutcomes as ever, and the audit trail has each caller's address.
    let (status, _, body) = call(&router, &http_event("GET", "/fhir/Patient/nope", "")).await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["resourceType"], "OperationOutcome");
    let (_, _, body) = call(&router, &http_event("GET", "/fhir/$audit", "_count=100")).await;
    let trail = String::from_utf8_lossy(&body).to_string();
    assert!(trail.contains("203.0.113.7") && trail.contains("198.51.100.9"), "{trail}");
}

fn kinesis_event(records: &[(String, Vec<u8>)]) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(sequence, data)| {
            json!({
                "kinesis": { "kinesisSchemaVersion": "1.0", "partitionKey": "default/Patient/x", "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(data), "approximateArrivalTimestamp": 1700000000.5 },
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{sequence}"),
                "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/projector",
                "awsRegion": "ap-southeast-2", "eventSourceARN": "arn:aws:kinesis:ap-southeast-2:123456789012:stream/events"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Kinesis event")
}

/// The event as Lambda sends it for records of `shard`.
fn on_shard(mut event: aws_lambda_events::event::kinesis::KinesisEvent, shard: &str) -> aws_lambda_events::event::kinesis::KinesisEvent {
    for record in &mut event.records {
        let sequence = record.kinesis.sequence_number.clone();
        record.event_id = Some(format!("{shard}:{sequence}"));
    }
    event
}

#[tokio::test]
async fn the_search_projector_reports_its_first_failing_record_and_catches_up_on_retry() {
    let config = config();
    fhir_server::aws::setup(&config).await.unwrap();
    let stores = fhir_server::aws::Stores::open(&config).await.unwrap();
    let router = router_over(&stores, &config);
    for family in ["Alpha", "Beta", "Gamma"] {
        let patient = json!({ "resourceType": "Patient", "name": [{ "family": family }] }).to_string();
        assert_eq!(call(&router, &rest_event("POST", "/fhir/Patient", Some(&patient), false, "application/fhir+json")).await.0, 201);
    }
    let events = stores.log.read_from(0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    let mut data: Vec<Vec<u8>> = events.iter().map(|event| event_stream::record::encode(event).unwrap().to_vec()).collect();
    // The second record's body is damaged: its document cannot be made.
    let good_second = data[1].clone();
    let newline = data[1].iter().position(|b| *b == b'\n').unwrap();
    data[1].truncate(newline + 1);
    data[1].extend_from_slice(b"{not json");
    let search = lambda::projector::projection(&stores, "search").unwrap();
    let marks = lambda::projector::Marks::new(&stores, &config, search.as_ref());
    let shard = stores.clients.kinesis.list_shards().stream_name(&config.aws.stream).send().await.unwrap().shards()[0].shard_id().to_string();
    let mark = |position: u64| event_stream::record::encode_mark(position).to_vec();
    let batch = kinesis_event(&[("101".into(), data[0].clone()), ("102".into(), data[1].clone()), ("103".into(), data[2].clone()), ("104".into(), mark(3))]);
    let batch = on_shard(batch, &shard);
    let response = lambda::projector::handle(&batch, stores.log.as_ref(), search.as_ref(), &marks).await;
    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|failure| failure.item_identifier.clone()).collect();
    assert_eq!(failed, vec![Some("102".to_string())], "the first failing record");
    let found = |family: &str| {
        let event = http_event("GET", "/fhir/Patient", &format!("family={family}"));
        let router = router.clone();
        async move {
            let (_, _, body) = call(&router, &event).await;
            serde_json::from_slice::<Value>(&body).unwrap()["entry"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(found("Alpha").await, 1, "what came before it is searchable");
    assert_eq!(found("Gamma").await, 0, "what came after it waits");

    let watermark = || event_stream::consumer::watermark(&stores.clients.kinesis, &marks.leases, "opensearch", &config.aws.stream);
    assert_eq!(watermark().await.unwrap(), 0, "the mark after the failure is not recorded");

    // Lambda retries from the failed record (here, as the relay would send it again, whole).
    let retry_second = good_second.clone();
    let retry = on_shard(kinesis_event(&[("102".into(), good_second), ("103".into(), data[2].clone()), ("104".into(), mark(3))]), &shard);
    assert!(lambda::projector::handle(&retry, stores.log.as_ref(), search.as_ref(), &marks).await.batch_item_failures.is_empty());
    assert_eq!(found("Beta").await, 1);
    assert_eq!(found("Gamma").await, 1);
    // The function's progress is what the API's read-your-writes waits look at.
    assert_eq!(watermark().await.unwrap(), 3, "every shard of the stream has applied up to the mark");

    // The history function applies the same records into the history table.
    let history = lambda::projector::projection(&stores, "history").unwrap();
    let history_marks = lambda::projector::Marks::new(&stores, &config, history.as_ref());
    let whole = on_shard(kinesis_event(&[("101".into(), data[0].clone()), ("102".into(), retry_second.clone()), ("103".into(), data[2].clone()), ("104".into(), mark(3))]), &shard);
    assert!(lambda::projector::handle(&whole, stores.log.as_ref(), history.as_ref(), &history_marks).await.batch_item_failures.is_empty());
    let (status, _, body) = call(&router, &http_event("GET", "/fhir/Patient/_history", "")).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["entry"].as_array().unwrap().len(), 3, "three versions in the history");
    assert!(lambda::projector::projection(&stores, "nope").is_err());
}

/// Every record on the stream: (partition key, data).
async fn stream_records(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::new();
    let shards = kinesis.list_shards().stream_name(stream).send().await.unwrap();
    for shard in shards.shards() {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let mut next = iterator.shard_iterator().map(String::from);
        while let Some(current) = next {
            let output = kinesis.get_records().shard_iterator(current).send().await.unwrap();
            if output.records().is_empty() {
                break;
            }
            records.extend(output.records().iter().map(|record| (record.partition_key().unwrap_or_default().to_string(), record.data().as_ref().to_vec())));
            next = output.next_shard_iterator().map(String::from);
        }
    }
    records
}

#[tokio::test]
async fn the_relay_puts_every_commit_on_the_stream_even_when_woken_twice_at_once() {
    let config = config();
    fhir_server::aws::setup(&config).await.unwrap();
    let stores = fhir_server::aws::Stores::open(&config).await.unwrap();
    let router = router_over(&stores, &config);
    for n in 0..5 {
        let patient = json!({ "resourceType": "Patient", "id": format!("p{n}") }).to_string();
        assert_eq!(call(&router, &rest_event("PUT", &format!("/fhir/Patient/p{n}"), Some(&patient), false, "application/fhir+json")).await.0, 201);
    }
    // Each invocation is a process of its own: its own name on the lease.
    let relay = || {
        let leases = event_stream::Leases::new(stores.clients.dynamodb.clone(), &config.aws.leases_table, uuid::Uuid::new_v4().to_string(), std::time::Duration::from_secs(10));
        event_stream::Relay::new(stores.log.clone(), stores.clients.kinesis.clone(), &config.aws.stream, leases)
    };
    // Two invocations at once: one relays, the other waits for the lease and finds nothing left.
    let (first, second) = (relay(), relay());
    let (a, b) = tokio::join!(lambda::relay::drain(&first), lambda::relay::drain(&second));
    assert_eq!(a.unwrap() + b.unwrap(), 5, "each commit put once");
    let keys: Vec<String> = stream_records(&stores.clients.kinesis, &config.aws.stream).await.into_iter().map(|(key, _)| key).filter(|key| key != "mark").collect();
    let mut expected: Vec<String> = (0..5).map(|n| format!("default/Patient/p{n}")).collect();
    let mut got = keys.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // A later commit is relayed by the next invocation: the lease was released.
    let patient = json!({ "resourceType": "Patient", "id": "p5" }).to_string();
    assert_eq!(call(&router, &rest_event("PUT", "/fhir/Patient/p5", Some(&patient), false, "application/fhir+json")).await.0, 201);
    let started = std::time::Instant::now();
    assert_eq!(lambda::relay::drain(&relay()).await.unwrap(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "no wait for a lease");
}
