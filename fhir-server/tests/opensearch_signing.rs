//! With `aws.opensearch_signing`, OpenSearch requests carry an AWS SigV4 signature for the
//! service named (`es`, `aoss`), made with the usual AWS credentials; without it, none.

use std::sync::{Arc, Mutex};

use fhir_server::config::AwsConfig;

/// The `authorization` header of each request a stand-in OpenSearch got.
async fn recording_server() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(headers.get("authorization").map(|value| value.to_str().unwrap().to_string()));
            axum::Json(serde_json::json!({ "version": { "number": "2.13.0" } }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn opensearch_requests_are_signed_when_configured() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
    }
    let (url, seen) = recording_server().await;
    for (signing, expected) in [("es", Some("/es/aws4_request")), ("aoss", Some("/aoss/aws4_request")), ("none", None)] {
        let aws = AwsConfig { region: Some("eu-west-1".into()), opensearch_url: url.clone(), opensearch_signing: signing.into(), ..AwsConfig::default() };
        let clients = fhir_server::aws::clients(&aws).await;
        let index = fhir_server::aws::search_index(&aws, &clients).unwrap();
        index.client().ping().send().await.unwrap();
        let header = seen.lock().unwrap().pop().unwrap();
        match expected {
            Some(scope) => {
                let header = header.expect("a signature");
                assert!(header.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{header}");
                assert!(header.contains(&format!("/eu-west-1{scope}")), "{header}");
            }
            None => assert_eq!(header, None),
        }
    }
    let wrong = AwsConfig { opensearch_signing: "basic".into(), ..AwsConfig::default() };
    assert!(fhir_server::aws::search_index(&wrong, &fhir_server::aws::clients(&wrong).await).is_err());
}
