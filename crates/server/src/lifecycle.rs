//! The background half of instance lifecycle: the sweep that stops idle instances and restarts those whose
//! user's groups changed, and the restart of crashed instances after their backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::instances::Crash;
use crate::Server;

/// How often the sweep runs: a quarter of the idle limit, between 1 and 10 s (group changes are noticed
/// within 10 s).
pub fn sweep_interval(idle_secs: u64) -> Duration {
    match idle_secs {
        0 => Duration::from_secs(10),
        s => Duration::from_millis((s * 250).clamp(1000, 10_000)),
    }
}

pub async fn sweep(server: Arc<Server>) {
    let idle = Some(server.config.server.instance_idle_secs).filter(|s| *s > 0).map(Duration::from_secs);
    let mut tick = tokio::time::interval(sweep_interval(server.config.server.instance_idle_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (uid, unix_user) in server.instances.sweep(idle) {
            start(&server, uid, &unix_user, "restart after a group change").await;
        }
    }
}

pub async fn restart_crashed(server: Arc<Server>, mut crashes: UnboundedReceiver<Crash>) {
    while let Some((uid, unix_user)) = crashes.recv().await {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(server.instances.backoff(uid).await).await;
            start(&server, uid, &unix_user, "restart after a crash").await;
        });
    }
}

async fn start(server: &Arc<Server>, uid: u32, unix_user: &str, why: &str) {
    // A user disconnected meanwhile has nothing to restart for.
    if server.users.ucloud_users_of(uid).is_empty() {
        return;
    }
    match crate::http::start_instance(server, uid, unix_user).await {
        Ok(port) => tracing::info!(unix_user, port, why, "instance started again"),
        Err(e) => tracing::warn!(unix_user, why, "could not start the instance again: {}", e.why),
    }
}
