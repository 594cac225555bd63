//! Jobs, complete: extend, suspend and unsuspend through the Core's calls on the real cluster, refusals in
//! words, why a queued job waits, and a job ending at its time limit. The server needs to be a Slurm
//! operator for extend and suspend (`dev/setup.sh` makes the service user one).


use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use protocol::{JobState, ProductReference, SimpleDuration};
use serde_json::{json, Value};

/// More applications and a product on the `short` partition (MaxTime 10 min). `Options` has no field for
/// them, so they ride in after `[server]`'s keys: TOML lets the tables follow in any order.
const EXTRA: &str = r#"
[applications.counter]
script = '''
i=0
while :; do i=$((i+1)); echo "$i" >> counter.txt; sleep 0.2; done
'''

[products.short-1]
category = "cpu"
partition = "short"
cpus = 1
memory_gb = 1
price = 1
"#;

async fn stack(name: &str, port_base: u16) -> Stack {
    let stack = Stack::start_with(name, port_base, Options { server: EXTRA.into(), ..Default::default() }).await;
    stack.map("alice#1234", "alice");
    stack.map("bob#1", "bob");
    stack
}

fn minutes(m: i64) -> SimpleDuration {
    SimpleDuration { hours: 0, minutes: m, seconds: 0 }
}

fn slurm() -> slurm::SlurmClient {
    slurm::SlurmClient::new(None, Duration::from_secs(10))
}

async fn time_limit(slurm_id: u64) -> Option<u64> {
    slurm().job_info(slurm_id).await.unwrap().expect("Slurm knows the job").time_limit_minutes
}

fn assert_refused(r: &ucloud_sim::CallResult, status: u16, words: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.why().unwrap_or_default().contains(words), "wanted {words:?}: {r:?}");
}

