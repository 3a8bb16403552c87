//! The job store behaviour suite on SQLite and on DynamoDB (moto, started by `scripts/test`).

use aws_config::{BehaviorVersion, Region};
use export_worker::dynamodb::{create_table, DynamoJobStore};
use export_worker::sqlite::SqliteJobStore;

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open(&dir.path().join("exports.db")).unwrap();
    export_worker::suite::run(&store).await;
}

#[tokio::test]
async fn dynamodb_store() {
    let endpoint = std::env::var("FHIR_TEST_AWS_ENDPOINT").expect("FHIR_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, which starts moto_server");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("exports-{}", uuid::Uuid::new_v4().simple());
    create_table(&client, &table).await.unwrap();
    export_worker::suite::run(&DynamoJobStore::new(client, table)).await;
}
