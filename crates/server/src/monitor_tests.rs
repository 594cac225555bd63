use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use store::JobLimits;

use super::*;

fn facts() -> JobFacts {
    JobFacts::default()
}

fn end(state: SlurmState, exit: Option<ExitStatus>) -> Phase {
    Phase::Ended(End { state, exit })
}

#[test]
fn phase_text_round_trip() {
    for phase in [
        Phase::Queued,
        Phase::Running,
        Phase::Suspended,
        end(SlurmState::Failed, Some(ExitStatus { code: 3, signal: 0 })),
        end(SlurmState::Timeout, None),
    ] {
        assert_eq!(phase_from_text(&phase_to_text(&phase)), phase);
    }
}

#[test]
fn end_states_map_to_ucloud_with_words() {
    let limits = JobFacts { memory_mb: Some(1024), time_limit_minutes: Some(90), ..facts() };
    let cases = [
        (end(SlurmState::Failed, Some(ExitStatus { code: 3, signal: 0 })), facts(), JobState::Failure, "The job failed (exit code 3)"),
        (end(SlurmState::Failed, Some(ExitStatus { code: 0, signal: 9 })), facts(), JobState::Failure, "The job failed (killed by signal 9)"),
        (end(SlurmState::Completed, None), facts(), JobState::Success, "The job completed successfully"),
        (end(SlurmState::Timeout, None), limits, JobState::Expired, "The job reached its time limit (1 h 30 min)"),
        (end(SlurmState::Timeout, None), facts(), JobState::Expired, "The job reached its time limit"),
        (end(SlurmState::OutOfMemory, None), limits, JobState::Failure, "The job ran out of memory (limit 1 GiB)"),
        (end(SlurmState::Cancelled, None), JobFacts { cancel_requested: true, ..facts() }, JobState::Success, "The job was cancelled by the user"),
        (end(SlurmState::Cancelled, None), facts(), JobState::Failure, "The job was cancelled outside UCloud"),
        (end(SlurmState::NodeFail, None), facts(), JobState::Failure, "The job ended because a node it ran on failed"),
        (end(SlurmState::Deadline, None), facts(), JobState::Failure, "The job was ended because it could not finish before its deadline"),
    ];
    for (phase, facts, state, status) in cases {
        let u = update_for(&phase, None, &facts);
        assert_eq!((u.state, u.status.as_deref()), (Some(state), Some(status)), "{phase:?}");
        assert_eq!(u.expected_different_state, Some(true));
    }
}

#[test]
fn live_phases_and_queue_words() {
    let q = update_for(&Phase::Queued, Some("Resources"), &facts());
    assert_eq!(q.state, Some(JobState::InQueue));
    assert_eq!(q.status.as_deref(), Some("In the queue: waiting for resources to become free"));
    assert_eq!(update_for(&Phase::Queued, Some("None"), &facts()).status.as_deref(), Some("In the queue"));
    assert_eq!(update_for(&Phase::Suspended, None, &facts()).state, Some(JobState::Suspended));
    assert_eq!(update_for(&Phase::Running, None, &facts()).state, Some(JobState::Running));
    // Reason updates carry no state, so the Core appends them even though the job stays IN_QUEUE.
    let r = reason_update("held by its owner; it starts once released");
    assert_eq!((r.state, r.expected_different_state), (None, None));
    assert_eq!(r.status.as_deref(), Some("In the queue: held by its owner; it starts once released"));
}

#[test]
fn what_counts_as_about_to_change() {
    let row = |state: &str, reason: &str| QueueRow { id: 1, state: SlurmState::parse(state), reason: reason.into(), uid: None };
    for (state, reason, busy) in [
        ("PENDING", "None", true),
        ("PENDING", "Resources", true),
        ("PENDING", "Priority", false),
        ("PENDING", "BeginTime", false),
        ("PENDING", "JobHeldUser", false),
        ("CONFIGURING", "None", true),
        ("RUNNING", "None", false),
        ("SUSPENDED", "None", false),
        ("COMPLETING", "None", true),
        ("COMPLETED", "None", true),
        ("TIMEOUT", "TimeLimit", true),
    ] {
        assert_eq!(about_to_change(&row(state, reason)), busy, "{state} {reason}");
    }
}

/// Fake `squeue` and `sacct` that print `NAME.out` and exit with `NAME.rc` from their own directory, so a
/// test can change Slurm's answer between cycles.
struct FakeSlurm {
    dir: PathBuf,
}