/// Waits until one of the job's updates has a status containing `words`.
async fn wait_status(stack: &Stack, job: &str, words: &str, secs: u64) {
    for _ in 0..secs * 10 {
        if stack.sim.job_updates(job).iter().any(|u| u.status.as_deref().is_some_and(|s| s.contains(words))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<_> = stack.sim.job_updates(job).into_iter().filter_map(|u| u.status).collect();
    panic!("job {job}: no status with {words:?} within {secs} s: {statuses:?}\n{}", stack.server_log());
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn wait_growth(path: &Path, when: &str) {
    let start = size(path);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if size(path) > start {
            return;
        }
    }
    panic!("{} did not grow {when}", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn extend_raises_the_slurm_limit_and_the_cores_allocation() {
    if !enabled() {
        return;
    }
    let stack = stack("extend", 45000).await;
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": int(300)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Running, 60).await;
    let slurm_id = stack.slurm_id(&job);
    assert_eq!(time_limit(slurm_id).await, Some(5));

    let r = stack.sim.extend_job(&job, minutes(10)).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    assert_eq!(time_limit(slurm_id).await, Some(15), "scontrol show job");
    wait_status(&stack, &job, "extended by 10 min to 15 min", 10).await;
    let core = stack.sim.job(&job).unwrap();
    assert_eq!(core["specification"]["timeAllocation"], json!({"hours": 0, "minutes": 15, "seconds": 0}));
    let started = core["status"]["startedAt"].as_i64().unwrap();
    assert_eq!(core["status"]["expiresAt"].as_i64().unwrap(), started + 15 * 60_000);
    let update = stack.sim.job_updates(&job).into_iter().find(|u| u.new_time_allocation.is_some()).unwrap();
    assert_eq!(update.new_time_allocation, Some(15 * 60_000));

    // Seconds round up to a whole minute (Slurm counts minutes; the Core drops seconds anyway).
    let r = stack.sim.extend_job(&job, SimpleDuration { hours: 0, minutes: 0, seconds: 30 }).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    assert_eq!(time_limit(slurm_id).await, Some(16));

    // bob asking about alice's job: not found, nothing changes.
    let r = stack.sim.extend_job_as(Some("bob#1"), &job, minutes(60)).await.unwrap();
    assert_refused(&r, 404, &format!("Job {job} not found"));
    assert_eq!(time_limit(slurm_id).await, Some(16));
    // An unmapped user is refused before any lookup.
    let r = stack.sim.extend_job_as(Some("mallory#1"), &job, minutes(60)).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let r = stack.sim.extend_job(&job, minutes(0)).await.unwrap();
    assert_refused(&r, 400, "longer than zero");

    assert!(stack.sim.terminate_job(&job).await.unwrap().accepted_by_core());
    stack.wait_state(&job, JobState::Success, 60).await;
    let r = stack.sim.extend_job(&job, minutes(10)).await.unwrap();
    assert_refused(&r, 409, "has already ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_stops_the_processes_and_unsuspend_continues_them() {
    if !enabled() {
        return;
    }
    let stack = stack("suspend", 45020).await;
    let (job, answer) = stack.submit("alice#1234", "counter", json!({}), 10).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Running, 60).await;
    let slurm_id = stack.slurm_id(&job);
    let counter = stack.job_dir("alice", &job).join("counter.txt");
    wait_growth(&counter, "while running").await;

    // Another user's request changes nothing.
    let r = stack.sim.suspend_job_as(Some("bob#1"), &job).await.unwrap();
    assert_refused(&r, 404, "not found");
    wait_growth(&counter, "after bob's refused suspend").await;

    let r = stack.sim.suspend_job(&job).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&job, JobState::Suspended, 30).await;
    assert_eq!(squeue_state(slurm_id), "SUSPENDED");
    let stopped_at = size(&counter);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(size(&counter), stopped_at, "no writes while suspended");
    // Suspending again is harmless (Slurm accepts it); bob cannot continue it.
    assert!(stack.sim.suspend_job(&job).await.unwrap().accepted_by_core());
    let r = stack.sim.unsuspend_job_as(Some("bob#1"), &job).await.unwrap();
    assert_refused(&r, 404, "not found");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(size(&counter), stopped_at, "still stopped");

    let r = stack.sim.unsuspend_job(&job).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&job, JobState::Running, 30).await;
    wait_growth(&counter, "after unsuspend").await;
    let r = stack.sim.unsuspend_job(&job).await.unwrap();
    assert_refused(&r, 409, "is not suspended");
    assert_eq!(stack.states(&job), [JobState::InQueue, JobState::Running, JobState::Suspended, JobState::Running]);

    assert!(stack.sim.terminate_job(&job).await.unwrap().accepted_by_core());
    stack.wait_state(&job, JobState::Success, 60).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_say_why_they_wait_and_refuse_suspend_and_long_extensions() {
    if !enabled() {
        return;
    }
    let stack = stack("queued", 45040).await;
    // 20 minutes on a partition allowing 10: Slurm queues it for good (PartitionTimeLimit).
    let short = ProductReference { id: "short-1".into(), category: "cpu".into(), provider: PROVIDER.into() };
    let spec = stack.sim.new_job("alice#1234", short, "print-id", Default::default(), Some(minutes(20)));
    let job = spec["id"].as_str().unwrap().to_string();
    let answer = stack.sim.create_job(&spec).await.unwrap();
    assert!(answer.accepted_by_core(), "{answer:?}");
    wait_status(&stack, &job, "In the queue: the requested time is longer than the partition allows", 30).await;
    assert_eq!(stack.sim.job_state(&job), Some(JobState::InQueue));
    let slurm_id = stack.slurm_id(&job);

    let r = stack.sim.suspend_job(&job).await.unwrap();
    assert_refused(&r, 409, &format!("Job {job} is still waiting in the queue; only a running job can be suspended"));
    let r = stack.sim.unsuspend_job(&job).await.unwrap();
    assert_refused(&r, 409, "still waiting in the queue");
    // The service user is an operator and Slurm would let it pass the partition's MaxTime: ucim does not.
    let r = stack.sim.extend_job(&job, minutes(5)).await.unwrap();
    assert_refused(&r, 409, "The partition short allows jobs of at most 10 min");
    assert_eq!(time_limit(slurm_id).await, Some(20));

    // The owner holds it: the new reason is told, once.
    let out = Command::new("runuser").args(["-u", "alice", "--", "scontrol", "hold", &slurm_id.to_string()]).output().unwrap();
    assert!(out.status.success(), "hold: {}", String::from_utf8_lossy(&out.stderr));
    wait_status(&stack, &job, "In the queue: held by its owner; it starts once released", 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let told = |words: &str| stack.sim.job_updates(&job).iter().filter(|u| u.status.as_deref().is_some_and(|s| s.contains(words))).count();
    assert_eq!(told("held by its owner"), 1);
    assert_eq!(told("longer than the partition allows"), 1);
    assert_eq!(stack.sim.job_state(&job), Some(JobState::InQueue));

    // The product's queue status reaches the Core.
    let products = stack.sim.call(reqwest::Method::GET, "/jobs/retrieveProducts", None, None).await.unwrap();
    let support: Vec<Value> = products.body["responses"].as_array().cloned().unwrap_or_default();
    let cpu = support.iter().find(|s| s["product"]["id"] == "cpu-1").expect("cpu-1 supported");
    assert!(["AVAILABLE", "BUSY", "FULL"].contains(&cpu["queueStatus"].as_str().unwrap_or("")), "{cpu}");
    assert_eq!(cpu["native"], json!({"enabled": true, "timeExtension": true, "suspension": true}));

    assert!(stack.sim.terminate_job(&job).await.unwrap().accepted_by_core());
    stack.wait_state(&job, JobState::Success, 60).await;

    // A finished job refuses all three, in words.
    let (done, answer) = stack.submit("alice#1234", "print-id", json!({}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&done, JobState::Success, 60).await;
    assert_refused(&stack.sim.suspend_job(&done).await.unwrap(), 409, &format!("Job {done} has already ended"));
    assert_refused(&stack.sim.unsuspend_job(&done).await.unwrap(), 409, "has already ended");
    assert_refused(&stack.sim.extend_job(&done, minutes(5)).await.unwrap(), 409, "has already ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_time_limit_ends_expired_in_words() {
    if !enabled() {
        return;
    }
    let stack = stack("expired", 45060).await;
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": int(300)}), 1).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Running, 60).await;
    assert_eq!(time_limit(stack.slurm_id(&job)).await, Some(1));
    // Slurm checks limits every 30 s and then allows KillWait (5 s): 1–2 minutes in all.
    stack.wait_state(&job, JobState::Expired, 180).await;
    let last = stack.sim.job_updates(&job).last().cloned().unwrap();
    assert_eq!(last.status.as_deref(), Some("The job reached its time limit (1 min)"));
    assert_eq!(stack.states(&job), [JobState::InQueue, JobState::Running, JobState::Expired]);
}
