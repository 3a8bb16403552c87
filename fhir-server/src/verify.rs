//! `fhir-server verify`: checks every resource's hash chain in the event log and reports each
//! tampered event. Exit status 0 means the whole log is intact.

use crate::config::Config;
use crate::serve::open_log;

pub async fn run(config: &Config) -> anyhow::Result<bool> {
    let log = open_log(config)?;
    let report = event_log::hash::verify_log(log.as_ref()).await?;
    println!("checked {} events in {} streams", report.events_checked, report.streams_checked);
    for problem in &report.problems {
        println!("TAMPERED: {problem}");
    }
    log.close().await;
    Ok(report.problems.is_empty())
}
