//! Against the live dev cluster (dev/slurm-dev-cluster.sh): runs only with `UCIM_REAL_SLURM=1`, as root.
//! Jobs are submitted as root, write into a fresh directory under /tmp, and are cancelled if a test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slurm::watch::{End, Phase, Transition, Watcher};
use slurm::{
    pending_reason_text, queue_status, render_script, ExitStatus, JobInfo, ScriptSpec, SlurmClient,
    SlurmError, SlurmJobId, SlurmState,
};

/// Above any id the dev cluster hands out soon, below MaxJobId (67043328).
const UNKNOWN_ID: SlurmJobId = 67_000_000;

fn enabled(test: &str) -> bool {
    let on = std::env::var("UCIM_REAL_SLURM").as_deref() == Ok("1");
    if !on {
        eprintln!("{test}: skipped (set UCIM_REAL_SLURM=1 to run against the live Slurm cluster)");
    }
    on
}

fn client() -> SlurmClient {
    SlurmClient::new(None, Duration::from_secs(30))
}

/// A scratch directory, removed on drop; jobs registered here are cancelled on drop too.
struct Scratch {
    dir: PathBuf,
    jobs: Vec<SlurmJobId>,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ucim-slurm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch {
            dir,
            jobs: Vec::new(),
        }
    }

    fn script(&self, name: &str, spec: &ScriptSpec) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, render_script(spec).expect("renders")).expect("write script");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in &self.jobs {
            let _ = std::process::Command::new("scancel")
                .arg(id.to_string())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls like the server's monitor (one squeue, then one sacct about the jobs squeue does not show waiting
/// or running, if any) until `done` or the deadline.
async fn watch_until(
    client: &SlurmClient,
    watcher: &mut Watcher,
    deadline: Duration,
    mut done: impl FnMut(&[Transition], &Watcher) -> bool,
) -> Vec<Transition> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < deadline {
        let ids = watcher.tracked_ids();
        let before = client.calls();
        let squeue = client.squeue(&ids).await;
        let ask = slurm::watch::accounting_ids(&ids, squeue.as_deref().ok());
        let sacct = if ask.is_empty() { Ok(Vec::new()) } else { client.sacct(&ask).await };
        assert!(client.calls() - before <= 2, "one squeue and at most one sacct per cycle");
        if let Err(e) = &squeue {
            eprintln!("squeue failed: {e}");
        }
        if let Err(e) = &sacct {
            eprintln!("sacct failed: {e}");
        }
        seen.extend(watcher.cycle(squeue.as_deref().ok(), sacct.as_deref().ok()));
        if done(&seen, watcher) {
            eprintln!("after {:.1} s: {seen:?}", start.elapsed().as_secs_f64());
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {deadline:?}; transitions so far: {seen:?}");
}

#[tokio::test]
async fn unknown_ids_give_empty_answers() {
    if !enabled("unknown_ids_give_empty_answers") {
        return;
    }
    let c = client();
    // One unknown id makes squeue exit 1 ("Invalid job id specified"); several make it print nothing.
    assert_eq!(
        c.squeue(&[UNKNOWN_ID]).await.expect("single unknown id"),
        vec![]
    );
    assert_eq!(
        c.squeue(&[UNKNOWN_ID, UNKNOWN_ID + 1])
            .await
            .expect("unknown ids"),
        vec![]
    );
    assert_eq!(
        c.sacct(&[UNKNOWN_ID]).await.expect("sacct unknown id"),
        vec![]
    );
    assert_eq!(
        c.sacct(&[UNKNOWN_ID, UNKNOWN_ID + 1])
            .await
            .expect("sacct unknown ids"),
        vec![]
    );
    assert_eq!(c.calls(), 4);
}

#[tokio::test]
async fn failing_job_ends_failed_with_exit_code_and_verbatim_parameters() {
    if !enabled("failing_job_ends_failed_with_exit_code_and_verbatim_parameters") {
        return;
    }
    let c = client();
    let mut scratch = Scratch::new("exit3");
    let values: Vec<(String, String)> = [
        ("P_SUBST", "$(id)"),
        ("P_TICKS", "`id`"),
        ("P_QUOTES", "it's \"quoted\""),
        ("P_LINES", "a\nb\r\nc\n"),
        ("P_EMPTY", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = scratch.dir.join("out.bin");
    let mut body = String::new();
    for (name, _) in &values {
        body.push_str(&format!(
            "printf '%s\\0' \"${name}\" >> {}\n",
            out.display()
        ));
    }
    body.push_str("exit 3\n");
    let spec = ScriptSpec {
        directives: vec![
            "--job-name=ucim-slurm-exit3".into(),
            "--time=5".into(),
            format!("--output={}/slurm-%j.out", scratch.dir.display()),
        ],
        env: values.clone(),
        body,
    };
    let script = scratch.script("exit3.sh", &spec);
    let id = c.sbatch(&[], &script).await.expect("sbatch");
    scratch.jobs.push(id);

    let mut w = Watcher::new();
    w.track(id, Phase::Queued);
    let seen = watch_until(&c, &mut w, Duration::from_secs(180), |_, w| w.is_empty()).await;
    let phases: Vec<&Phase> = seen.iter().map(|t| &t.to).collect();
    assert_eq!(
        phases,
        vec![
            &Phase::Running,
            &Phase::Ended(End {
                state: SlurmState::Failed,
                exit: Some(ExitStatus { code: 3, signal: 0 })
            })
        ],
        "{seen:?}"
    );
    assert_parameters_arrived(&out, &values);
}

fn assert_parameters_arrived(out: &Path, values: &[(String, String)]) {
    let bytes = std::fs::read(out).expect("job wrote its parameters");
    let got: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    assert_eq!(got.len(), values.len() + 1);
    for ((name, want), got) in values.iter().zip(got) {
        assert_eq!(String::from_utf8_lossy(got), *want, "{name}");
    }
}

#[tokio::test]
async fn cancelled_job_ends_cancelled_and_cancel_is_idempotent() {
    if !enabled("cancelled_job_ends_cancelled_and_cancel_is_idempotent") {
        return;
    }
    let c = client();
    let mut scratch = Scratch::new("cancel");
    let spec = ScriptSpec {
        directives: vec![
            "--job-name=ucim-slurm-cancel".into(),
            "--time=5".into(),
            "--output=/dev/null".into(),
        ],
        env: vec![],
        body: "sleep 300\n".into(),
    };
    let script = scratch.script("sleep.sh", &spec);
    let id = c.sbatch(&[], &script).await.expect("sbatch");
    scratch.jobs.push(id);

    let mut w = Watcher::new();
    w.track(id, Phase::Queued);
    // Wait until it runs (the cluster may be busy with other tests' jobs).
    watch_until(&c, &mut w, Duration::from_secs(180), |_, w| {
        w.phase(id) == Some(&Phase::Running)
    })
    .await;
    c.scancel(id).await.expect("scancel");
    let seen = watch_until(&c, &mut w, Duration::from_secs(60), |_, w| w.is_empty()).await;
    match seen.last().map(|t| &t.to) {
        Some(Phase::Ended(End {
            state: SlurmState::Cancelled,
            ..
        })) => {}
        other => panic!("expected Cancelled, got {other:?} in {seen:?}"),
    }
    c.scancel(id)
        .await
        .expect("cancelling an ended job is fine");
}

#[tokio::test]
async fn sbatch_refusal_is_a_clear_failure() {
    if !enabled("sbatch_refusal_is_a_clear_failure") {
        return;
    }
    let c = client();
    let scratch = Scratch::new("refused");
    let spec = ScriptSpec {
        body: "true\n".into(),
        ..Default::default()
    };
    let script = scratch.script("true.sh", &spec);
    let err = c
        .sbatch(&["--partition=ucim-nosuch".into()], &script)
        .await
        .expect_err("refused");
    assert!(matches!(err, SlurmError::Failed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("sbatch failed (exit 1): sbatch: error: "),
        "{msg}"
    );
    assert!(msg.contains("ucim-nosuch") && !msg.contains('\n'), "{msg}");
}

/// Polls `job_info` until `done` holds for the job's record, or panics after `deadline`.
async fn info_until(
    client: &SlurmClient,
    id: SlurmJobId,
    deadline: Duration,
    mut done: impl FnMut(&JobInfo) -> bool,
) -> JobInfo {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < deadline {
        if let Some(info) = client.job_info(id).await.expect("scontrol show job") {
            if done(&info) {
                return info;
            }
            last = Some(info);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {deadline:?}; last record: {last:?}");
}

/// Slurm's words from a refusal, checked to be a `Failed` scontrol call, and printed for the record.
fn refusal(what: &str, result: Result<(), SlurmError>) -> String {
    let err = result.expect_err(what);
    assert!(matches!(err, SlurmError::Failed { .. }), "{what}: {err:?}");
    let msg = err.slurm_message().expect("Failed has Slurm's words");
    eprintln!("{what}: {err}");
    msg
}

fn sleeper(scratch: &Scratch, name: &str) -> PathBuf {
    let spec = ScriptSpec {
        body: "sleep 300\n".into(),
        ..Default::default()
    };
    scratch.script(name, &spec)
}

#[tokio::test]
async fn job_info_reads_the_record_and_time_limit_can_be_raised() {
    if !enabled("job_info_reads_the_record_and_time_limit_can_be_raised") {
        return;
    }
    let c = client();
    // A space in the directory and the name: scontrol prints both unquoted.
    let mut scratch = Scratch::new("info dir");
    let script = sleeper(&scratch, "sleep.sh");
    let args = [
        "--job-name=ucim slurm info".to_string(),
        format!("--chdir={}", scratch.dir.display()),
        "--time=5".into(),
        "--mem=64M".into(),
        "--output=/dev/null".into(),
    ];
    let id = c.sbatch(&args, &script).await.expect("sbatch");
    scratch.jobs.push(id);

    let info = info_until(&c, id, Duration::from_secs(180), |i| {
        i.state == SlurmState::Running
    })
    .await;
    assert_eq!(info.id, id);
    assert_eq!(info.name, "ucim slurm info");
    assert_eq!(info.work_dir.as_deref(), Some(scratch.dir.as_path()));
    assert_eq!(info.user_id, Some(0));
    assert_eq!(info.time_limit_minutes, Some(5));
    assert_eq!((info.num_nodes, info.num_cpus), (Some(1), Some(1)));
    assert!(info.node_list.is_some(), "{info:?}");
    assert_eq!(info.partition.as_deref(), Some("cpu"));
    assert_eq!((info.min_memory_mb, info.memory_per_cpu), (Some(64), false));
    assert_eq!(info.reason, "None");

    c.set_time_limit(id, 20).await.expect("raise the limit");
    let info = c.job_info(id).await.expect("show job").expect("known");
    assert_eq!(info.time_limit_minutes, Some(20));
    assert_eq!(info.state, SlurmState::Running);

    let before = c.calls();
    let err = c
        .set_time_limit(id, 0)
        .await
        .expect_err("0 would end the job");
    assert!(matches!(err, SlurmError::Invalid { .. }), "{err:?}");
    assert_eq!(c.calls(), before, "refused without calling Slurm");

    assert_eq!(c.job_info(UNKNOWN_ID).await.expect("unknown id"), None);
}

#[tokio::test]
async fn suspend_stops_the_job_and_resume_continues_it() {
    if !enabled("suspend_stops_the_job_and_resume_continues_it") {
        return;
    }
    let c = client();
    let mut scratch = Scratch::new("suspend");
    let count = scratch.dir.join("count");
    let spec = ScriptSpec {
        directives: vec![
            "--job-name=ucim-slurm-suspend".into(),
            "--time=5".into(),
            "--output=/dev/null".into(),
        ],
        env: vec![("COUNT".into(), count.display().to_string())],
        body: "i=0\nwhile true; do i=$((i+1)); echo $i >> \"$COUNT\"; sleep 0.2; done\n".into(),
    };
    let script = scratch.script("count.sh", &spec);
    let id = c.sbatch(&[], &script).await.expect("sbatch");
    scratch.jobs.push(id);
    let size = || std::fs::metadata(&count).map_or(0, |m| m.len());

    info_until(&c, id, Duration::from_secs(180), |i| {
        i.state == SlurmState::Running
    })
    .await;
    wait_for_growth(&size, "before suspend").await;

    c.suspend(id).await.expect("suspend");
    let rows = c.squeue(&[id]).await.expect("squeue");
    assert_eq!(rows[0].state, SlurmState::Suspended, "{rows:?}");
    // slurmd stops the processes a moment after slurmctld answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = size();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(size(), stopped_at, "no writes while suspended");
    c.suspend(id).await.expect("suspending twice is accepted");
    let info = c.job_info(id).await.expect("show job").expect("known");
    assert_eq!(info.state, SlurmState::Suspended);

    c.resume(id).await.expect("resume");
    wait_for_growth(&size, "after resume").await;
    let rows = c.squeue(&[id]).await.expect("squeue");
    assert_eq!(rows[0].state, SlurmState::Running, "{rows:?}");
    let msg = refusal("resume of a running job", c.resume(id).await);
    assert!(msg.starts_with("Job is not suspended"), "{msg}");
}

/// Waits up to 10 s for the file measured by `size` to grow.
async fn wait_for_growth(size: &impl Fn() -> u64, when: &str) {
    let start = Instant::now();
    let first = size();
    while size() <= first {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{when}: the job does not write"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn suspend_of_pending_finished_or_unknown_job_is_refused_in_slurms_words() {
    if !enabled("suspend_of_pending_finished_or_unknown_job_is_refused_in_slurms_words") {
        return;
    }
    let c = client();
    let mut scratch = Scratch::new("refusals");
    let script = sleeper(&scratch, "sleep.sh");
    let args = [
        "--hold".to_string(),
        "--time=5".into(),
        "--output=/dev/null".into(),
    ];
    let id = c.sbatch(&args, &script).await.expect("sbatch");
    scratch.jobs.push(id);

    let info = c.job_info(id).await.expect("show job").expect("known");
    assert_eq!(
        (&info.state, info.reason.as_str()),
        (&SlurmState::Pending, "JobHeldUser")
    );
    assert!(pending_reason_text(&info.reason).is_some_and(|t| t.contains("held")));
    let msg = refusal("suspend of a pending job", c.suspend(id).await);
    assert!(msg.starts_with("Job is pending execution"), "{msg}");
    let msg = refusal("resume of a pending job", c.resume(id).await);
    assert!(msg.starts_with("Job is pending execution"), "{msg}");

    c.scancel(id).await.expect("scancel");
    info_until(&c, id, Duration::from_secs(30), |i| i.state.is_terminal()).await;
    let msg = refusal("suspend of an ended job", c.suspend(id).await);
    assert!(
        msg.starts_with("Job/step already completing or completed"),
        "{msg}"
    );
    let msg = refusal("time limit of an ended job", c.set_time_limit(id, 10).await);
    assert!(msg.starts_with("Job has already finished"), "{msg}");

    let msg = refusal("suspend of an unknown job", c.suspend(UNKNOWN_ID).await);
    assert!(msg.contains(&UNKNOWN_ID.to_string()), "{msg}");
}

#[tokio::test]
async fn partition_load_shows_the_dev_partitions() {
    if !enabled("partition_load_shows_the_dev_partitions") {
        return;
    }
    let c = client();
    let loads = c.partition_load().await.expect("sinfo + squeue");
    assert_eq!(c.calls(), 2);
    eprintln!("{loads:?}");
    let cpu = loads
        .iter()
        .find(|l| l.partition == "cpu")
        .expect("the dev cluster's default partition");
    assert!(cpu.up && cpu.cpus_total > 0, "{cpu:?}");
    assert_eq!(
        cpu.cpus_allocated + cpu.cpus_idle + cpu.cpus_other,
        cpu.cpus_total
    );
    assert!(loads.iter().any(|l| l.partition == "short"));
    // Whatever other tests are running, the status follows the documented rule.
    assert_eq!(cpu.status(), queue_status(cpu, cpu.pending_jobs));
}
