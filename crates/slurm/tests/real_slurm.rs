//! Against the live dev cluster (dev/slurm-dev-cluster.sh): runs only with `UCIM_REAL_SLURM=1`, as root.
//! Jobs are submitted as root, write into a fresh directory under /tmp, and are cancelled if a test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slurm::watch::{End, Phase, Transition, Watcher};
use slurm::{
    render_script, ExitStatus, ScriptSpec, SlurmClient, SlurmError, SlurmJobId, SlurmState,
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

/// Polls like the server's monitor (one squeue + one sacct per cycle) until `done` or the deadline.
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
        let sacct = client.sacct(&ids).await;
        assert_eq!(
            client.calls() - before,
            2,
            "one squeue and one sacct per cycle"
        );
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
