//! The worker over a real SQLite log and history projection and a local blob directory: an
//! export holds exactly the versions current at its position (not later updates, creates or
//! deletes), split into files by size; a worker stopped mid-job is resumed by another without
//! losing or repeating a resource; a cancelled job's files are removed; the Patient compartment
//! and `_typeFilter` choose resources.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use blob_store::local::{LocalBlobStore, UrlSigner};
use blob_store::BlobStore;
use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use export_worker::sqlite::SqliteJobStore;
use export_worker::{ExportJob, JobState, JobStore, Plan, Progress, Settings, SnapshotSource, Worker};
use futures::StreamExt;
use projector_history::HistoryStore;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

const TENANT: &str = "t1";

/// The history store as a snapshot source; counts pages, and can stop a worker after some.
struct History {
    store: Arc<HistoryStore>,
    pages: AtomicUsize,
    stop_after: Option<(usize, watch::Sender<bool>)>,
}

#[async_trait]
impl SnapshotSource for History {
    async fn wait_for(&self, position: u64, _timeout: Duration) -> bool {
        self.store.checkpoint() >= position
    }

    async fn live_at(&self, tenant: &str, resource_type: &str, as_of: u64, since_ms: Option<i64>, after: u64, limit: usize) -> Result<Vec<u64>, String> {
        let pages = self.pages.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((after_pages, stop)) = &self.stop_after {
            if pages >= *after_pages {
                let _ = stop.send(true);
            }
        }
        self.store.live_at(tenant, resource_type, as_of, since_ms, after, limit).map_err(|error| error.to_string())
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<SqliteEventLog>,
    history: Arc<HistoryStore>,
    blobs: Arc<LocalBlobStore>,
    store: Arc<SqliteJobStore>,
    /// Version of every resource current at `as_of`, and its content marker.
    expected: BTreeMap<String, u64>,
    as_of: u64,
}

async fn write(log: &SqliteEventLog, resource: Value, version: u64, operation: Operation) {
    let key = StreamKey::new(TENANT, resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
    let expected = if version == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version - 1) };
    let mut body = resource.clone();
    body["meta"] = json!({ "versionId": version.to_string() });
    let body = if operation == Operation::Delete { Bytes::new() } else { Bytes::from(serde_json::to_vec(&body).unwrap()) };
    let batch = AppendBatch {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        actor: "test".into(),
        recorded_at: fhir_core::instant::now(),
        events: vec![NewEvent { key, expected, operation, body }],
    };
    log.append(batch).await.unwrap();
}

fn patient(id: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "name": [{ "family": format!("Family {id}") }] })
}

fn observation(id: &str, patient: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category }] }],
        "code": { "text": "x".repeat(200) },
        "subject": { "reference": format!("Patient/{patient}") }
    })
}

/// 20 Patients with 3 Observations each, some updated and some deleted before `as_of`; then
/// updates, creates and deletes after it.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() };
    let log = Arc::new(SqliteEventLog::open(dir.path().join("events.db"), options).unwrap());
    let mut expected = BTreeMap::new();
    for p in 0..20 {
        let id = format!("p{p}");
        write(&log, patient(&id), 1, Operation::Create).await;
        expected.insert(format!("Patient/{id}"), 1);
        for o in 0..3 {
            let oid = format!("o{p}-{o}");
            let category = if o == 0 { "laboratory" } else { "vital-signs" };
            write(&log, observation(&oid, &id, category), 1, Operation::Create).await;
            expected.insert(format!("Observation/{oid}"), 1);
        }
    }
    write(&log, patient("p3"), 2, Operation::Update).await;
    expected.insert("Patient/p3".into(), 2);
    write(&log, observation("o4-1", "p4", "vital-signs"), 2, Operation::Delete).await;
    expected.remove("Observation/o4-1");
    let as_of = log.head().await.unwrap();
    // After the snapshot: none of this may be exported.
    write(&log, patient("p5"), 2, Operation::Update).await;
    write(&log, patient("late"), 1, Operation::Create).await;
    write(&log, observation("o6-0", "p6", "laboratory"), 2, Operation::Delete).await;
    let history = Arc::new(HistoryStore::open(&dir.path().join("history.db")).unwrap());
    history.apply(&log.read_from(0, 100_000).await.unwrap()).unwrap();
    let blobs = Arc::new(LocalBlobStore::new(dir.path().join("blobs"), UrlSigner::new(&[1; 32]).unwrap(), "http://localhost/_blob"));
    let store = Arc::new(SqliteJobStore::open(&dir.path().join("exports.db")).unwrap());
    World { _dir: dir, log, history, blobs, store, expected, as_of }
}

