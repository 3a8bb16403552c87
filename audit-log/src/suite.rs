//! The behaviour every audit store has: what is appended is found, per tenant, newest first,
//! filtered and limited.

use crate::{AuditQuery, AuditRecord, AuditStore};

fn record(request_id: &str, tenant: &str, at_ms: i64, actor: &str, resource_type: &str) -> AuditRecord {
    AuditRecord {
        request_id: request_id.into(),
        at_ms,
        tenant: tenant.into(),
        actor: actor.into(),
        client: "127.0.0.1".into(),
        method: "GET".into(),
        interaction: "read".into(),
        resource_type: Some(resource_type.into()),
        resource_id: Some("1".into()),
        status: 200,
    }
}

/// Runs the behaviour on `store`.
pub async fn run(store: &dyn AuditStore) {
    let records: Vec<AuditRecord> = (0..30).map(|n| record(&format!("r{n}"), if n % 3 == 0 { "b" } else { "a" }, 1_000 + n, if n % 2 == 0 { "ann" } else { "bob" }, if n < 15 { "Patient" } else { "Observation" })).collect();
    store.append(&records[..10]).await.expect("append");
    store.append(&records[10..]).await.expect("append more than one batch");
    let all = store.query("a", &AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(all.len(), 20, "tenant a's records only");
    assert!(all.iter().all(|r| r.tenant == "a"));
    assert!(all.windows(2).all(|pair| pair[0].at_ms >= pair[1].at_ms), "newest first");
    assert_eq!(all[0], records[29], "whole records come back");
    let window = store.query("a", &AuditQuery { since_ms: Some(1_005), until_ms: Some(1_010), limit: 100, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(window.iter().map(|r| r.at_ms).collect::<Vec<_>>(), vec![1_010, 1_008, 1_007, 1_005]);
    let ann = store.query("a", &AuditQuery { actor: Some("ann".into()), resource_type: Some("Observation".into()), limit: 3, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(ann.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), vec!["r28", "r26", "r22"]);
    assert!(store.query("nobody", &AuditQuery { limit: 10, ..AuditQuery::default() }).await.unwrap().is_empty());
}
