//! Issue 4: the life of per-user instances — lazy single-flight start, crash restart, idle stop, restart on
//! a unix group change, and stop with the server. Uses the users dave and erin, which no other test
//! touches (their instances and groups are changed here).

use std::process::Command;

use crate::common::*;
use serde_json::{json, Value};

fn instances(stack: &Stack) -> Vec<Value> {
    let out = stack.admin(&["--json", "instances"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn instance_pid(stack: &Stack, user: &str) -> Option<i32> {
    instances(stack).iter().find(|i| i["unix_user"] == user).and_then(|i| i["pid"].as_i64()).map(|p| p as i32)
}

/// `ucim user` processes running as `user` (the instance itself, not its sudo parent).
fn instance_processes(user: &str) -> Vec<i32> {
    let out = Command::new("pgrep").args(["-u", user, "-f", "ucim user$"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A cheap user-scoped call that needs the instance: terminating a job the provider never saw (404).
async fn poke(stack: &Stack, user: &str) -> ucloud_sim::CallResult {
    let job = stack.sim.new_job(user, Stack::product(), "print-id", Default::default(), None);
    stack.sim.call(reqwest::Method::POST, "/jobs/terminate", Some(user), Some(json!({"items": [job]}))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_start_once_restart_after_crashes_and_stop_when_idle() {
    if !enabled() {
        return;
    }
    let options = Options { server: "instance_idle_secs = 4".into(), ..Default::default() };
    let mut stack = Stack::start_with("lifecycle", 43380, options).await;
    stack.map("dave#1", "dave");

    // 20 concurrent first calls: one instance.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let sim = stack.sim.clone();
        calls.spawn(async move {
            sim.call(reqwest::Method::POST, "/integration/init", Some("dave#1"), Some(json!({"username": "dave#1"}))).await.unwrap()
        });
    }
    let answers = calls.join_all().await;
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_eq!(instances(&stack).len(), 1, "{:?}", instances(&stack));
    assert_eq!(instance_processes("dave").len(), 1);
    let first = instance_pid(&stack, "dave").expect("dave's instance");

    // Killed: restarted (by the crash watcher or the next call), and the next call succeeds.
    let victim = instance_processes("dave")[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let r = poke(&stack, "dave#1").await;
    assert_eq!(r.status, 404, "the instance answered (unknown job): {r:?}");
    let second = instance_pid(&stack, "dave").expect("restarted");
    assert_ne!(first, second);
    assert!(stack.server_log().contains("instance exited unexpectedly"));

    // Idle: stops by itself.
    wait_until("the idle instance to stop", 20, || instances(&stack).is_empty() && instance_processes("dave").is_empty()).await;
    assert!(stack.server_log().contains("why=\"idle\""), "{}", stack.server_log());
    // And starts again on demand.
    assert_eq!(poke(&stack, "dave#1").await.status, 404);
    assert_eq!(instance_processes("dave").len(), 1);

    // The server stops: so do its instances.
    stack.stop_server();
    wait_until("instances to exit with the server", 10, || instance_processes("dave").is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_change_restarts_the_instance_with_the_new_groups() {
    if !enabled() {
        return;
    }
    let stack = Stack::start("groups", 43400).await;
    stack.map("erin#1", "erin");
    assert_eq!(poke(&stack, "erin#1").await.status, 404);
    let before = instance_pid(&stack, "erin").unwrap();
    let group = format!("ucimg{}", std::process::id() % 100_000);
    assert!(Command::new("groupadd").arg(&group).status().unwrap().success());
    let gid = String::from_utf8_lossy(&Command::new("getent").args(["group", &group]).output().unwrap().stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .to_string();
    assert!(Command::new("gpasswd").args(["-a", "erin", &group]).output().unwrap().status.success());
    wait_until("a restart after the group change", 30, || instance_pid(&stack, "erin").is_some_and(|p| p != before)).await;
    let pids = instance_processes("erin");
    assert_eq!(pids.len(), 1);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(groups.split_whitespace().any(|g| g == gid), "new instance lacks gid {gid}: {groups}");
    let _ = Command::new("groupdel").arg(&group).status();
}
