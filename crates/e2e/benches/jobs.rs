//! Jobs figures on the real cluster (run by `dev/bench-jobs.sh`, as root, with the stack installed):
//! create → RUNNING latency (median over 20 jobs), and `jobs.create` throughput for 200 jobs through the
//! stand-in Core against a raw `sbatch` loop of the same 200 jobs as the same user, as a ratio.
//! Every job it made is cancelled at the end.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use protocol::JobState;
use serde_json::json;

const LATENCY_JOBS: usize = 20;
const THROUGHPUT_JOBS: usize = 200;

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root with the stack installed (dev/bench-jobs.sh does it)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

fn cancel(ids: &[u64]) {
    for chunk in ids.chunks(100) {
        let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
        let _ = Command::new("scancel").args(&list).status();
    }
}

async fn run() {
    let port = std::env::var("UCIM_BENCH_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(48400);
    let stack = common::Stack::start("bench-jobs", port).await;
    stack.map("alice#1234", "alice");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    // Warm the instance (its cold start is bench-spine's figure).
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(0)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Success, 120).await;

    let mut latencies = Vec::new();
    let latency_jobs = std::env::var("UCIM_BENCH_LATENCY_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(LATENCY_JOBS).max(1);
    for _ in 0..latency_jobs {
        let t = Instant::now();
        let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(0)}), 5).await;
        assert!(answer.accepted_by_core(), "{answer:?}");
        while !matches!(stack.sim.job_state(&job), Some(JobState::Running | JobState::Success)) {
            assert!(t.elapsed() < Duration::from_secs(120), "job {job} never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t.elapsed());
        stack.wait_state(&job, JobState::Success, 120).await;
    }
    latencies.sort();
    println!(
        "create → RUNNING at the Core ({} warm jobs, poll interval 300 ms): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(*latencies.last().unwrap())
    );

    // Throughput: the same 200 jobs (1 CPU, 1 GiB, 5 min, `id; sleep 300`; most wait in the queue), through
    // ucim (one jobs.create after another, as the Core's calls arrive) and by a raw sbatch loop as alice.
    let t = Instant::now();
    let mut ucim_ids = Vec::new();
    for _ in 0..THROUGHPUT_JOBS {
        let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(300)}), 5).await;
        assert!(answer.accepted_by_core(), "{answer:?}");
        ucim_ids.push(stack.slurm_id(&job));
    }
    let ucim = t.elapsed();
    let dir = format!("/tmp/ucim-bench-raw-{}", std::process::id());
    let script = format!(
        "mkdir -p {dir} && cd {dir} && for i in $(seq {THROUGHPUT_JOBS}); do sbatch --parsable -J raw-bench -p cpu --nodes=1 \
         --ntasks-per-node=1 --cpus-per-task=1 --mem=1G --time=5 -o {dir}/out.txt -e {dir}/err.txt --wrap 'id; sleep 300'; done"
    );
    let t = Instant::now();
    let out = Command::new("runuser").args(["-u", "alice", "--", "bash", "-c", &script]).output().unwrap();
    let raw = t.elapsed();
    let raw_ids: Vec<u64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(';').next()?.trim().parse().ok()).collect();
    cancel(&ucim_ids);
    cancel(&raw_ids);
    let _ = Command::new("rm").args(["-rf", &dir]).status();
    assert_eq!(raw_ids.len(), THROUGHPUT_JOBS, "raw sbatch: {}", String::from_utf8_lossy(&out.stderr));
    let rate = |d: Duration| THROUGHPUT_JOBS as f64 / d.as_secs_f64();
    println!(
        "{THROUGHPUT_JOBS} jobs: through ucim {:.1} s ({:.1} jobs/s), raw sbatch loop {:.1} s ({:.1} jobs/s): ratio {:.2}× (goal ≥ 0.8×)",
        ucim.as_secs_f64(),
        rate(ucim),
        raw.as_secs_f64(),
        rate(raw),
        rate(ucim) / rate(raw)
    );
    println!("cancelled {} bench jobs", ucim_ids.len() + raw_ids.len());
}
