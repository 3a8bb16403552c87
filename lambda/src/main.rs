//! The Lambda function binary: `FHIR_LAMBDA_ROLE` says which function it is (`api`, the
//! default; `relay` for the outbox relay; `history` or `search` for a projector on the Kinesis
//! stream). The configuration
//! comes from `FHIR_SERVER_*` variables (and `FHIR_SERVER_CONFIG`), as for the server, and must
//! be AWS mode.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use fhir_server::config::BackendKind;
use fhir_server::Config;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().json().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).without_time().init();
    let config = Config::load(std::env::var_os("FHIR_SERVER_CONFIG").as_deref().map(std::path::Path::new)).map_err(|error| format!("configuration error: {error}"))?;
    if config.backend != BackendKind::Aws {
        return Err("the Lambda functions run in AWS mode: set FHIR_SERVER_BACKEND=aws".into());
    }
    let role = std::env::var("FHIR_LAMBDA_ROLE").unwrap_or_else(|_| "api".into());
    match role.as_str() {
        "api" => {
            let router = command_api::router_for(fhir_server::aws::api_only(&config).await?);
            lambda_http::run(service_fn(move |request| lambda::api::handle(router.clone(), request))).await
        }
        "relay" => {
            let stores = fhir_server::aws::Stores::open(&config).await?;
            let relay = Arc::new(event_stream::Relay::new(stores.log.clone(), stores.clients.kinesis.clone(), &config.aws.stream, stores.leases.clone()));
            lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
                let relay = relay.clone();
                async move {
                    let relayed = lambda::relay::drain(&relay).await?;
                    Ok::<_, lambda_runtime::Error>(serde_json::json!({ "relayed": relayed }))
                }
            }))
            .await
        }
        name => {
            let stores = fhir_server::aws::Stores::open(&config).await?;
            let projection = lambda::projector::projection(&stores, name)?;
            let marks = Arc::new(lambda::projector::Marks::new(&stores, &config, projection.as_ref()));
            let log = stores.log.clone();
            lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
                let (log, projection, marks) = (log.clone(), Arc::clone(&projection), marks.clone());
                async move { Ok::<_, lambda_runtime::Error>(lambda::projector::handle(&event.payload, log.as_ref(), projection.as_ref(), &marks).await) }
            }))
            .await
        }
    }
}
