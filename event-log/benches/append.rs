//! Append throughput of the embedded log: N concurrent appenders, each appending single-event
//! creates of a ~1 KiB body as fast as the log acknowledges them.
//!
//! `cargo bench -p event-log --bench append [-- SECONDS]`. The file goes to a temporary directory
//! under `EVENT_LOG_BENCH_DIR` (default: the system temp dir); put it on the disk you care about,
//! since fsync cost is most of what this measures. Prints a table; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_log::sqlite::{SqliteEventLog, SqliteOptions, Synchronous};
use event_log::{AppendBatch, EventLog, ExpectedVersion, NewEvent, Operation, StreamKey};
use time::OffsetDateTime;

const APPENDERS: [usize; 2] = [1, 32];

struct Row {
    appenders: usize,
    synchronous: Synchronous,
    events_per_second: f64,
    events_per_group: f64,
    p50: Duration,
    p99: Duration,
}

fn id(appender: usize, index: usize) -> String {
    match std::env::var("EL_IDS").as_deref() {
        Ok("ordered") => { static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0); format!("{:016}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) }
        Ok("random") => { let mut h = std::hash::DefaultHasher::new(); std::hash::Hash::hash(&(appender, index), &mut h); format!("{:016x}-{appender}", std::hash::Hasher::finish(&h)) }
        _ => format!("a{appender}-{index}"),
    }
}

fn body(index: usize) -> Bytes {
    let padding = "x".repeat(900);
    Bytes::from(format!(
        r#"{{"resourceType":"Patient","id":"p{index}","meta":{{"versionId":"1"}},"text":{{"div":"{padding}"}}}}"#
    ))
}

async fn run(appenders: usize, synchronous: Synchronous, duration: Duration) -> Row {
    let base = std::env::var_os("EVENT_LOG_BENCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir);
    let directory = tempfile::tempdir_in(base).unwrap();
    let options = SqliteOptions { synchronous, ..SqliteOptions::default() };
    let log = Arc::new(SqliteEventLog::open(directory.path().join("events.db"), options).unwrap());

    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..appenders)
        .map(|appender| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut index = 0;
                while Instant::now() < deadline {
                    let batch = AppendBatch {
                        transaction_id: format!("{appender}-{index}"),
                        actor: "bench".to_owned(),
                        recorded_at: OffsetDateTime::now_utc(),
                        events: vec![NewEvent {
                            key: StreamKey::new("bench", "Patient", id(appender, index)),
                            expected: ExpectedVersion::NoStream,
                            operation: Operation::Create,
                            body: body(index),
                        }],
                    };
                    let sent = Instant::now();
                    log.append(batch).await.unwrap();
                    latencies.push(sent.elapsed());
                    index += 1;
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
        appenders,
        synchronous,
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
    println!("event-log append benchmark: {seconds} s per row, {cores} cores, ~1 KiB bodies, single-event appends");
    println!(
        "{:>9} {:>11} {:>10} {:>14} {:>10} {:>10}",
        "appenders", "synchronous", "events/s", "events/group", "p50", "p99"
    );
    let mut plan: Vec<(usize, Synchronous)> =
        APPENDERS.iter().map(|&appenders| (appenders, Synchronous::Full)).collect();
    plan.push((32, Synchronous::Normal));
    for (appenders, synchronous) in plan {
        let row = runtime.block_on(run(appenders, synchronous, duration));
        println!(
            "{:>9} {:>11} {:>10.0} {:>14.1} {:>10.2?} {:>10.2?}",
            row.appenders,
            format!("{:?}", row.synchronous),
            row.events_per_second,
            row.events_per_group,
            row.p50,
            row.p99
        );
    }
}
