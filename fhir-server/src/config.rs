//! The server's configuration: one struct with defaults, overridden by a TOML file, then by
//! `FHIR_SERVER_*` environment variables, then by command-line flags. Unknown keys are rejected.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Loopback by default; any other address needs authentication (see
    /// `[auth]`).
    pub listen: SocketAddr,
    /// Directory holding the event log and the projections.
    pub data_dir: PathBuf,
    /// Path prefix of the FHIR API; empty to serve at the root.
    pub base_path: String,
    /// Absolute base URL used in `Location` and `fullUrl`, when the server sits behind a proxy.
    pub public_base_url: Option<String>,
    /// Largest accepted request body in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Whether PUT may create a resource with a client-chosen id.
    pub update_create: bool,
    /// `full` fsyncs every commit group (no acknowledged write is lost even on power failure);
    /// `normal` survives a process crash but not a power failure.
    pub sync: SyncMode,
    /// Log line format: `text` or `json`.
    pub log_format: LogFormat,
    /// Longest wait, in milliseconds, for the search index to catch up with earlier writes
    /// (`Prefer: read-your-writes` searches and conditional operations).
    pub search_wait_ms: u64,
    /// `embedded` (SQLite in `data_dir`) or `aws` (DynamoDB, Kinesis, S3, OpenSearch; see `[aws]`).
    pub backend: BackendKind,
    /// Where AWS mode keeps things.
    pub aws: AwsConfig,
    /// Who may call the API.
    pub auth: AuthConfig,
    /// Every route under `[base]/tenant/{tenantId}/`, each tenant's data apart.
    pub multi_tenancy: bool,
    /// Record every request in the audit trail (`audit.db`, or `aws.audit_table`).
    pub audit: bool,
    /// Largest raw Binary upload in bytes (larger ones get 413).
    pub max_binary_bytes: u64,
    /// How long a download URL (a Binary's bytes, an export file) works, in seconds.
    pub download_url_ttl_secs: u64,
    /// The key that signs the server's own blob URLs (embedded mode), at least 32 bytes. A
    /// secret: set it through `FHIR_SERVER_BLOB_URL_SECRET`. Unset: a random key kept in
    /// `blob-url.key` in the data directory (readable by the owner only).
    #[serde(skip_serializing)]
    pub blob_url_secret: Option<String>,
    /// Bulk `$export`.
    pub export: ExportConfig,
    /// Rest-hook Subscriptions.
    pub subscriptions: SubscriptionsConfig,
    /// Implementation Guides (FHIR packages).
    pub ig: IgConfig,
}

/// Implementation Guides: packages loaded at start besides those installed in the data
/// directory (`fhir-server ig install`), and profiles every resource of a type must meet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgConfig {
    /// Package tarballs (`.tgz`) or package folders (holding `package/package.json`).
    pub packages: Vec<PathBuf>,
    /// Load the configured packages even when a package they depend on is not loaded.
    pub allow_missing_dependencies: bool,
    /// Resource type to the canonical URLs of the profiles its resources must conform to,
    /// whether or not they claim them: `required_profiles.Patient = ["http://..."]`.
    pub required_profiles: std::collections::HashMap<String, Vec<String>>,
}

/// Rest-hook Subscriptions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    /// Whether this process runs the notifier (its queue is `notifier.db` in the data directory;
    /// in AWS mode, run it in one process only).
    pub run_notifier: bool,
    /// Hosts exempt from the https rule and from the refusal of private addresses, e.g.
    /// `["127.0.0.1"]` to notify a receiver on this machine.
    pub allowed_hosts: Vec<String>,
    /// Longest wait for an endpoint's answer, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts of one notification before the subscription goes to `error`.
    pub max_attempts: u32,
    /// The first retry's wait in milliseconds; each further one doubles, up to `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Notifications in flight at once.
    pub concurrency: usize,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig { run_notifier: true, allowed_hosts: Vec::new(), timeout_ms: 10_000, max_attempts: 8, base_backoff_ms: 1_000, max_backoff_ms: 300_000, concurrency: 64 }
    }
}

impl SubscriptionsConfig {
    pub fn policy(&self) -> subscription_notifier::EndpointPolicy {
        subscription_notifier::EndpointPolicy { allowed_hosts: self.allowed_hosts.clone() }
    }

    pub fn settings(&self) -> subscription_notifier::Settings {
        subscription_notifier::Settings {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_attempts: self.max_attempts.max(1),
            base_backoff: std::time::Duration::from_millis(self.base_backoff_ms),
            max_backoff: std::time::Duration::from_millis(self.max_backoff_ms),
            concurrency: self.concurrency.max(1),
            ..subscription_notifier::Settings::default()
        }
    }
}

