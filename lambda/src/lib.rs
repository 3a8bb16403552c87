//! AWS Lambda entry points over AWS mode. The same code as `fhir-server serve`; only the way
//! requests and records arrive differs:
//!
//! - [`api`]: the FHIR API behind API Gateway (REST API and HTTP API events), the router of
//!   `command_api` over the DynamoDB log, the DynamoDB history and OpenSearch
//!   (`fhir_server::aws::api_only`);
//! - [`relay`]: the outbox relay from the log table to the Kinesis stream, woken by the table's
//!   DynamoDB stream;
//! - [`projector`]: a projection (`history` or `search`) on the Kinesis stream, answering with
//!   the batch's first failing record (`event_stream::lambda`), so one bad record holds back only
//!   its own shard.
//!
//! Export jobs and subscription notifications are not Lambda functions: exports may run longer
//! than a Lambda may, and the notifier keeps ordered queues with retries; both run as long-running
//! tasks (`fhir-server export-worker`, and `serve` with `subscriptions.run_notifier`).

pub mod api;
pub mod projector;
pub mod relay;
