//! A real server on 127.0.0.1:0 over a temporary data directory, and a client for it.

#![allow(dead_code)]

pub mod tokens;

use std::time::Duration;

use fhir_server::Config;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    /// The FHIR base URL, e.g. `http://127.0.0.1:41234/fhir`.
    pub base: String,
    pub client: reqwest::Client,
    pub data: tempfile::TempDir,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with `adjust`ed settings: embedded, or in AWS mode on the stand-ins when
    /// `FHIR_TEST_BACKEND=aws` (the test script runs the HTTP tests both ways).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = Config { data_dir: data.path().to_path_buf(), sync: fhir_server::config::SyncMode::Normal, ..Config::default() };
        let aws = aws_mode();
        if aws {
            use_aws_stand_ins(&mut config);
        }
        adjust(&mut config);
        if aws {
            fhir_server::aws::setup(&config).await.expect("set up AWS mode on the stand-ins");
        }
        Self::start_config(config, data).await
    }

    async fn start_config(config: Config, data: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let base = format!("http://{address}{}", config.base_path);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(fhir_server::serve::run(config.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        TestServer { base, client, data, config, shutdown: Some(shutdown), handle: Some(handle) }
    }

    /// A server in AWS mode on the local stand-ins, whatever `FHIR_TEST_BACKEND` says.
    pub async fn start_aws() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
        use_aws_stand_ins(&mut config);
        fhir_server::aws::setup(&config).await.expect("set up AWS mode on the stand-ins");
        Self::start_config(config, data).await
    }

    /// Sends `method path` with `body` (content type, JSON) as the holder of `token`; returns
    /// the status and the body (`null` when not JSON).
    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<(&str, Value)>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.request(method.parse().unwrap(), self.url(path)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// Creates a resource and returns its JSON as stored.
    pub async fn create(&self, resource: Value) -> Value {
        let resource_type = resource["resourceType"].as_str().expect("resourceType").to_string();
        let response = self.post_json(&resource_type, &resource).await;
        assert_eq!(response.status(), 201, "create should succeed");
        response.json().await.expect("json")
    }

    /// Stops the server and starts it again over the same data (and, in AWS mode, the same
    /// stand-in resources), with `adjust`ed settings.
    pub async fn restart(self, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        let data = self.stop().await;
        adjust(&mut config);
        Self::start_config(config, data).await
    }

    /// Stops the server gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server run");
        }
        self.data
    }
}

/// Whether the tests run the server in AWS mode (`FHIR_TEST_BACKEND=aws`).
pub fn aws_mode() -> bool {
    std::env::var("FHIR_TEST_BACKEND").is_ok_and(|backend| backend == "aws")
}

/// AWS mode on the stand-ins (`scripts/test` starts moto and osmem-server), with tables, bucket,
/// stream and indexes of its own.
fn use_aws_stand_ins(config: &mut Config) {
    let moto = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let opensearch = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL is not set: run the tests with scripts/test");
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    // Spread over regions: moto copies a region's tables on every transaction.
    let regions = ["eu-north-1", "eu-south-1", "ap-east-1", "me-south-1", "af-south-1", "il-central-1"];
    config.backend = fhir_server::config::BackendKind::Aws;
    let region = regions[unique.as_bytes()[0] as usize % regions.len()];
    config.aws = fhir_server::config::AwsConfig::isolated(&moto, &opensearch, &unique, region);
}

/// The JSON body of a response, with its status checked first.
pub async fn json_with_status(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// Asserts an OperationOutcome with at least one issue of the given code.
pub fn assert_outcome(body: &Value, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "expected an OperationOutcome: {body}");
    let issues = body["issue"].as_array().expect("issues");
    assert!(issues.iter().any(|issue| issue["code"] == code), "expected an issue with code {code}: {body}");
}

pub fn patient(family: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{ "family": family, "given": ["Ada"] }],
        "gender": "female",
        "birthDate": "1990-01-02"
    })
}
