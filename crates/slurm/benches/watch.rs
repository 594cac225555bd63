//! How long one monitor cycle's CPU work takes for 10,000 tracked jobs: parsing one squeue and one sacct
//! answer and diffing them against the watcher's state. Run: `cargo bench -p slurm --bench watch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use slurm::watch::{Phase, Watcher};
use slurm::{parse_sacct, parse_squeue};

const JOBS: u64 = 10_000;
const FIRST_ID: u64 = 1_000_000;
const WARMUP: usize = 3;
const ITERATIONS: usize = 31;

/// Synthetic answers in the exact shapes the client asks for, and a watcher tracking every job.
/// Mix per 10 jobs: 4 pending, 4 running (2 of them newly started), 1 completed, 1 failed with exit 3.
fn fixture() -> (String, String, Watcher) {
    let mut squeue = String::new();
    let mut sacct = String::new();
    let mut watcher = Watcher::new();
    for i in 0..JOBS {
        let id = FIRST_ID + i;
        let (q_state, reason, a_state, exit, start, nodes, tracked) = match i % 10 {
            0..=3 => (
                "PENDING",
                "Priority",
                "PENDING",
                "0:0",
                "Unknown",
                "None assigned",
                Phase::Queued,
            ),
            4 | 5 => (
                "RUNNING",
                "None",
                "PENDING",
                "0:0",
                "Unknown",
                "None assigned",
                Phase::Queued,
            ),
            6 | 7 => (
                "RUNNING",
                "None",
                "RUNNING",
                "0:0",
                "2026-11-24T11:23:44",
                "vm",
                Phase::Running,
            ),
            8 => (
                "COMPLETED",
                "None",
                "COMPLETED",
                "0:0",
                "2026-11-24T11:23:44",
                "vm",
                Phase::Running,
            ),
            _ => (
                "FAILED",
                "NonZeroExitCode",
                "FAILED",
                "3:0",
                "2026-11-24T11:23:44",
                "vm",
                Phase::Queued,
            ),
        };
        squeue.push_str(&format!("{id}|{q_state}|{reason}|1001\n"));
        let end = if a_state == "PENDING" || a_state == "RUNNING" {
            "Unknown"
        } else {
            "2026-11-24T11:25:01"
        };
        sacct.push_str(&format!(
            "{id}|{a_state}|{exit}|{start}|{end}|00:01:17|{nodes}\n"
        ));
        watcher.track(id, tracked);
    }
    (squeue, sacct, watcher)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let (squeue_text, sacct_text, base) = fixture();
    let mut totals = Vec::with_capacity(ITERATIONS);
    let mut parses = Vec::with_capacity(ITERATIONS);
    let mut transitions = 0;
    for i in 0..WARMUP + ITERATIONS {
        let mut watcher = base.clone();
        let t0 = Instant::now();
        let (Ok(q), Ok(a)) = (
            parse_squeue(black_box(&squeue_text)),
            parse_sacct(black_box(&sacct_text)),
        ) else {
            panic!("fixture must parse");
        };
        let t1 = Instant::now();
        let out = watcher.cycle(Some(&q), Some(&a));
        let t2 = Instant::now();
        transitions = black_box(out).len();
        if i >= WARMUP {
            totals.push(t2 - t0);
            parses.push(t1 - t0);
        }
    }
    // 2 newly running + 1 completed + 2 (running, then failed) per 10 jobs.
    assert_eq!(
        transitions as u64,
        JOBS / 2,
        "the fixture must produce transitions"
    );
    totals.sort();
    parses.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "parse+diff {JOBS} jobs: median {:.1} ms (min {:.1}, max {:.1}; {ITERATIONS} runs, {transitions} transitions/cycle)",
        ms(median(&totals)),
        ms(totals[0]),
        ms(totals[totals.len() - 1]),
    );
    println!(
        "  of which parse (squeue {} KiB + sacct {} KiB): median {:.1} ms",
        squeue_text.len() / 1024,
        sacct_text.len() / 1024,
        ms(median(&parses)),
    );
}
