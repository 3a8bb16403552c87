//! Cold start of the API function: the release `lambda` binary started as Lambda starts it, with
//! a stand-in of the Lambda Runtime API on this machine, timed from the process's start to its
//! first request for an invocation (`GET /2018-06-01/runtime/invocation/next`), which is when its
//! init phase ends. AWS mode runs against the local stand-ins (start them as `scripts/test` does
//! and export `FHIR_TEST_AWS_ENDPOINT` and `FHIR_TEST_OPENSEARCH_URL`), so AWS's own network
//! round trips are not in the figure.
//!
//! `cargo bench -p lambda --bench cold_start [-- --runs 10]`

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhir_server::config::{AwsConfig, BackendKind};
use fhir_server::Config;

fn runs() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|pair| pair[0] == "--runs").map_or(10, |pair| pair[1].parse().expect("--runs takes a number"))
}

fn main() {
    let moto = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT: start the stand-ins first");
    let opensearch = std::env::var("FHIR_TEST_OPENSEARCH_URL").expect("FHIR_TEST_OPENSEARCH_URL: start the stand-ins first");
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let aws = AwsConfig::isolated(&moto, &opensearch, &unique, "eu-west-3");
    let config = Config { backend: BackendKind::Aws, aws: aws.clone(), ..Config::default() };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(fhir_server::aws::setup(&config)).expect("set up AWS mode on the stand-ins");

    // The Runtime API stand-in: notes when the function first asks for work, and holds it.
    let asked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let port = runtime.block_on(async {
        let asked = asked.clone();
        let app = axum::Router::new().route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(move || {
                let asked = asked.clone();
                async move {
                    asked.lock().unwrap().get_or_insert_with(Instant::now);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    });

    let mut inits = Vec::new();
    for _ in 0..runs() {
        *asked.lock().unwrap() = None;
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lambda"))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "fhir-api")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("FHIR_LAMBDA_ROLE", "api")
            .env("FHIR_SERVER_BACKEND", "aws")
            .env("FHIR_SERVER_AWS__REGION", aws.region.clone().unwrap())
            .env("FHIR_SERVER_AWS__ENDPOINT_URL", &moto)
            .env("FHIR_SERVER_AWS__EVENTS_TABLE", &aws.events_table)
            .env("FHIR_SERVER_AWS__BODIES_BUCKET", &aws.bodies_bucket)
            .env("FHIR_SERVER_AWS__HISTORY_TABLE", &aws.history_table)
            .env("FHIR_SERVER_AWS__LEASES_TABLE", &aws.leases_table)
            .env("FHIR_SERVER_AWS__AUDIT_TABLE", &aws.audit_table)
            .env("FHIR_SERVER_AWS__EXPORTS_TABLE", &aws.exports_table)
            .env("FHIR_SERVER_AWS__BLOBS_BUCKET", &aws.blobs_bucket)
            .env("FHIR_SERVER_AWS__STREAM", &aws.stream)
            .env("FHIR_SERVER_AWS__OPENSEARCH_URL", &opensearch)
            .env("FHIR_SERVER_AWS__INDEX_PREFIX", &aws.index_prefix)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the function");
        let deadline = Instant::now() + Duration::from_secs(30);
        let init = loop {
            if let Some(at) = *asked.lock().unwrap() {
                break at - started;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the function exited during init: {status}");
            }
            assert!(Instant::now() < deadline, "the function never asked for an invocation");
            std::thread::sleep(Duration::from_millis(1));
        };
        let _ = child.kill();
        let _ = child.wait();
        inits.push(init.as_secs_f64() * 1000.0);
    }
    inits.sort_by(f64::total_cmp);
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_lambda")).map_or(0, |metadata| metadata.len());
    println!("\nAPI function init (process start to its first /invocation/next), release build, x86_64, {} cores, binary {:.0} MB", std::thread::available_parallelism().map_or(0, |n| n.get()), binary as f64 / 1e6);
    println!("| runs | min ms | median ms | max ms |");
    println!("|---|---|---|---|");
    println!("| {} | {:.1} | {:.1} | {:.1} |", inits.len(), inits[0], inits[inits.len() / 2], inits[inits.len() - 1]);
}
