//! The spine, end to end: a signed `jobs.create` becomes a real Slurm job run as the mapped unix user,
//! watched to its end, with every state change delivered to the (stand-in) Core in order.


use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::common::*;
use protocol::JobState;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn job_runs_as_the_mapped_user_and_reports_in_order() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("order", 43000).await;
    stack.map("alice#1234", "alice");
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": int(2)}), 5).await;
    assert!(answer.accepted_by_core(), "create refused: {answer:?}");
    let slurm_id: u64 = answer.body["responses"][0]["id"].as_str().unwrap().parse().unwrap();
    stack.wait_state(&job, JobState::Success, 60).await;
    assert_eq!(stack.states(&job), [JobState::InQueue, JobState::Running, JobState::Success]);
    let updates = stack.sim.job_updates(&job);
    assert!(updates[0].status.as_deref().unwrap().contains(&slurm_id.to_string()), "{updates:?}");

    let out = stack.job_dir("alice", &job).join("stdout.txt");
    let text = std::fs::read_to_string(&out).unwrap();
    let alice = uid_of("alice");
    assert!(text.contains(&format!("uid={alice}(alice)")), "job output: {text}");
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), alice, "output owned by alice");
    assert!(stack.sim.products().iter().any(|p| p.name == "cpu-1"), "products registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_ends_in_failure_with_its_exit_code() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("exit3", 43020).await;
    stack.map("alice#1234", "alice");
    let (job, answer) = stack.submit("alice#1234", "exit-code", json!({"code": int(3)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Failure, 60).await;
    let last = stack.sim.job_updates(&job).last().cloned().unwrap();
    assert!(last.status.as_deref().unwrap().contains("exit code 3"), "{last:?}");
    let states = stack.states(&job);
    assert_eq!(states.first(), Some(&JobState::InQueue));
    assert_eq!(states.last(), Some(&JobState::Failure));
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_cancels_a_running_job() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("terminate", 43040).await;
    stack.map("alice#1234", "alice");
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": int(300)}), 10).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Running, 60).await;
    let slurm_id = stack.slurm_id(&job);
    let r = stack.sim.terminate_job(&job).await.unwrap();
    assert!(r.accepted_by_core(), "{r:?}");
    stack.wait_state(&job, JobState::Success, 60).await;
    let last = stack.sim.job_updates(&job).last().cloned().unwrap();
    assert!(last.status.as_deref().unwrap().contains("cancelled by the user"), "{last:?}");
    // Accounting says CANCELLED (and ucim reports it) while slurmctld may still show the job COMPLETING.
    wait_slurm_ended(slurm_id, 30).await;
    assert!(squeue_state(slurm_id).starts_with("CANCELLED"), "slurm says {}", squeue_state(slurm_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn parameters_reach_the_job_verbatim_and_execute_nothing() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("verbatim", 43060).await;
    stack.map("alice#1234", "alice");
    let nasty = "$(touch /tmp/ucim-pwned) `id` 'single' \"double\" ; rm -rf ~ \n second line \\ $HOME";
    let (job, answer) = stack.submit("alice#1234", "echo", json!({"value": text(nasty)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Success, 60).await;
    let echoed = std::fs::read_to_string(stack.job_dir("alice", &job).join("echoed.txt")).unwrap();
    assert_eq!(echoed, nasty);
    assert!(!std::path::Path::new("/tmp/ucim-pwned").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a_clear_4xx_and_never_reach_slurm() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("badreq", 43080).await;
    stack.map("alice#1234", "alice");
    // Other tests submit as alice at the same time, so count only jobs whose working directory lies under this
    // stack's job root.
    let marker = format!("/{}/", stack.job_root);
    let count_jobs = || {
        let out = std::process::Command::new("squeue").args(["-h", "-u", "alice", "-t", "all", "-o", "%Z"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&marker)).count()
    };
    let before = count_jobs();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("no-such-app", json!({}), "not available"),
        // A file parameter naming nothing in the user's drive.
        ("print-id", json!({"seconds": {"type": "file", "path": "/1/x"}}), "no such file or folder"),
        ("print-id", json!({"bad name!": text("x")}), "not allowed"),
        ("print-id", json!({"seconds": {"type": "integer", "value": "five"}}), "malformed"),
    ];
    for (app, params, expect) in cases {
        let (_job, answer) = stack.submit("alice#1234", app, params, 5).await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert!(answer.why().unwrap_or_default().contains(expect), "{expect}: {answer:?}");
    }
    // An unknown product.
    let mut job = stack.sim.new_job("alice#1234", Stack::product(), "print-id", Default::default(), None);
    job["specification"]["product"]["id"] = json!("gpu-99");
    let answer = stack.sim.create_job(&job).await.unwrap();
    assert_eq!(answer.status, 400);
    assert!(answer.why().unwrap().contains("Unknown product"), "{answer:?}");
    // No time allocation.
    let job = stack.sim.new_job("alice#1234", Stack::product(), "print-id", Default::default(), None);
    let answer = stack.sim.create_job(&job).await.unwrap();
    assert_eq!(answer.status, 400);
    assert!(answer.why().unwrap().contains("time allocation"), "{answer:?}");
    // An unmapped user: refused by the server, no instance started.
    let (_job, answer) = stack.submit("mallory#1", "print-id", json!({}), 5).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.why().unwrap().contains("not connected"), "{answer:?}");
    // Malformed body.
    let r = stack.sim.call(reqwest::Method::POST, "/jobs", Some("alice#1234"), Some(json!({"items": "nope"}))).await.unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(count_jobs(), before, "nothing reached Slurm");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_and_restart_deliver_every_change_once() {
    if !enabled() {
        return;
    }
    let mut stack = Stack::start("sigkill", 43100).await;
    stack.map("alice#1234", "alice");
    stack.map("bob#1", "bob");
    // Long enough to be seen running even when a loaded Slurm makes the monitor poll slowly.
    let (a, ra) = stack.submit("alice#1234", "print-id", json!({"seconds": int(20)}), 5).await;
    let (b, rb) = stack.submit("bob#1", "exit-code", json!({"code": int(4)}), 5).await;
    assert!(ra.accepted_by_core() && rb.accepted_by_core(), "{ra:?} {rb:?}");
    stack.wait_state(&a, JobState::Running, 60).await;

    stack.kill_server();
    // While the server is dead the jobs finish, and the Core goes down too for a while.
    stack.sim.set_unavailable(true);
    for job in [&a, &b] {
        wait_slurm_ended(stack.slurm_id(job), 60).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.start_server().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.sim.set_unavailable(false);

    stack.wait_state(&a, JobState::Success, 60).await;
    stack.wait_state(&b, JobState::Failure, 60).await;
    assert_eq!(stack.states(&a), [JobState::InQueue, JobState::Running, JobState::Success]);
    // bob's job exited at once: it may have been seen running or not, but it ran, so RUNNING is reported.
    assert_eq!(stack.states(&b), [JobState::InQueue, JobState::Running, JobState::Failure]);
    // Each state was applied once.
    for job in [&a, &b] {
        let applied: Vec<_> = stack.sim.job_updates(job).into_iter().filter_map(|u| u.state).collect();
        let mut dedup = applied.clone();
        dedup.dedup();
        assert_eq!(applied, dedup, "job {job} got a state twice: {applied:?}");
    }
}
