//! Each product's queue status for `retrieveProducts` (`JobSupport.queueStatus`, which the Core passes
//! through to the browser's machine-type selector): one `sinfo` and one `squeue` for all partitions,
//! cached for [`FRESH`], so the Core's poll every 10 s costs Slurm at most two calls and never waits for a
//! slow slurmctld (a refresh runs in the background; only the very first answer waits, briefly).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slurm::{QueueStatus, SlurmClient};
use tokio::sync::Notify;

/// How long a reading is served without asking Slurm again.
pub const FRESH: Duration = Duration::from_secs(10);
/// Older readings (Slurm failing for a while) are not shown: no status is better than a wrong one.
pub const TOO_OLD: Duration = Duration::from_secs(60);
/// How long the first call waits for the first reading.
const FIRST_WAIT: Duration = Duration::from_secs(2);

pub struct QueueStatusCache {
    slurm: Arc<SlurmClient>,
    reading: Mutex<Option<(Instant, HashMap<String, QueueStatus>)>>,
    refreshing: AtomicBool,
    refreshed: Notify,
}

impl QueueStatusCache {
    pub fn new(slurm: Arc<SlurmClient>) -> QueueStatusCache {
        QueueStatusCache { slurm, reading: Mutex::new(None), refreshing: AtomicBool::new(false), refreshed: Notify::new() }
    }

    fn snapshot(&self) -> Option<(Instant, HashMap<String, QueueStatus>)> {
        self.reading.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Status per partition; empty when Slurm has not answered recently.
    pub async fn statuses(self: &Arc<Self>) -> HashMap<String, QueueStatus> {
        let mut reading = self.snapshot();
        if reading.as_ref().is_none_or(|(at, _)| at.elapsed() >= FRESH) {
            let waiter = self.refreshed.notified();
            self.clone().refresh_in_background();
            if reading.is_none() {
                let _ = tokio::time::timeout(FIRST_WAIT, waiter).await;
                reading = self.snapshot();
            }
        }
        match reading {
            Some((at, statuses)) if at.elapsed() < TOO_OLD => statuses,
            _ => HashMap::new(),
        }
    }

    /// Starts one refresh unless one is running.
    fn refresh_in_background(self: Arc<Self>) {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            match self.slurm.partition_load().await {
                Ok(loads) => {
                    let statuses = loads.iter().map(|l| (l.partition.clone(), l.status())).collect();
                    *self.reading.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), statuses));
                }
                Err(e) => tracing::warn!("queue status not refreshed: {e}"),
            }
            self.refreshing.store(false, Ordering::SeqCst);
            self.refreshed.notify_waiters();
        });
    }
}

/// The Core's spelling (`JobQueueStatus`).
pub fn wire_name(status: QueueStatus) -> &'static str {
    match status {
        QueueStatus::Available => "AVAILABLE",
        QueueStatus::Busy => "BUSY",
        QueueStatus::Full => "FULL",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn first_answer_waits_then_cached_answers_do_not_call_slurm() {
        let dir = std::env::temp_dir().join(format!("ucim-queue-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (tool, out) in [("sinfo", "cpu|8/0/0/8|up\nshort|0/8/0/8|up\ndown|0/8/0/8|down"), ("squeue", "cpu|Resources")] {
            let path = dir.join(tool);
            std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{out}'\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let slurm = Arc::new(SlurmClient::new(Some(dir.clone()), Duration::from_secs(5)));
        let cache = Arc::new(QueueStatusCache::new(slurm.clone()));
        let statuses = cache.statuses().await;
        assert_eq!(statuses.get("cpu"), Some(&QueueStatus::Full));
        assert_eq!(statuses.get("short"), Some(&QueueStatus::Available));
        assert_eq!(statuses.get("down"), Some(&QueueStatus::Full));
        assert_eq!(slurm.calls(), 2);
        for _ in 0..5 {
            assert_eq!(cache.statuses().await.len(), 3);
        }
        assert_eq!(slurm.calls(), 2, "served from the cache");
        assert_eq!(wire_name(QueueStatus::Busy), "BUSY");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn no_answer_is_no_status() {
        let slurm = Arc::new(SlurmClient::new(Some("/nonexistent/ucim".into()), Duration::from_secs(1)));
        let cache = Arc::new(QueueStatusCache::new(slurm));
        assert!(cache.statuses().await.is_empty());
    }
}
