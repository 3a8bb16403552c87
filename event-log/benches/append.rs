//! Append throughput of the embedded log: N concurrent appenders, each appending single-event
//! creates of a ~1 KiB body as fast as the log acknowledges them.
//!
//! `cargo bench -p event-log --bench append [-- SECONDS]`. The file goes to a temporary directory
//! under `EVENT_LOG_BENCH_DIR` (default: the system temp dir); put it on the disk you care about,
//! since fsync cost is a large part of what this measures. Prints a table; asserts nothing.
//!
//! Ids matter: every event adds one entry to the stream index, and an index page changed by a
//! group is written to the WAL whole. Time-ordered ids (what the server should generate) land on
//! the same few pages; random ids (client-chosen UUIDs) dirty one page per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug)]
enum Ids {
    /// Increasing in creation order, like a time-ordered id.
    Ordered,
    /// Uniformly spread, like a random UUID.
    Random,
}

struct Scenario {
    appenders: usize,
    synchronous: Synchronous,
    ids: Ids,
}

struct Row {
    events_per_second: f64,
    events_per_group: f64,
    p50: Duration,
    p99: Duration,
}

fn new_id(ids: Ids, counter: &AtomicU64) -> String {
    let number = counter.fetch_add(1, Ordering::Relaxed);
    match ids {
        Ids::Ordered => format!("{number:020}"),
        Ids::Random => hex::encode(&Sha256::digest(number.to_be_bytes())[..16]),
    }
}

fn body(id: &str) -> Bytes {
    let padding = "x".repeat(900);
    Bytes::from(format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"versionId":"1"}},"text":{{"div":"{padding}"}}}}"#
    ))
}

async fn run(scenario: &Scenario, duration: Duration) -> Row {
    let base = std::env::var_os("EVENT_LOG_BENCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir);
    let directory = tempfile::tempdir_in(base).unwrap();
    let options = SqliteOptions { synchronous: scenario.synchronous, ..SqliteOptions::default() };
    let log = Arc::new(SqliteEventLog::open(directory.path().join("events.db"), options).unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    let ids = scenario.ids;

    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..scenario.appenders)
        .map(|_| {
            let log = Arc::clone(&log);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let id = new_id(ids, &counter);
                    let batch = AppendBatch {
                        transaction_id: id.clone(),
                        actor: "bench".to_owned(),
                        recorded_at: OffsetDateTime::now_utc(),
                        events: vec![NewEvent {
                            body: body(&id),
                            key: StreamKey::new("bench", "Patient", id),
                            expected: ExpectedVersion::NoStream,
                            operation: Operation::Create,
                        }],
                    };
                    let sent = Instant::now();
                    log.append(batch).await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let stats = log.stats();
    log.close().await;

    latencies.sort_unstable();
    let percentile = |fraction: f64| latencies[((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1)];
    Row {
        events_per_second: stats.events_committed as f64 / elapsed.as_secs_f64(),
        events_per_group: stats.events_committed as f64 / stats.groups_committed.max(1) as f64,
        p50: percentile(0.50),
        p99: percentile(0.99),
    }
}

fn main() {
    let seconds: f64 = std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(3.0);
    let duration = Duration::from_secs_f64(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);

    let mut plan: Vec<Scenario> = [1, 4, 16, 32, 64]
        .into_iter()
        .map(|appenders| Scenario { appenders, synchronous: Synchronous::Full, ids: Ids::Ordered })
        .collect();
    plan.push(Scenario { appenders: 32, synchronous: Synchronous::Full, ids: Ids::Random });
    plan.push(Scenario { appenders: 32, synchronous: Synchronous::Normal, ids: Ids::Ordered });
    plan.push(Scenario { appenders: 32, synchronous: Synchronous::Normal, ids: Ids::Random });

    println!("event-log append benchmark: {seconds} s per row, {cores} cores, ~1 KiB bodies, single-event creates");
    println!(
        "{:>9} {:>11} {:>8} {:>10} {:>13} {:>10} {:>10}",
        "appenders", "synchronous", "ids", "events/s", "events/group", "p50", "p99"
    );
    for scenario in &plan {
        let row = runtime.block_on(run(scenario, duration));
        println!(
            "{:>9} {:>11} {:>8} {:>10.0} {:>13.1} {:>10.2?} {:>10.2?}",
            scenario.appenders,
            format!("{:?}", scenario.synchronous),
            format!("{:?}", scenario.ids),
            row.events_per_second,
            row.events_per_group,
            row.p50,
            row.p99
        );
    }
}