impl FakeSlurm {
    fn new(test: &str) -> FakeSlurm {
        let dir = std::env::temp_dir().join(format!("ucim-monitor-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for tool in ["squeue", "sacct"] {
            let path = dir.join(tool);
            std::fs::write(&path, "#!/bin/sh\ncat \"$0.out\"\nexit \"$(cat \"$0.rc\")\"\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let fake = FakeSlurm { dir };
        fake.answer("squeue", "", 0);
        fake.answer("sacct", "", 0);
        fake
    }

    fn answer(&self, tool: &str, out: &str, rc: i32) {
        std::fs::write(self.dir.join(format!("{tool}.out")), out).unwrap();
        std::fs::write(self.dir.join(format!("{tool}.rc")), rc.to_string()).unwrap();
    }
}

impl Drop for FakeSlurm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn statuses(store: &Store) -> Vec<(Option<JobState>, String)> {
    store
        .outbox_pending(100)
        .unwrap()
        .into_iter()
        .map(|r| {
            let u: JobUpdate = serde_json::from_str(&r.payload).unwrap();
            (u.state, u.status.unwrap_or_default())
        })
        .collect()
}

#[tokio::test]
async fn a_cycle_tells_reasons_once_survives_failures_and_ends_with_words() {
    let fake = FakeSlurm::new("cycle");
    let store = Arc::new(Store::open_in_memory().unwrap());
    store.insert_job("j1", "alice#1", 1001, "queued", JobLimits { memory_mb: Some(1024), time_limit_minutes: Some(1) }).unwrap();
    store.confirm_submission("j1", 42, &[]).unwrap();
    let slurm = Arc::new(SlurmClient::new(Some(fake.dir.clone()), Duration::from_secs(5)));
    let monitor = Monitor::new(store.clone(), slurm, Arc::new(Notify::new()));
    monitor.track(42, "j1");

    fake.answer("squeue", "42|PENDING|BeginTime|1001\n", 0);
    let r = monitor.cycle().await;
    assert_eq!((r.slurm_calls, r.transitions, r.reasons), (1, 0, 1), "a waiting job needs no sacct");
    assert!(r.busy, "just submitted");
    assert!(!r.outcome().failed);
    let r = monitor.cycle().await;
    assert_eq!(r.reasons, 0, "same reason, nothing new to tell");
    assert!(!r.busy, "waiting for a start time is not about to change");

    fake.answer("squeue", "42|PENDING|None|1001\n", 0);
    let r = monitor.cycle().await;
    assert_eq!(r.reasons, 0, "no reason has no words");
    assert!(r.busy, "about to start");

    fake.answer("squeue", "42|PENDING|JobHeldUser|1001\n", 0);
    assert_eq!(monitor.cycle().await.reasons, 1);

    // A failing controller changes nothing and asks the pacer to back off.
    fake.answer("squeue", "", 1);
    fake.answer("sacct", "", 1);
    let r = monitor.cycle().await;
    assert_eq!((r.transitions, r.reasons, r.squeue_ok, r.sacct_ok), (0, 0, false, false));
    assert!(r.outcome().failed);
    assert_eq!(monitor.tracked_count(), 1);

    fake.answer("squeue", "42|RUNNING|None|1001\n", 0);
    fake.answer("sacct", "", 0);
    assert_eq!(monitor.cycle().await.transitions, 1);
    // Ended while we were not looking: squeue forgot it, sacct has the end.
    fake.answer("squeue", "", 0);
    fake.answer("sacct", "42|TIMEOUT|0:0|2024-01-01T00:00:00|2024-01-01T00:01:00|00:01:00|vm\n", 0);
    let r = monitor.cycle().await;
    assert_eq!((r.slurm_calls, r.transitions), (2, 1), "squeue forgot it: sacct is asked");
    assert!(r.busy);
    assert_eq!(monitor.tracked_count(), 0);

    assert_eq!(
        statuses(&store),
        [
            (None, "In the queue: waiting for its requested start time".to_string()),
            (None, "In the queue: held by its owner; it starts once released".to_string()),
            (Some(JobState::Running), "The job is running".to_string()),
            (Some(JobState::Expired), "The job reached its time limit (1 min)".to_string()),
        ]
    );
    assert!(store.job("j1").unwrap().unwrap().ended_at.is_some());
}

#[tokio::test]
async fn nothing_tracked_costs_no_calls_and_never_fails() {
    let fake = FakeSlurm::new("idle");
    fake.answer("squeue", "", 1);
    let slurm = Arc::new(SlurmClient::new(Some(fake.dir.clone()), Duration::from_secs(5)));
    let monitor = Monitor::new(Arc::new(Store::open_in_memory().unwrap()), slurm, Arc::new(Notify::new()));
    let r = monitor.cycle().await;
    assert_eq!(r.slurm_calls, 0);
    assert_eq!(r.outcome(), CycleOutcome::default());
}

#[test]
fn pacer_scales_with_the_poll_interval() {
    let mut p = pacer_for(Duration::from_millis(300));
    let quiet = CycleOutcome::default();
    let failed = CycleOutcome { failed: true, ..quiet };
    let ms = |d: Duration| d.as_millis();
    assert_eq!(ms(p.next(CycleOutcome { busy: true, ..quiet })), 300);
    assert_eq!([ms(p.next(quiet)), ms(p.next(quiet)), ms(p.next(quiet))], [600, 1200, 1500]);
    let backoff: Vec<u128> = (0..5).map(|_| ms(p.next(failed))).collect();
    assert_eq!(backoff, [1500, 3000, 6000, 9000, 9000]);
}
