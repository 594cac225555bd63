//! Watches every tracked job with one `squeue` call per cycle, and one `sacct` about the jobs squeue does
//! not show waiting or running (ends need sacct's exit codes; nothing else does), turns Slurm phase changes
//! into UCloud job updates, and records each change with its updates in one transaction (then the outbox
//! delivers them). While a job waits, why it waits is told in words whenever the reason changes.
//!
//! The pace adapts ([`slurm::Pacer`]): fast while something is about to happen, slower when quiet, backing
//! off while Slurm fails. A failed or timed-out call never ends a job, and no change is lost by waiting:
//! the watcher diffs against the last phase it saw, whenever the next good answer comes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{JobState, JobUpdate};
use slurm::watch::{accounting_ids, End, Phase, Transition, Watcher};
use slurm::{
    end_message, pending_reason_text, CycleOutcome, ExitStatus, Pacer, QueueRow, SlurmClient, SlurmJobId,
    SlurmState,
};
use store::Store;
use tokio::sync::Notify;

pub struct Monitor {
    store: Arc<Store>,
    slurm: Arc<SlurmClient>,
    outbox_wake: Arc<Notify>,
    state: Mutex<Tracked>,
    /// Wakes the loop early when a job is added or changed by a request, so the change is seen quickly.
    wake: Notify,
    /// A job was just submitted, suspended, resumed or extended: the next cycle counts as busy.
    poked: AtomicBool,
    /// Set when `[slurm] outside_jobs` is on: the cycle lists every job instead of asking for tracked ids.
    outside: std::sync::OnceLock<Arc<crate::outside::Outside>>,
}

#[derive(Default)]
struct Tracked {
    watcher: Watcher,
    jobs: HashMap<SlurmJobId, JobMeta>,
}

struct JobMeta {
    ucloud_id: String,
    /// Why the job waits, as last told to the Core (in words); cleared when it leaves the queue.
    told_reason: Option<String>,
}

/// What one cycle did, for the pacer, logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    pub tracked: usize,
    pub slurm_calls: u64,
    pub transitions: usize,
    /// Status updates telling why a queued job waits.
    pub reasons: usize,
    pub squeue_ok: bool,
    pub sacct_ok: bool,
    /// Something is about to happen (see [`about_to_change`]) or just happened.
    pub busy: bool,
    pub took: Duration,
}

impl CycleReport {
    /// What the pacer needs. A cycle without tracked jobs made no calls and cannot fail.
    pub fn outcome(&self) -> CycleOutcome {
        let failed = self.tracked > 0 && !(self.squeue_ok && self.sacct_ok);
        CycleOutcome { busy: self.busy, failed, took: self.took }
    }
}

/// The pacer for a configured poll interval: that interval when busy, five times it when quiet, backing
/// off up to thirty times it while Slurm fails (1 s / 5 s / 30 s by default).
pub fn pacer_for(poll_interval: Duration) -> Pacer {
    Pacer::new(poll_interval, poll_interval * 5, poll_interval * 30)
}

impl Monitor {
    pub fn new(store: Arc<Store>, slurm: Arc<SlurmClient>, outbox_wake: Arc<Notify>) -> Monitor {
        Monitor {
            store,
            slurm,
            outbox_wake,
            state: Mutex::new(Tracked::default()),
            wake: Notify::new(),
            poked: AtomicBool::new(false),
            outside: std::sync::OnceLock::new(),
        }
    }