fn job(world: &World, id: &str, plan: Plan) -> ExportJob {
    ExportJob {
        id: id.into(),
        tenant: TENANT.into(),
        owner: "owner".into(),
        request: "http://localhost/fhir/$export".into(),
        state: JobState::Accepted,
        as_of: world.as_of,
        transaction_time: "2024-01-01T00:00:00Z".into(),
        plan,
        progress: Progress::default(),
        output: Vec::new(),
        error: None,
        created_ms: 1,
        finished_ms: None,
    }
}

fn worker(world: &World, id: &str, source: History, max_file_bytes: u64) -> Worker {
    Worker {
        id: id.into(),
        store: world.store.clone(),
        source: Arc::new(source),
        log: world.log.clone(),
        blobs: world.blobs.clone(),
        settings: Settings { page_size: 7, max_file_bytes, lease: Duration::from_millis(1), ..Settings::default() },
        wake: Arc::new(Notify::new()),
    }
}

fn source(world: &World, stop_after: Option<(usize, watch::Sender<bool>)>) -> History {
    History { store: world.history.clone(), pages: AtomicUsize::new(0), stop_after }
}

/// Every resource in the job's files: `Type/id` → the versions seen (one per line).
async fn exported(world: &World, job: &ExportJob) -> HashMap<String, Vec<u64>> {
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for file in &job.output {
        let blob = world.blobs.get(&file.key).await.unwrap().expect("the file exists");
        assert_eq!(blob.content_type, "application/fhir+ndjson");
        let bytes: Vec<u8> = blob.body.map(|chunk| chunk.unwrap().to_vec()).concat().await;
        assert_eq!(bytes.len() as u64, file.bytes);
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
        assert_eq!(lines.len() as u64, file.count);
        for line in lines {
            let resource: Value = serde_json::from_slice(line).unwrap();
            assert_eq!(resource["resourceType"], file.resource_type);
            let name = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
            seen.entry(name).or_default().push(resource["meta"]["versionId"].as_str().unwrap().parse().unwrap());
        }
    }
    seen
}

fn assert_exactly(seen: &HashMap<String, Vec<u64>>, expected: &BTreeMap<String, u64>) {
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for (name, versions) in seen {
        assert_eq!(versions.len(), 1, "{name} is exported once, not {versions:?}");
        got.insert(name.clone(), versions[0]);
    }
    assert_eq!(&got, expected, "the export holds exactly the versions current at its position");
}

fn system_plan() -> Plan {
    Plan { types: vec!["Patient".into(), "Observation".into()], ..Plan::default() }
}

#[tokio::test]
async fn an_export_is_the_snapshot_at_its_position_split_by_size() {
    let world = world().await;
    world.store.create(&job(&world, "j1", system_plan()), 5).await.unwrap();
    let (_stop, stopped) = watch::channel(false);
    let worker = worker(&world, "w1", source(&world, None), 2_000);
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    assert!(worker.run_job(claimed, &stopped).await);
    let done = world.store.get(TENANT, "j1").await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert!(done.output.len() > 4, "files are split by size: {}", done.output.len());
    assert!(done.output.iter().all(|file| file.bytes < 2_000 + 1_000), "a file ends at the first resource past the size");
    assert_eq!(done.progress.exported, world.expected.len() as u64);
    assert_exactly(&exported(&world, &done).await, &world.expected);
}

