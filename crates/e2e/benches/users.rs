//! Issue 4 figures on the real machine (run by `dev/bench-users.sh`, as root, after `dev/setup.sh`, which
//! also makes the bench accounts ucimb01..ucimb50):
//! - instance cold start: `integration/init` request → answer, sudo and the nonce handshake included;
//! - idle RSS of one instance;
//! - server RSS with 1,000 mapped UCloud users, 50 of them with running instances.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

const ACCOUNTS: usize = 50;
const UCLOUD_USERS: usize = 1000;

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root (dev/bench-users.sh does it)");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pids_of(pattern: &str, user: Option<&str>) -> Vec<i32> {
    let mut cmd = std::process::Command::new("pgrep");
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.args(["-f", pattern]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

async fn init(stack: &common::Stack, user: &str) -> Duration {
    let t = Instant::now();
    let r = stack
        .sim
        .call(reqwest::Method::POST, "/integration/init", Some(user), Some(json!({"username": user})))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.attempts, 1, "a cold start must answer in one call");
    t.elapsed()
}

async fn run() {
    let options = common::Options { max_instances: Some(60), ..Default::default() };
    let stack = common::Stack::start_with("benchusers", 44100, options).await;

    // Cold start, repeatedly: unmapping stops the instance, mapping again lets the next init start one.
    let mut cold = Vec::new();
    for _ in 0..10 {
        stack.map("dave#1", "dave");
        cold.push(init(&stack, "dave#1").await);
        let out = stack.admin(&["unmap", "dave#1"]);
        assert!(out.status.success());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cold.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "instance cold start (init request → answer, sudo included), 10 runs: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(cold[cold.len() / 2]),
        ms(cold[0]),
        ms(cold[cold.len() - 1])
    );
    stack.map("dave#1", "dave");
    init(&stack, "dave#1").await;
    let warm = Instant::now();
    init(&stack, "dave#1").await;
    println!("init with the instance already running: {:.1} ms", ms(warm.elapsed()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dave = pids_of("ucim user$", Some("dave"));
    println!("idle RSS of one instance: {} KiB", dave.first().map(|p| rss_kib(*p)).unwrap_or(0));

    // 1,000 mapped UCloud users over 50 accounts; one running instance per account.
    let t = Instant::now();
    for i in 0..UCLOUD_USERS {
        stack.map(&format!("bench#{i}"), &format!("ucimb{:02}", i % ACCOUNTS + 1));
    }
    println!("mapped {UCLOUD_USERS} UCloud users with `ucim admin map` in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..ACCOUNTS {
        let sim = stack.sim.clone();
        starts.spawn(async move {
            let user = format!("bench#{i}");
            let r = sim.call(reqwest::Method::POST, "/integration/init", Some(&user), Some(json!({"username": user}))).await.unwrap();
            assert_eq!(r.status, 200, "{r:?}");
        });
    }
    starts.join_all().await;
    println!("started {ACCOUNTS} instances concurrently in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = pids_of(&format!("ucim server --config {}", stack.config_path.display()), Some("ucloud"));
    let instances: Vec<i32> = (1..=ACCOUNTS).flat_map(|i| pids_of("ucim user$", Some(&format!("ucimb{i:02}")))).collect();
    assert_eq!(instances.len(), ACCOUNTS, "one instance per account");
    let total: u64 = instances.iter().map(|p| rss_kib(*p)).sum();
    println!(
        "server RSS with {UCLOUD_USERS} mapped users and {ACCOUNTS} running instances: {} KiB; instances: {} KiB in total, {} KiB each on average",
        server.first().map(|p| rss_kib(*p)).unwrap_or(0),
        total,
        total / ACCOUNTS as u64
    );
}