    /// Finds and registers jobs connected users submit outside UCloud, in the same one `squeue` per cycle.
    pub fn enable_outside(&self, outside: Arc<crate::outside::Outside>) {
        let _ = self.outside.set(outside);
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-tracks every job the database says has not ended (after a start or restart). Why a queued job
    /// waits is told again once: what was told before is not stored.
    pub fn load(&self) -> store::Result<usize> {
        let jobs = self.store.active_jobs()?;
        let mut t = self.tracked();
        for job in &jobs {
            if let Some(slurm_id) = job.slurm_id {
                t.watcher.track(slurm_id, phase_from_text(&job.phase));
                t.jobs.insert(slurm_id, JobMeta { ucloud_id: job.ucloud_id.clone(), told_reason: None });
            }
        }
        Ok(jobs.len())
    }

    pub fn track(&self, slurm_id: SlurmJobId, ucloud_id: &str) {
        let mut t = self.tracked();
        t.watcher.track(slurm_id, Phase::Queued);
        t.jobs.insert(slurm_id, JobMeta { ucloud_id: ucloud_id.to_string(), told_reason: None });
        drop(t);
        self.poke();
    }

    /// Something was done to a job (suspend, resume, extend): look soon, and at the fast pace.
    pub fn poke(&self) {
        self.poked.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn tracked_count(&self) -> usize {
        self.tracked().watcher.len()
    }

    pub async fn run(self: Arc<Self>, mut pacer: Pacer) {
        loop {
            let report = self.cycle().await;
            let ended = tokio::time::Instant::now();
            let pause = pacer.next(report.outcome());
            let soonest = pacer.soonest(report.outcome(), pause);
            if report.transitions > 0 || report.reasons > 0 {
                tracing::debug!(?report, ?pause, "monitor cycle");
            }
            if pacer.failures() > 0 {
                tracing::warn!(failures = pacer.failures(), ?pause, "Slurm did not answer; no job changes, next try later");
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // Poked: look soon, at the pace the pacer allows (not at once: one poke per submission
                // would otherwise poll Slurm back to back while jobs are being created).
                _ = self.wake.notified() => tokio::time::sleep_until(ended + soonest).await,
            }
        }
    }

    /// One poll: at most one `squeue` and one `sacct` for all tracked jobs.
    pub async fn cycle(&self) -> CycleReport {
        let poked = self.poked.swap(false, Ordering::SeqCst);
        let outside = self.outside.get().cloned();
        if let Some(outside) = &outside {
            let registered = outside.take_registered();
            if !registered.is_empty() {
                let mut t = self.tracked();
                for (slurm_id, ucloud_id) in registered {
                    t.watcher.track(slurm_id, Phase::Queued);
                    t.jobs.insert(slurm_id, JobMeta { ucloud_id, told_reason: None });
                }
                drop(t);
                self.outbox_wake.notify_one();
            }
        }
        let ids = self.tracked().watcher.tracked_ids();
        let mut report = CycleReport { tracked: ids.len(), busy: poked, ..Default::default() };
        if ids.is_empty() && outside.is_none() {
            return report;
        }
        let calls_before = self.slurm.calls();
        let started = Instant::now();
        let queue = match &outside {
            None => self.slurm.squeue(&ids).await,
            Some(outside) => {
                // One listing of every job replaces `squeue -j IDS`.
                self.slurm.squeue_all().await.map(|listing| {
                    let tracked: std::collections::HashSet<SlurmJobId> = ids.iter().copied().collect();
                    outside.consider(&listing, &tracked);
                    listing.into_iter().map(|j| j.row).filter(|r| tracked.contains(&r.id)).collect::<Vec<_>>()
                })
            }
        };
        // squeue first: sacct only about jobs it does not show waiting or running (none while a burst of
        // new jobs waits, which keeps slurmdbd's database out of the way of their submission).
        let ask = accounting_ids(&ids, queue.as_deref().ok());
        let acct = if ask.is_empty() { Ok(Vec::new()) } else { self.slurm.sacct(&ask).await };
        report.took = started.elapsed();
        report.slurm_calls = self.slurm.calls() - calls_before;
        if let Err(e) = &queue {
            tracing::warn!("squeue failed; nothing concluded this cycle: {e}");
        }
        if let Err(e) = &acct {
            tracing::warn!("sacct failed: {e}");
        }
        report.squeue_ok = queue.is_ok();
        report.sacct_ok = acct.is_ok();
        let rows = queue.as_deref().ok();
        let (transitions, reasons) = {
            let mut t = self.tracked();
            let transitions = t.watcher.cycle(rows, acct.as_deref().ok());
            let mut out = Vec::with_capacity(transitions.len());
            for tr in transitions {
                let Some(meta) = t.jobs.get_mut(&tr.id) else { continue };
                // A job (re)entering the queue says why in its transition; only later changes need telling.
                meta.told_reason = match tr.to {
                    Phase::Queued => tr.reason.as_deref().and_then(pending_reason_text),
                    _ => None,
                };
                let ucloud_id = meta.ucloud_id.clone();
                if matches!(tr.to, Phase::Ended(_)) {
                    t.jobs.remove(&tr.id);
                }
                out.push((ucloud_id, tr));
            }
            let reasons = rows.map(|rows| reason_changes(&mut t, rows)).unwrap_or_default();
            (out, reasons)
        };
        report.transitions = transitions.len();
        report.reasons = reasons.len();
        report.busy |= !transitions.is_empty() || rows.is_some_and(|rows| rows.iter().any(about_to_change));
        for (ucloud_id, tr) in &transitions {
            if let Err(e) = self.record(ucloud_id, tr) {
                // The watcher moved on but the database did not: reload so the change is seen again.
                tracing::error!(job = ucloud_id, "could not record a transition: {e}");
                let mut t = self.tracked();
                if let Ok(Some(row)) = self.store.job(ucloud_id) {
                    t.watcher.track(tr.id, phase_from_text(&row.phase));
                    t.jobs.insert(tr.id, JobMeta { ucloud_id: ucloud_id.clone(), told_reason: None });
                }
            }
        }
        if !reasons.is_empty() {
            let items: Vec<(String, String)> = reasons
                .iter()
                .map(|(id, text)| (id.clone(), serde_json::to_string(&reason_update(text)).expect("JobUpdate serialises")))
                .collect();
            if let Err(e) = self.store.queue_updates(&items) {
                // Only words are lost; forget what was told so the next cycle tells it again.
                tracing::error!("could not queue why jobs wait: {e}");
                let mut t = self.tracked();
                for meta in t.jobs.values_mut().filter(|m| reasons.iter().any(|(id, _)| *id == m.ucloud_id)) {
                    meta.told_reason = None;
                }
            }
        }
        if report.transitions > 0 || report.reasons > 0 {
            self.outbox_wake.notify_one();
        }
        report
    }

    fn record(&self, ucloud_id: &str, tr: &Transition) -> store::Result<()> {
        let facts = self.store.job(ucloud_id)?.map(|j| JobFacts::of(&j)).unwrap_or_default();
        let update = update_for(&tr.to, tr.reason.as_deref(), &facts);
        tracing::info!(job = ucloud_id, slurm_id = tr.id, state = ?update.state, status = ?update.status, "job changed");
        let payload = serde_json::to_string(&update).expect("JobUpdate serialises");
        self.store.record_transition(ucloud_id, &phase_to_text(&tr.to), matches!(tr.to, Phase::Ended(_)), &[payload])
    }
}

/// Queued jobs whose reason, in words, differs from what the Core was last told; remembers the new words.
/// A reason without words (`None`: about to start) tells nothing and keeps the last words.
fn reason_changes(t: &mut Tracked, rows: &[QueueRow]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in rows {
        if t.watcher.phase(row.id) != Some(&Phase::Queued) {
            continue;
        }
        let (Some(meta), Some(text)) = (t.jobs.get_mut(&row.id), pending_reason_text(&row.reason)) else { continue };
        if meta.told_reason.as_deref() != Some(text.as_str()) {
            meta.told_reason = Some(text.clone());
            out.push((meta.ucloud_id.clone(), text));
        }
    }
    out
}

/// Slurm shows a job about to start (pending with no reason or only waiting for resources, or being
/// configured) or ending (completing, or terminal while accounting catches up): poll fast.
pub fn about_to_change(row: &QueueRow) -> bool {
    match row.state {
        SlurmState::Pending => matches!(row.reason.trim(), "None" | "Resources" | ""),
        SlurmState::Configuring | SlurmState::Completing => true,
        ref s => s.is_terminal(),
    }
}

/// What an update needs to know about a job beyond its phase, from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobFacts {
    /// The user asked UCloud to stop it, so CANCELLED is their doing.
    pub cancel_requested: bool,
    /// Memory per node it was given (MiB), for an out-of-memory end.
    pub memory_mb: Option<u64>,
    /// Its current time limit (minutes), for a time-limit end.
    pub time_limit_minutes: Option<u64>,
}

impl JobFacts {
    pub fn of(row: &store::JobRow) -> JobFacts {
        JobFacts {
            cancel_requested: row.cancel_requested,
            memory_mb: row.memory_mb,
            time_limit_minutes: row.time_limit_minutes,
        }
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

/// "In the queue: waiting for resources to become free".
pub fn queued_status(reason: Option<&str>) -> String {
    match reason.and_then(pending_reason_text) {
        Some(words) => format!("In the queue: {words}"),
        None => "In the queue".into(),
    }
}

/// A status-only update (no state, so the Core always appends it) saying why a queued job waits.
pub fn reason_update(words: &str) -> JobUpdate {
    JobUpdate { status: Some(format!("In the queue: {words}")), ..Default::default() }
}

/// The UCloud update for a Slurm phase. State updates carry `expectedDifferentState`, so a redelivery after
/// a crash is a no-op in the Core rather than a duplicate.
pub fn update_for(phase: &Phase, reason: Option<&str>, facts: &JobFacts) -> JobUpdate {
    let (state, status) = match phase {
        Phase::Queued => (JobState::InQueue, queued_status(reason)),
        Phase::Running => (JobState::Running, "The job is running".into()),
        Phase::Suspended => (JobState::Suspended, "The job is suspended: its processes are stopped until it is continued".into()),
        Phase::Ended(end) => end_state(end, facts),
    };
    JobUpdate { state: Some(state), status: Some(status), expected_different_state: Some(true), ..Default::default() }
}

fn end_state(end: &End, facts: &JobFacts) -> (JobState, String) {
    let message = || end_message(&end.state, end.exit, facts.memory_mb, facts.time_limit_minutes);
    match &end.state {
        SlurmState::Completed => (JobState::Success, message()),
        // UCloud has no "cancelled" state: a cancel the user asked for is a success (§4.3).
        SlurmState::Cancelled if facts.cancel_requested => (JobState::Success, "The job was cancelled by the user".into()),
        SlurmState::Cancelled => (JobState::Failure, "The job was cancelled outside UCloud".into()),
        SlurmState::Timeout => (JobState::Expired, message()),
        _ => (JobState::Failure, message()),
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
#[path = "monitor_tests.rs"]
mod tests;
