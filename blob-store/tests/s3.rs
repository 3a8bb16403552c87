//! The blob store suite on S3 (moto: `scripts/test` starts it and sets `FHIR_TEST_AWS_ENDPOINT`),
//! and its presigned URLs, used with a plain HTTP client.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use blob_store::s3::S3BlobStore;
use blob_store::BlobStore;

async fn client() -> aws_sdk_s3::Client {
    let endpoint = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, which starts moto_server");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

async fn fresh() -> (Arc<dyn BlobStore>, ()) {
    let client = client().await;
    let bucket = format!("blobs-{}", uuid::Uuid::new_v4().simple());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    (Arc::new(S3BlobStore::new(client, bucket)), ())
}

blob_store::blob_store_suite!(fresh);

#[tokio::test]
async fn presigned_urls_upload_and_download_without_credentials() {
    let (store, _) = fresh().await;
    let http = reqwest::Client::new();
    let upload = store.upload_url("binary/t1/x-ray.png", "image/png", Duration::from_secs(300)).await.unwrap();
    assert!(upload.url.contains("X-Amz-Signature="), "a presigned URL: {}", upload.url);
    let mut request = http.put(&upload.url).body(vec![1u8, 2, 3, 4]);
    for (name, value) in &upload.headers {
        request = request.header(name, value);
    }
    assert!(request.send().await.unwrap().status().is_success());
    let (content_type, size, bytes) = blob_store::suite::read_all(store.as_ref(), "binary/t1/x-ray.png").await.unwrap();
    assert_eq!((content_type.as_str(), size, bytes), ("image/png", 4, vec![1, 2, 3, 4]));
    let download = store.download_url("binary/t1/x-ray.png", Duration::from_secs(300)).await.unwrap();
    let fetched = http.get(&download.url).send().await.unwrap();
    assert!(fetched.status().is_success());
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), vec![1, 2, 3, 4]);
}
