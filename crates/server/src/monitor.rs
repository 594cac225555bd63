//! Watches every tracked job with one `squeue` and one `sacct` call per cycle, turns Slurm phase changes
//! into UCloud job updates, and records each change with its updates in one transaction (then the outbox
//! delivers them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{JobState, JobUpdate};
use slurm::watch::{End, Phase, Transition, Watcher};
use slurm::{ExitStatus, SlurmClient, SlurmJobId, SlurmState};
use store::Store;
use tokio::sync::Notify;

pub struct Monitor {
    store: Arc<Store>,
    slurm: Arc<SlurmClient>,
    outbox_wake: Arc<Notify>,
    state: Mutex<Tracked>,
    /// Wakes the loop early when a job is added, so its first transitions are seen quickly.
    wake: Notify,
}

#[derive(Default)]
struct Tracked {
    watcher: Watcher,
    ucloud_ids: HashMap<SlurmJobId, String>,
}

/// What one cycle did, for logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    pub tracked: usize,
    pub slurm_calls: u64,
    pub transitions: usize,
    pub squeue_ok: bool,
    pub sacct_ok: bool,
}

impl Monitor {
    pub fn new(store: Arc<Store>, slurm: Arc<SlurmClient>, outbox_wake: Arc<Notify>) -> Monitor {
        Monitor { store, slurm, outbox_wake, state: Mutex::new(Tracked::default()), wake: Notify::new() }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-tracks every job the database says has not ended (after a start or restart).
    pub fn load(&self) -> store::Result<usize> {
        let jobs = self.store.active_jobs()?;
        let mut t = self.tracked();
        for job in &jobs {
            if let Some(slurm_id) = job.slurm_id {
                t.watcher.track(slurm_id, phase_from_text(&job.phase));
                t.ucloud_ids.insert(slurm_id, job.ucloud_id.clone());
            }
        }
        Ok(jobs.len())
    }

    pub fn track(&self, slurm_id: SlurmJobId, ucloud_id: &str) {
        let mut t = self.tracked();
        t.watcher.track(slurm_id, Phase::Queued);
        t.ucloud_ids.insert(slurm_id, ucloud_id.to_string());
        drop(t);
        self.wake.notify_one();
    }

    pub fn tracked_count(&self) -> usize {
        self.tracked().watcher.len()
    }

    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            let report = self.cycle().await;
            if report.transitions > 0 {
                tracing::debug!(?report, "monitor cycle");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One poll: at most one `squeue` and one `sacct` for all tracked jobs.
    pub async fn cycle(&self) -> CycleReport {
        let ids = self.tracked().watcher.tracked_ids();
        let mut report = CycleReport { tracked: ids.len(), ..Default::default() };
        if ids.is_empty() {
            return report;
        }
        let calls_before = self.slurm.calls();
        let (queue, acct) = tokio::join!(self.slurm.squeue(&ids), self.slurm.sacct(&ids));
        report.slurm_calls = self.slurm.calls() - calls_before;
        if let Err(e) = &queue {
            tracing::warn!("squeue failed; nothing concluded this cycle: {e}");
        }
        if let Err(e) = &acct {
            tracing::warn!("sacct failed: {e}");
        }
        report.squeue_ok = queue.is_ok();
        report.sacct_ok = acct.is_ok();
        let (transitions, ucloud_ids) = {
            let mut t = self.tracked();
            let transitions = t.watcher.cycle(queue.as_deref().ok(), acct.as_deref().ok());
            let ids: Vec<Option<String>> = transitions.iter().map(|tr| t.ucloud_ids.get(&tr.id).cloned()).collect();
            for tr in &transitions {
                if matches!(tr.to, Phase::Ended(_)) {
                    t.ucloud_ids.remove(&tr.id);
                }
            }
            (transitions, ids)
        };
        report.transitions = transitions.len();
        for (tr, ucloud_id) in transitions.iter().zip(ucloud_ids) {
            let Some(ucloud_id) = ucloud_id else { continue };
            if let Err(e) = self.record(&ucloud_id, tr) {
                // The watcher moved on but the database did not: reload so the change is seen again.
                tracing::error!(job = ucloud_id, "could not record a transition: {e}");
                let mut t = self.tracked();
                if let Ok(Some(row)) = self.store.job(&ucloud_id) {
                    t.watcher.track(tr.id, phase_from_text(&row.phase));
                    t.ucloud_ids.insert(tr.id, ucloud_id.clone());
                }
            }
        }
        if report.transitions > 0 {
            self.outbox_wake.notify_one();
        }
        report
    }

    fn record(&self, ucloud_id: &str, tr: &Transition) -> store::Result<()> {
        let cancel_requested = self.store.job(ucloud_id)?.map(|j| j.cancel_requested).unwrap_or(false);
        let update = update_for(&tr.to, tr.reason.as_deref(), cancel_requested);
        tracing::info!(job = ucloud_id, slurm_id = tr.id, state = ?update.state, status = ?update.status, "job changed");
        let payload = serde_json::to_string(&update).expect("JobUpdate serialises");
        self.store.record_transition(ucloud_id, &phase_to_text(&tr.to), matches!(tr.to, Phase::Ended(_)), &[payload])
    }
}

/// The update announcing a freshly submitted job.
pub fn submitted_update(slurm_id: SlurmJobId) -> JobUpdate {
    JobUpdate {
        state: Some(JobState::InQueue),
        status: Some(format!("Submitted to Slurm as job {slurm_id}")),
        ..Default::default()
    }
}

/// The UCloud update for a Slurm phase. State updates carry `expectedDifferentState`, so a redelivery after
/// a crash is a no-op in the Core rather than a duplicate.
pub fn update_for(phase: &Phase, reason: Option<&str>, cancel_requested: bool) -> JobUpdate {
    let (state, status) = match phase {
        Phase::Queued => (JobState::InQueue, match reason {
            Some(r) => format!("Waiting in the Slurm queue ({r})"),
            None => "Waiting in the Slurm queue".into(),
        }),
        Phase::Running => (JobState::Running, "The job is running".into()),
        Phase::Suspended => (JobState::Suspended, "The job is suspended".into()),
        Phase::Ended(end) => end_state(end, cancel_requested),
    };
    JobUpdate {
        state: Some(state),
        status: Some(status),
        expected_different_state: Some(true),
        ..Default::default()
    }
}

fn end_state(end: &End, cancel_requested: bool) -> (JobState, String) {
    let exit = match end.exit {
        Some(ExitStatus { code, signal: 0 }) => format!(" (exit code {code})"),
        Some(ExitStatus { signal, .. }) => format!(" (killed by signal {signal})"),
        None => String::new(),
    };
    match &end.state {
        SlurmState::Completed => (JobState::Success, format!("The job finished{exit}")),
        SlurmState::Cancelled if cancel_requested => (JobState::Success, "The job was cancelled by the user".into()),
        SlurmState::Cancelled => (JobState::Failure, "The job was cancelled outside UCloud".into()),
        SlurmState::Timeout => (JobState::Expired, "The job reached its time limit".into()),
        SlurmState::OutOfMemory => (JobState::Failure, "The job ran out of memory".into()),
        SlurmState::NodeFail => (JobState::Failure, "A node running the job failed".into()),
        SlurmState::Preempted => (JobState::Failure, "The job was preempted".into()),
        SlurmState::BootFail => (JobState::Failure, "A node failed to boot for the job".into()),
        SlurmState::Deadline => (JobState::Failure, "The job missed its deadline".into()),
        SlurmState::Failed => (JobState::Failure, format!("The job failed{exit}")),
        other => (JobState::Failure, format!("The job ended in Slurm state {}{exit}", other.as_str())),
    }
}

/// Phases are stored as short text: `queued`, `running`, `suspended`, `ended:STATE:code:signal`.
pub fn phase_to_text(phase: &Phase) -> String {
    match phase {
        Phase::Queued => "queued".into(),
        Phase::Running => "running".into(),
        Phase::Suspended => "suspended".into(),
        Phase::Ended(End { state, exit: Some(e) }) => format!("ended:{}:{}:{}", state.as_str(), e.code, e.signal),
        Phase::Ended(End { state, exit: None }) => format!("ended:{}", state.as_str()),
    }
}

pub fn phase_from_text(text: &str) -> Phase {
    let mut parts = text.split(':');
    match parts.next() {
        Some("running") => Phase::Running,
        Some("suspended") => Phase::Suspended,
        Some("ended") => {
            let state = SlurmState::parse(parts.next().unwrap_or(""));
            let exit = match (parts.next().and_then(|c| c.parse().ok()), parts.next().and_then(|s| s.parse().ok())) {
                (Some(code), Some(signal)) => Some(ExitStatus { code, signal }),
                _ => None,
            };
            Phase::Ended(End { state, exit })
        }
        _ => Phase::Queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_text_round_trip() {
        for phase in [
            Phase::Queued,
            Phase::Running,
            Phase::Suspended,
            Phase::Ended(End { state: SlurmState::Failed, exit: Some(ExitStatus { code: 3, signal: 0 }) }),
            Phase::Ended(End { state: SlurmState::Timeout, exit: None }),
        ] {
            assert_eq!(phase_from_text(&phase_to_text(&phase)), phase);
        }
    }

    #[test]
    fn end_states_map_to_ucloud() {
        let end = |state, exit| Phase::Ended(End { state, exit });
        let u = update_for(&end(SlurmState::Failed, Some(ExitStatus { code: 3, signal: 0 })), None, false);
        assert_eq!(u.state, Some(JobState::Failure));
        assert!(u.status.unwrap().contains("exit code 3"));
        assert_eq!(update_for(&end(SlurmState::Completed, None), None, false).state, Some(JobState::Success));
        assert_eq!(update_for(&end(SlurmState::Timeout, None), None, false).state, Some(JobState::Expired));
        assert_eq!(update_for(&end(SlurmState::Cancelled, None), None, true).state, Some(JobState::Success));
        assert_eq!(update_for(&end(SlurmState::Cancelled, None), None, false).state, Some(JobState::Failure));
        assert_eq!(update_for(&end(SlurmState::OutOfMemory, None), None, false).state, Some(JobState::Failure));
        let q = update_for(&Phase::Queued, Some("Resources"), false);
        assert_eq!(q.status.as_deref(), Some("Waiting in the Slurm queue (Resources)"));
        assert_eq!(q.expected_different_state, Some(true));
    }
}
