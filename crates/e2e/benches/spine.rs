//! Spine figures on the real cluster (run by `dev/bench-spine.sh`, as root, after `dev/setup.sh`):
//! Slurm calls per poll cycle with 1,000 tracked jobs, and create → RUNNING latency through the whole stack.
//! Parse+diff time for 10,000 jobs is the `slurm` crate's own bench (`cargo bench -p slurm --bench watch`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::JobState;
use serde_json::json;

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root after dev/setup.sh (dev/bench-spine.sh does both)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(calls_per_cycle(1000));
    rt.block_on(create_to_running(7));
}

async fn calls_per_cycle(n: usize) {
    let out = Command::new("runuser")
        .args(["-u", "alice", "--", "bash", "-c"])
        .arg(format!("for i in $(seq {n}); do sbatch --hold --parsable -J ucim-bench -o /dev/null --wrap true; done"))
        .output()
        .unwrap();
    let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(';').next()?.trim().parse().ok()).collect();
    assert_eq!(ids.len(), n, "sbatch: {}", String::from_utf8_lossy(&out.stderr));
    let store = Arc::new(store::Store::open_in_memory().unwrap());
    let slurm = Arc::new(slurm::SlurmClient::new(None, Duration::from_secs(30)));
    let monitor = server::monitor::Monitor::new(store, slurm, Arc::new(tokio::sync::Notify::new()));
    for (i, id) in ids.iter().enumerate() {
        monitor.track(*id, &format!("bench-{i}"));
    }
    let mut times = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let report = monitor.cycle().await;
        times.push(t.elapsed());
        assert!(report.squeue_ok && report.sacct_ok, "{report:?}");
        calls.push(report.slurm_calls);
    }
    let _ = Command::new("scancel").args(["-u", "alice", "-n", "ucim-bench"]).status();
    times.sort();
    println!(
        "slurm calls per poll cycle with {} tracked jobs: {:?} (one squeue + one sacct); cycle wall time median {:.1} ms",
        monitor.tracked_count(),
        calls,
        times[times.len() / 2].as_secs_f64() * 1e3
    );
}

async fn create_to_running(n: usize) {
    let stack = common::Stack::start("bench", 44000).await;
    stack.map("alice#1234", "alice");
    let mut latencies = Vec::new();
    let mut create_calls = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(3)}), 5).await;
        create_calls.push((t.elapsed(), answer.attempts));
        assert!(answer.accepted_by_core(), "{answer:?}");
        loop {
            if stack.sim.job_state(&job) == Some(JobState::Running) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "job {job} never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let latency = t.elapsed();
        if i > 0 {
            latencies.push(latency);
        }
        stack.wait_state(&job, JobState::Success, 60).await;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "first jobs.create incl. instance cold start (449 → init → retry, {} attempts): {:.0} ms",
        create_calls[0].1,
        ms(create_calls[0].0)
    );
    let warm: Vec<f64> = create_calls[1..].iter().map(|(d, _)| ms(*d)).collect();
    println!("warm jobs.create call: median {:.1} ms", median(&warm));
    println!(
        "create → RUNNING update at the Core (warm, poll interval 300 ms, {} jobs): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(*latencies.last().unwrap())
    );
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