/// Bulk `$export` jobs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Whether this process runs export jobs (else another process with the same stores does:
    /// `fhir-server export-worker` in AWS mode).
    pub run_worker: bool,
    /// Unfinished exports one tenant may have (429 beyond).
    pub max_jobs_per_tenant: usize,
    /// An NDJSON file is closed once it holds this many bytes.
    pub max_file_bytes: u64,
    /// How long the files of a finished export are kept, in seconds.
    pub retention_secs: u64,
    /// Resources read per page of a snapshot.
    pub page_size: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig { run_worker: true, max_jobs_per_tenant: 2, max_file_bytes: 100 * 1024 * 1024, retention_secs: 24 * 3600, page_size: 1000 }
    }
}

/// Authentication. `none` accepts every caller as anonymous and is allowed only on a loopback
/// address (unless forced with `allow_remote_without_auth`); `jwt` requires a bearer token
/// signed by a key of `jwks_url`, issued by `issuer` for `audience`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The issuer's key set, e.g. `https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// The tokens' `iss`, e.g. `https://cognito-idp.REGION.amazonaws.com/POOL`.
    pub issuer: Option<String>,
    /// The tokens' `aud` (for Cognito: the app client id).
    pub audience: Option<String>,
    /// Accepted signature algorithms, of `RS256` and `ES256`.
    pub algorithms: Vec<String>,
    /// Least seconds between two fetches of the key set caused by tokens naming unknown keys.
    pub jwks_min_refresh_secs: u64,
    /// If set, every request must also carry it in `x-api-key`. A secret: set it through
    /// `FHIR_SERVER_AUTH__API_KEY`, not in a file that is committed.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Serve without authentication on a non-loopback address (with a warning).
    pub allow_remote_without_auth: bool,
    /// The claim listing a token's groups (a list, or names separated by spaces).
    pub groups_claim: String,
    /// The claim naming a token's tenant (with `multi_tenancy`, the only tenant it may use).
    pub tenant_claim: String,
    /// A TOML file of role rules (`[[group]]` tables of `interactions` and `types`); without
    /// it, `practitioner`, `non-practitioner` and `auditor` as the README describes.
    pub roles_file: Option<std::path::PathBuf>,
    /// The SMART App Launch authorization server, published at
    /// `[base]/.well-known/smart-configuration` and in the CapabilityStatement (mode `jwt`).
    pub smart: Option<SmartConfig>,
}

/// What `/.well-known/smart-configuration` says about the authorization server that issues the
/// tokens this server accepts (`issuer` and `jwks_uri` come from `[auth]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartConfig {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default = "SmartConfig::default_grant_types")]
    pub grant_types_supported: Vec<String>,
    #[serde(default = "SmartConfig::default_capabilities")]
    pub capabilities: Vec<String>,
    #[serde(default = "SmartConfig::default_scopes")]
    pub scopes_supported: Vec<String>,
    #[serde(default = "SmartConfig::default_auth_methods")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub management_endpoint: Option<String>,
}

impl SmartConfig {
    fn default_grant_types() -> Vec<String> {
        ["authorization_code", "client_credentials"].map(String::from).to_vec()
    }

    /// What this server enforces: standalone patient launch, patient/user/system scopes in v1
    /// and v2 syntax, with public and confidential clients.
    fn default_capabilities() -> Vec<String> {
        [
            "launch-standalone",
            "context-standalone-patient",
            "client-public",
            "client-confidential-symmetric",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
        ]
        .map(String::from)
        .to_vec()
    }

    fn default_scopes() -> Vec<String> {
        ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read"]
            .map(String::from)
            .to_vec()
    }

    fn default_auth_methods() -> Vec<String> {
        ["client_secret_basic", "private_key_jwt"].map(String::from).to_vec()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Jwt,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            jwks_url: None,
            issuer: None,
            audience: None,
            algorithms: vec!["RS256".into(), "ES256".into()],
            jwks_min_refresh_secs: access_control::jwks::REFRESH_AT_MOST_EVERY.as_secs(),
            api_key: None,
            allow_remote_without_auth: false,
            groups_claim: "cognito:groups".into(),
            tenant_claim: "custom:tenantId".into(),
            roles_file: None,
            smart: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Embedded,
    Aws,
}

/// AWS mode's resources. Credentials and the region come from the usual AWS sources (environment,
/// profile, instance role), never from this file; `region` and `endpoint_url` override them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    pub region: Option<String>,
    /// One endpoint for DynamoDB, Kinesis and S3 (local stand-ins such as moto).
    pub endpoint_url: Option<String>,
    pub events_table: String,
    /// Bodies larger than a DynamoDB item.
    pub bodies_bucket: String,
    pub stream: String,
    /// Shards of the stream `aws-setup` creates.
    pub stream_shards: i32,
    pub leases_table: String,
    pub history_table: String,
    /// The audit trail.
    pub audit_table: String,
    /// Binary contents and export files.
    pub blobs_bucket: String,
    /// Export jobs.
    pub exports_table: String,
    pub opensearch_url: String,
    /// How OpenSearch requests are signed: `none`, or AWS SigV4 for `es` (a domain) or `aoss`
    /// (a Serverless collection), with the usual AWS credentials.
    pub opensearch_signing: String,
    /// The start of every OpenSearch index name (lower case).
    pub index_prefix: String,
    /// Whether this process also runs the relay and the projectors (else: the API only).
    pub run_projectors: bool,
}

