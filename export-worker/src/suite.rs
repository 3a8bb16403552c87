//! The behaviour every [`JobStore`] has; each implementation's test runs [`run`] on a fresh
//! store.

use crate::job::{ExportJob, JobState, Plan, Progress};
use crate::store::{JobStore, StoreError};

pub fn job(tenant: &str, id: &str, created_ms: i64) -> ExportJob {
    ExportJob {
        id: id.into(),
        tenant: tenant.into(),
        owner: "owner".into(),
        request: "http://localhost/fhir/$export".into(),
        state: JobState::Accepted,
        as_of: 7,
        transaction_time: "2024-01-01T00:00:00Z".into(),
        plan: Plan { types: vec!["Patient".into()], ..Plan::default() },
        progress: Progress::default(),
        output: Vec::new(),
        error: None,
        created_ms,
        finished_ms: None,
    }
}

pub async fn run(store: &dyn JobStore) {
    // Create, get, and the per-tenant limit of unfinished jobs.
    store.create(&job("t1", "a", 1), 2).await.unwrap();
    store.create(&job("t1", "b", 2), 2).await.unwrap();
    assert!(matches!(store.create(&job("t1", "c", 3), 2).await, Err(StoreError::Busy(2))));
    store.create(&job("t2", "c", 3), 2).await.expect("another tenant has its own limit");
    assert_eq!(store.get("t1", "a").await.unwrap().unwrap(), job("t1", "a", 1));
    assert!(store.get("t2", "a").await.unwrap().is_none(), "jobs are per tenant");

    // Claims: the oldest first, one worker at a time until the lease runs out.
    let first = store.claim("w1", 100, 200).await.unwrap().expect("a job to take");
    assert_eq!(first.id, "a");
    let second = store.claim("w2", 100, 200).await.unwrap().expect("the next one");
    assert_eq!(second.id, "b");
    let third = store.claim("w3", 100, 200).await.unwrap().expect("the other tenant's");
    assert_eq!((third.tenant.as_str(), third.id.as_str()), ("t2", "c"));
    assert!(store.claim("w4", 150, 250).await.unwrap().is_none(), "all are held");
    assert_eq!(store.claim("w1", 150, 250).await.unwrap().map(|job| job.id), Some("a".into()), "a worker takes its own back");
    let mut running = first;
    running.state = JobState::Running;
    running.progress.after = 5;
    store.save(&running, 300).await.unwrap();
    assert_eq!(store.get("t1", "a").await.unwrap().unwrap().progress.after, 5);
    assert!(store.claim("w4", 250, 400).await.unwrap().is_some_and(|job| job.id != "a"), "a renewed lease holds");
    let taken_over = store.claim("w5", 301, 500).await.unwrap();
    assert!(taken_over.is_some(), "a lapsed lease is taken over");

    // A cancelled job cannot be saved again; it is reported cancelled.
    assert!(store.cancel("t1", "b").await.unwrap());
    assert!(!store.cancel("t1", "nope").await.unwrap());
    let mut late = second;
    late.state = JobState::Running;
    assert!(matches!(store.save(&late, 900).await, Err(StoreError::Cancelled)));
    assert_eq!(store.get("t1", "b").await.unwrap().unwrap().state, JobState::Cancelled);
    store.create(&job("t1", "d", 4), 2).await.expect("a cancelled job does not count against the limit");

    // Finished jobs expire after their time; cancelled ones at once.
    running.state = JobState::Completed;
    running.finished_ms = Some(1_000);
    store.save(&running, 0).await.unwrap();
    let mut expired: Vec<String> = store.expired(500).await.unwrap().into_iter().map(|job| job.id).collect();
    expired.sort();
    assert_eq!(expired, vec!["b"], "only the cancelled one before the completed one's time");
    let mut expired: Vec<String> = store.expired(1_001).await.unwrap().into_iter().map(|job| job.id).collect();
    expired.sort();
    assert_eq!(expired, vec!["a", "b"]);
    store.remove("t1", "b").await.unwrap();
    assert!(store.get("t1", "b").await.unwrap().is_none());
}
