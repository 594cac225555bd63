//! Jobs figures on the real cluster (run by `dev/bench-jobs.sh`, as root, with the stack installed):
//! create → RUNNING latency (median over 20 jobs), and `jobs.create` throughput for 200 jobs through the
//! stand-in Core against a raw `sbatch` loop of the same 200 jobs as the same user, as a ratio, through the
//! ingress (as deployed) and straight to the server (on a cluster filled first, all taking turns; the
//! server polls at the production interval, 1 s, or `UCIM_BENCH_POLL_MS`).
//! Every job it made is cancelled at the end.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use protocol::JobState;
use serde_json::json;

const LATENCY_JOBS: usize = 20;
const THROUGHPUT_JOBS: usize = 200;
const ROUNDS: usize = 4;

fn main() {
    if std::env::var("UCIM_E2E").as_deref() != Ok("1") {
        eprintln!("set UCIM_E2E=1 and run as root with the stack installed (dev/bench-jobs.sh does it)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

/// `n` jobs of the measured shape by a raw `sbatch` loop as alice: (Slurm ids, stderr).
fn raw_sbatch(dir: &str, n: usize) -> (Vec<u64>, String) {
    let script = format!(
        "mkdir -p {dir} && cd {dir} && for i in $(seq {n}); do sbatch --parsable -J raw-bench -p cpu --nodes=1 \
         --ntasks-per-node=1 --cpus-per-task=1 --mem=1G --time=5 -o {dir}/out.txt -e {dir}/err.txt --wrap 'id; sleep 300'; done"
    );
    let out = Command::new("runuser").args(["-u", "alice", "--", "bash", "-c", &script]).output().unwrap();
    let ids = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(';').next()?.trim().parse().ok()).collect();
    (ids, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Submits raw jobs of the measured shape until one has to wait for resources, and waits until every one
/// that can run is running: then the measured jobs all just queue. Returns the fillers' ids.
fn fill_cluster(dir: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the cluster never filled up");
        let (mut more, stderr) = raw_sbatch(dir, 4);
        assert_eq!(more.len(), 4, "raw sbatch: {stderr}");
        ids.append(&mut more);
        std::thread::sleep(Duration::from_secs(2));
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let out = Command::new("squeue").args(["-h", "-j", &list.join(","), "-o", "%T|%r"]).output().unwrap();
        let rows = String::from_utf8_lossy(&out.stdout).into_owned();
        // Behind the first job waiting for resources, later ones wait with reason Priority.
        let settled = !rows.lines().any(|l| l.starts_with("CONFIGURING") || l == "PENDING|None");
        if settled && rows.lines().any(|l| l == "PENDING|Resources") {
            return ids;
        }
    }
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

    // Throughput: the same 200 jobs (1 CPU, 1 GiB, 5 min, `id; sleep 300`), through ucim (one jobs.create
    // after another, as the Core's calls arrive) and by a raw sbatch loop as alice. ucim is timed two ways:
    // as deployed (the Core calls `ucim ingress` over TLS, which sends user calls straight to the instance)
    // and without an ingress (the Core calls the server, which forwards to the instance). All meet the same
    // cluster: it is first filled with raw jobs of that shape (so no measured job starts: starting jobs
    // costs the node far more CPU than submitting them, and only the first phase would pay it), and they
    // take turns (ROUNDS each), so none alone meets the longer queue or a noisy stretch of the machine.
    // The server runs with the production poll interval here (1 s unless UCIM_BENCH_POLL_MS says
    // otherwise): the tests' 300 ms makes the monitor ask slurmctld three times as often while jobs arrive.
    drop(stack);
    let poll_ms: u64 = std::env::var("UCIM_BENCH_POLL_MS").ok().and_then(|p| p.parse().ok()).unwrap_or(1000);
    let ingress = common::IngressOptions { port: port + 99, extra: String::new() };
    let options = common::Options { poll_interval_ms: Some(poll_ms), ingress: Some(ingress), ..Default::default() };
    let stack = common::Stack::start_with("bench-jobs-throughput", port + 100, options).await;
    let (via_ingress, via_server) = (stack.ingress_url.clone().unwrap(), stack.provider_url.clone());
    stack.map("alice#1234", "alice");
    let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(0)}), 5).await;
    assert!(answer.accepted_by_core(), "{answer:?}");
    stack.wait_state(&job, JobState::Success, 120).await;
    let dir = format!("/tmp/ucim-bench-raw-{}", std::process::id());
    let mut raw_ids = fill_cluster(&dir);
    let fillers = raw_ids.len();
    let (mut ingress, mut server, mut raw) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut ucim_ids = Vec::new();
    let per_round = THROUGHPUT_JOBS / ROUNDS;
    for _ in 0..ROUNDS {
        for (url, total) in [(&via_ingress, &mut ingress), (&via_server, &mut server)] {
            stack.sim.set_provider_url(url);
            let t = Instant::now();
            for _ in 0..per_round {
                let (job, answer) = stack.submit("alice#1234", "print-id", json!({"seconds": common::int(300)}), 5).await;
                assert!(answer.accepted_by_core(), "{answer:?}");
                ucim_ids.push(stack.slurm_id(&job));
            }
            *total += t.elapsed();
        }
        let t = Instant::now();
        let (ids, stderr) = raw_sbatch(&dir, per_round);
        raw += t.elapsed();
        assert_eq!(ids.len(), per_round, "raw sbatch: {stderr}");
        raw_ids.extend(ids);
    }
    cancel(&ucim_ids);
    cancel(&raw_ids);
    let _ = Command::new("rm").args(["-rf", &dir]).status();
    println!(
        "cluster filled first ({fillers} raw jobs); ucim (poll interval {poll_ms} ms, two ways) and the raw loop took {ROUNDS} turns each, {per_round} jobs a turn"
    );
    let rate = |d: Duration| THROUGHPUT_JOBS as f64 / d.as_secs_f64();
    println!("{THROUGHPUT_JOBS} jobs by a raw sbatch loop: {:.2} s ({:.1} jobs/s)", raw.as_secs_f64(), rate(raw));
    for (how, total) in [("through ucim ingress (TLS) → instance, as deployed", ingress), ("through the server → instance, no ingress", server)] {
        println!(
            "{THROUGHPUT_JOBS} jobs {how}: {:.2} s ({:.1} jobs/s): ratio {:.2}× the raw loop (goal ≥ 0.8×)",
            total.as_secs_f64(),
            rate(total),
            rate(total) / rate(raw)
        );
    }
    println!("cancelled {} bench jobs", ucim_ids.len() + raw_ids.len());
}
