//! The audit behaviour suite on SQLite and on DynamoDB (moto, started by `scripts/test`).

use audit_log::dynamodb::DynamoAuditStore;
use audit_log::sqlite::SqliteAuditStore;

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    audit_log::suite::run(&SqliteAuditStore::open(&dir.path().join("audit.db")).unwrap()).await;
}

#[tokio::test]
async fn dynamodb_store() {
    let endpoint = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-3"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("audit-{}", uuid::Uuid::new_v4().simple());
    DynamoAuditStore::create_table(&client, &table).await.unwrap();
    audit_log::suite::run(&DynamoAuditStore::new(client, table)).await;
}
