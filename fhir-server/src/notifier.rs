//! The subscription notifier of this process: its queue in `notifier.db` in the data directory,
//! tailing the log of the mode, when `subscriptions.run_notifier` is on.

use std::sync::Arc;

use anyhow::Context;
use command_api::state::Subscriptions;
use event_log::EventLog;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

const NOTIFIER_FILE: &str = "notifier.db";

/// The API's view of subscriptions, and the notifier's tasks (none when it runs elsewhere).
pub fn start(config: &Config, log: Arc<dyn EventLog>, stopped: watch::Receiver<bool>) -> anyhow::Result<(Subscriptions, Vec<JoinHandle<()>>)> {
    let policy = config.subscriptions.policy();
    if !config.subscriptions.run_notifier {
        return Ok((Subscriptions { policy, notifier: None }, Vec::new()));
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = Arc::new(subscription_notifier::NotifierStore::open(&config.data_dir.join(NOTIFIER_FILE)).context("cannot open the subscription queue")?);
    let base_url = config.public_base_url.clone().unwrap_or_else(|| format!("http://{}{}", config.listen, config.base_path)).trim_end_matches('/').to_string();
    let settings = subscription_notifier::Settings { base_url, tenant_paths: config.multi_tenancy, ..config.subscriptions.settings() };
    let tasks = subscription_notifier::start(store.clone(), log, policy.clone(), settings, stopped);
    Ok((Subscriptions { policy, notifier: Some(store) }, tasks.into()))
}