impl AwsConfig {
    /// AWS mode on local stand-ins (moto at `endpoint`, an OpenSearch at `opensearch_url`), every
    /// table, bucket, stream and index named after `unique`, so that tests and benchmarks never
    /// share them.
    pub fn isolated(endpoint: &str, opensearch_url: &str, unique: &str, region: &str) -> AwsConfig {
        AwsConfig {
            region: Some(region.into()),
            endpoint_url: Some(endpoint.into()),
            events_table: format!("events-{unique}"),
            bodies_bucket: format!("bodies-{unique}"),
            stream: format!("events-{unique}"),
            leases_table: format!("leases-{unique}"),
            history_table: format!("history-{unique}"),
            audit_table: format!("audit-{unique}"),
            blobs_bucket: format!("blobs-{unique}"),
            exports_table: format!("exports-{unique}"),
            opensearch_url: opensearch_url.into(),
            index_prefix: format!("x{unique}"),
            ..AwsConfig::default()
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            events_table: "fhir-events".into(),
            bodies_bucket: "fhir-bodies".into(),
            stream: "fhir-events".into(),
            stream_shards: 2,
            leases_table: "fhir-leases".into(),
            history_table: "fhir-history".into(),
            audit_table: "fhir-audit".into(),
            blobs_bucket: "fhir-blobs".into(),
            exports_table: "fhir-exports".into(),
            opensearch_url: "http://127.0.0.1:9200".into(),
            opensearch_signing: "none".into(),
            index_prefix: "fhir".into(),
            run_projectors: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            base_path: "/fhir".into(),
            public_base_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            update_create: true,
            sync: SyncMode::Full,
            log_format: LogFormat::Text,
            search_wait_ms: 5_000,
            backend: BackendKind::Embedded,
            aws: AwsConfig::default(),
            auth: AuthConfig::default(),
            multi_tenancy: false,
            audit: true,
            max_binary_bytes: 5 * 1024 * 1024 * 1024,
            download_url_ttl_secs: 3600,
            blob_url_secret: None,
            export: ExportConfig::default(),
            subscriptions: SubscriptionsConfig::default(),
            ig: IgConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the file (if given), then `FHIR_SERVER_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // `FHIR_SERVER_AWS__STREAM` sets `aws.stream`.
            .merge(Env::prefixed("FHIR_SERVER_").ignore(&["config"]).split("__"))
            .extract()
            .map_err(Box::new)
    }

    /// The `/.well-known/smart-configuration` document, when `[auth.smart]` is set.
    pub fn smart_configuration(&self) -> Option<serde_json::Value> {
        let smart = self.auth.smart.as_ref()?;
        let mut document = serde_json::json!({
            "issuer": self.auth.issuer,
            "jwks_uri": self.auth.jwks_url,
            "authorization_endpoint": smart.authorization_endpoint,
            "token_endpoint": smart.token_endpoint,
            "grant_types_supported": smart.grant_types_supported,
            "token_endpoint_auth_methods_supported": smart.token_endpoint_auth_methods_supported,
            "scopes_supported": smart.scopes_supported,
            "response_types_supported": ["code"],
            "capabilities": smart.capabilities,
            "code_challenge_methods_supported": ["S256"],
        });
        for (name, value) in [
            ("revocation_endpoint", &smart.revocation_endpoint),
            ("introspection_endpoint", &smart.introspection_endpoint),
            ("management_endpoint", &smart.management_endpoint),
        ] {
            if let Some(value) = value {
                document[name] = serde_json::Value::String(value.clone());
            }
        }
        Some(document)
    }

    pub fn api_config(&self) -> command_api::ApiConfig {
        command_api::ApiConfig {
            base_path: self.base_path.trim_end_matches('/').to_string(),
            public_base_url: self.public_base_url.clone().map(|url| url.trim_end_matches('/').to_string()),
            max_body_bytes: self.max_body_bytes,
            update_create: self.update_create,
            search_wait: std::time::Duration::from_millis(self.search_wait_ms),
            multi_tenancy: self.multi_tenancy,
            max_binary_bytes: self.max_binary_bytes,
            download_url_ttl: std::time::Duration::from_secs(self.download_url_ttl_secs),
            max_exports_per_tenant: self.export.max_jobs_per_tenant,
            export_retention: std::time::Duration::from_secs(self.export.retention_secs),
            smart_configuration: self.smart_configuration(),
            ..command_api::ApiConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's `Jail` closures return its own large error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn file_and_environment_override_defaults_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("server.toml", "listen = \"127.0.0.1:9999\"\nmax_body_bytes = 1000\n")?;
            jail.set_env("FHIR_SERVER_MAX_BODY_BYTES", "2000");
            let config = Config::load(Some(std::path::Path::new("server.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 9999);
            assert_eq!(config.max_body_bytes, 2000);
            assert_eq!(config.base_path, "/fhir");
            jail.create_file("bad.toml", "lisen = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(std::path::Path::new("bad.toml"))).is_err());
            Ok(())
        });
    }
}