#[tokio::test]
async fn a_stopped_job_is_resumed_by_another_worker_without_loss_or_repeats() {
    let world = world().await;
    world.store.create(&job(&world, "j2", system_plan()), 5).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    // The first worker stops after 9 pages: some files finished, one half written.
    let first = worker(&world, "w1", source(&world, Some((9, stop))), 1_500);
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    assert!(!first.run_job(claimed, &stopped).await, "stopped, not ended");
    let halfway = world.store.get(TENANT, "j2").await.unwrap().unwrap();
    assert_eq!(halfway.state, JobState::Running);
    assert!(!halfway.output.is_empty() && halfway.progress.exported < world.expected.len() as u64, "{:?}", halfway.progress);

    // Another worker takes the job once the lease is over, and finishes it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (_stop, running) = watch::channel(false);
    let second = worker(&world, "w2", source(&world, None), 1_500);
    let claimed = world.store.claim("w2", export_worker::worker::now_ms(), export_worker::worker::now_ms() + 60_000).await.unwrap().unwrap();
    assert_eq!(claimed.progress, halfway.progress, "it resumes where the first left off");
    assert!(second.run_job(claimed, &running).await);
    let done = world.store.get(TENANT, "j2").await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    let mut keys: Vec<&str> = done.output.iter().map(|file| file.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), done.output.len(), "file names are not reused");
    assert_exactly(&exported(&world, &done).await, &world.expected);
}

#[tokio::test]
async fn a_cancelled_job_stops_and_its_files_are_removed() {
    let world = world().await;
    world.store.create(&job(&world, "j3", system_plan()), 5).await.unwrap();
    let (_stop, stopped) = watch::channel(false);
    let worker = worker(&world, "w1", source(&world, None), 1_000);
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    assert!(worker.run_job(claimed, &stopped).await);
    let done = world.store.get(TENANT, "j3").await.unwrap().unwrap();
    let first_file = done.output[0].key.clone();
    assert!(world.blobs.get(&first_file).await.unwrap().is_some());
    assert!(world.store.cancel(TENANT, "j3").await.unwrap());
    worker.sweep().await.unwrap();
    assert!(world.blobs.get(&first_file).await.unwrap().is_none(), "the files are gone");
    assert!(world.store.get(TENANT, "j3").await.unwrap().is_none(), "and so is the job");

    // Cancelled while running: the worker stops at its next page.
    world.store.create(&job(&world, "j4", system_plan()), 5).await.unwrap();
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    world.store.cancel(TENANT, "j4").await.unwrap();
    assert!(worker.run_job(claimed, &stopped).await, "it ends");
    assert_eq!(world.store.get(TENANT, "j4").await.unwrap().unwrap().state, JobState::Cancelled);
}

#[tokio::test]
async fn the_patient_compartment_and_type_filters_choose_resources() {
    let world = world().await;
    let mut type_filters = BTreeMap::new();
    type_filters.insert("Observation".to_string(), vec!["category=laboratory".to_string()]);
    let plan = Plan {
        types: vec!["Patient".into(), "Observation".into()],
        patient_compartment: true,
        patients: Some(vec!["p1".into(), "p2".into()]),
        type_filters,
        ..Plan::default()
    };
    world.store.create(&job(&world, "j5", plan), 5).await.unwrap();
    let (_stop, stopped) = watch::channel(false);
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    assert!(worker(&world, "w1", source(&world, None), 1 << 20).run_job(claimed, &stopped).await);
    let done = world.store.get(TENANT, "j5").await.unwrap().unwrap();
    let expected: BTreeMap<String, u64> = ["Patient/p1", "Patient/p2", "Observation/o1-0", "Observation/o2-0"].iter().map(|name| (name.to_string(), 1)).collect();
    assert_exactly(&exported(&world, &done).await, &expected);

    // A filter that cannot be run fails the job with the reason.
    let mut broken = BTreeMap::new();
    broken.insert("Observation".to_string(), vec!["subject.name=x".to_string()]);
    world.store.create(&job(&world, "j6", Plan { types: vec!["Observation".into()], type_filters: broken, ..Plan::default() }), 5).await.unwrap();
    let claimed = world.store.claim("w1", 10, 20).await.unwrap().unwrap();
    assert!(worker(&world, "w1", source(&world, None), 1 << 20).run_job(claimed, &stopped).await);
    let failed = world.store.get(TENANT, "j6").await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.error.unwrap().contains("chained"));
}
