//! Running Slurm's command-line tools: argv only (no shell), a timeout on every call, output captured.
//! scontrol operations live in `control.rs`, the partition load in `queue.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{one_line, SlurmError, MAX_STDERR};
use crate::parse::{parse_sacct, parse_squeue, AcctRow, QueueRow, SACCT_FIELDS, SQUEUE_FORMAT};
use crate::SlurmJobId;

/// Linux refuses a single argument longer than 128 KiB (MAX_ARG_STRLEN); stay well below it when joining ids.
const MAX_ID_LIST_BYTES: usize = 100_000;

/// Slurm's behaviour depends on these; the client strips them so output always has the shape it parses.
const STRIPPED_ENV: &[&str] = &[
    "SLURM_TIME_FORMAT",
    "SQUEUE_FORMAT",
    "SQUEUE_FORMAT2",
    "SACCT_FORMAT",
    "SLURM_CLUSTERS",
];

/// Output of a command that exited 0.
pub(crate) struct Captured {
    pub(crate) stdout: String,
}

/// Runs squeue, sacct, sbatch, scancel, scontrol and sinfo. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct SlurmClient {
    bin_dir: Option<PathBuf>,
    timeout: Duration,
    calls: AtomicU64,
}

impl SlurmClient {
    /// `bin_dir`: where the Slurm binaries live; `None` finds them in `PATH`. `timeout` bounds every call
    /// (slurmctld's own MessageTimeout is 10 s, so a call hanging much longer will not come back).
    pub fn new(bin_dir: Option<PathBuf>, timeout: Duration) -> SlurmClient {
        SlurmClient {
            bin_dir,
            timeout,
            calls: AtomicU64::new(0),
        }
    }

    /// Subprocesses started so far, so tests and benchmarks can check how many calls a cycle costs.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn program(&self, name: &str) -> OsString {
        match &self.bin_dir {
            Some(dir) => dir.join(name).into_os_string(),
            None => OsString::from(name),
        }
    }

    /// Runs `name args...`, killing it on timeout. Non-zero exit becomes [`SlurmError::Failed`].
    pub(crate) async fn run(&self, name: &str, args: &[OsString]) -> Result<Captured, SlurmError> {
        let mut cmd = Command::new(self.program(name));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in STRIPPED_ENV {
            cmd.env_remove(var);
        }
        let child = cmd.spawn().map_err(|source| SlurmError::Spawn {
            command: name.to_string(),
            source,
        })?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Dropping the future on timeout drops the child, and kill_on_drop sends SIGKILL (tokio reaps it).
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(result) => result.map_err(|source| SlurmError::Spawn {
                command: name.to_string(),
                source,
            })?,
            Err(_) => {
                tracing::warn!(command = name, timeout = ?self.timeout, "Slurm command timed out; killed");
                return Err(SlurmError::Timeout {
                    command: name.to_string(),
                    after: self.timeout,
                });
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let mut stderr = one_line(&String::from_utf8_lossy(&output.stderr), MAX_STDERR);
            if stderr.is_empty() {
                stderr = one_line(&stdout, MAX_STDERR);
            }
            if stderr.is_empty() {
                stderr = "(no output)".to_string();
            }
            return Err(SlurmError::Failed {
                command: name.to_string(),
                status: output.status,
                stderr,
            });
        }
        Ok(Captured { stdout })
    }

    /// One `squeue -h -t all -j IDS -o '%A|%T|%r|%U'` call. Jobs Slurm no longer knows are simply absent.
    ///
    /// `-t all` keeps finished jobs visible for MinJobAge. squeue rejects a *single* unknown id with rc 1
    /// ("Invalid job id specified") but prints nothing for several unknown ids; both mean "not known", so
    /// both are `Ok`. For id lists too long for one argument, squeue lists all jobs and this filters:
    /// squeue loads every job from slurmctld for a multi-id `-j` anyway, so it costs the same.
    pub async fn squeue(&self, ids: &[SlurmJobId]) -> Result<Vec<QueueRow>, SlurmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let joined = join_ids(ids);
        let mut args: Vec<OsString> = vec!["-h".into(), "-t".into(), "all".into()];
        let filter_locally = joined.len() > MAX_ID_LIST_BYTES;
        if !filter_locally {
            args.push("-j".into());
            args.push(joined.into());
        }
        args.push("-o".into());
        args.push(SQUEUE_FORMAT.into());
        let out = match self.run("squeue", &args).await {
            Ok(out) => out,
            Err(SlurmError::Failed { ref stderr, .. })
                if ids.len() == 1 && stderr.contains("Invalid job id specified") =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut rows = parse_squeue(&out.stdout)?;
        if filter_locally {
            let wanted: std::collections::HashSet<SlurmJobId> = ids.iter().copied().collect();
            rows.retain(|r| wanted.contains(&r.id));
        }
        Ok(rows)
    }

    /// One `sacct -X -n -P -j IDS -o JobID,State,ExitCode,Start,End,Elapsed,NodeList` call (more only when the
    /// id list is longer than one argument may be, ~10,000 ids). Unknown ids are simply absent.
    ///
    /// Fails when accounting is disabled ("Slurm accounting storage is disabled"); see
    /// [`crate::watch::Watcher::cycle`] for what a caller should pass then.
    pub async fn sacct(&self, ids: &[SlurmJobId]) -> Result<Vec<AcctRow>, SlurmError> {
        let mut rows = Vec::new();
        for chunk in chunk_ids(ids) {
            let args: Vec<OsString> = vec![
                "-X".into(),
                "-n".into(),
                "-P".into(),
                "-j".into(),
                chunk.into(),
                "-o".into(),
                SACCT_FIELDS.into(),
            ];
            let out = self.run("sacct", &args).await?;
            rows.extend(parse_sacct(&out.stdout)?);
        }
        Ok(rows)
    }

    /// `sbatch --parsable ARGS SCRIPT`; returns the new job's id (`--parsable` prints `123` or `123;cluster`).
    ///
    /// sbatch exports the caller's whole environment into the job unless `args` say otherwise
    /// (e.g. `--export=NONE`): run it from a process whose environment is fit for the job.
    pub async fn sbatch(&self, args: &[String], script: &Path) -> Result<SlurmJobId, SlurmError> {
        let mut argv: Vec<OsString> = Vec::with_capacity(args.len() + 2);
        argv.push("--parsable".into());
        argv.extend(args.iter().map(OsString::from));
        argv.push(script.as_os_str().to_owned());
        let out = self.run("sbatch", &argv).await?;
        parse_sbatch(&out.stdout)
    }

    /// `scancel ID`. Slurm (22.05, as root) exits 0 for jobs already finished or unknown, so cancelling is
    /// idempotent; a refusal (e.g. rc 210, "Access/permission denied") is [`SlurmError::Failed`].
    pub async fn scancel(&self, id: SlurmJobId) -> Result<(), SlurmError> {
        self.run("scancel", &[id.to_string().into()])
            .await
            .map(|_| ())
    }
}

fn join_ids(ids: &[SlurmJobId]) -> String {
    let mut s = String::with_capacity(ids.len() * 9);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s
}

/// Comma-joined id lists, each short enough for one argument. Empty input gives no chunks (and no call).
fn chunk_ids(ids: &[SlurmJobId]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for id in ids {
        let id = id.to_string();
        if !current.is_empty() && current.len() + 1 + id.len() > MAX_ID_LIST_BYTES {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&id);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Reads `sbatch --parsable` output: the last non-blank line, `ID` or `ID;CLUSTER`.
pub fn parse_sbatch(stdout: &str) -> Result<SlurmJobId, SlurmError> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    let id = line.split(';').next().unwrap_or("").trim();
    id.parse()
        .map_err(|_| SlurmError::parse("sbatch", line, "expected a job id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::fake_bin;

    #[test]
    fn sbatch_output() {
        assert_eq!(parse_sbatch("123\n").ok(), Some(123));
        assert_eq!(parse_sbatch("123;devcluster\n").ok(), Some(123));
        assert_eq!(parse_sbatch("note\n456\n\n").ok(), Some(456));
        assert!(matches!(parse_sbatch(""), Err(SlurmError::Parse { .. })));
        assert!(matches!(
            parse_sbatch("Submitted batch job 5"),
            Err(SlurmError::Parse { .. })
        ));
    }

    #[test]
    fn id_chunks_stay_under_the_argument_limit() {
        assert!(chunk_ids(&[]).is_empty());
        assert_eq!(chunk_ids(&[1, 2, 3]), vec!["1,2,3".to_string()]);
        let many: Vec<SlurmJobId> = (10_000_000..10_030_000).collect();
        let chunks = chunk_ids(&many);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_ID_LIST_BYTES));
        assert_eq!(chunks.join(","), join_ids(&many));
    }

    #[tokio::test]
    async fn timeout_kills_and_counts() {
        let dir = fake_bin("timeout", "squeue", "exec sleep 5");
        let client = SlurmClient::new(Some(dir.clone()), Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = client.squeue(&[1, 2]).await.expect_err("times out");
        assert!(matches!(err, SlurmError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(client.calls(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn failure_carries_stderr_and_args_are_not_shell_interpreted() {
        let dir = fake_bin("failure", "sbatch", "echo \"$@\" >&2; echo 'sbatch: error: Batch job submission failed: Invalid account' >&2; exit 1");
        let client = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        let err = client
            .sbatch(&["--job-name=$(id)".into()], Path::new("/tmp/x y.sh"))
            .await
            .expect_err("fails");
        assert_eq!(
            err.to_string(),
            "sbatch failed (exit 1): --parsable --job-name=$(id) /tmp/x y.sh; sbatch: error: Batch job submission failed: Invalid account"
        );
        assert_eq!(err.exit_code(), Some(1));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn single_unknown_id_is_empty_not_an_error() {
        let dir = fake_bin(
            "unknown",
            "squeue",
            "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
        );
        let client = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        assert_eq!(client.squeue(&[99]).await.expect("empty"), vec![]);
        assert!(
            client.squeue(&[98, 99]).await.is_err(),
            "only the single-id form means 'unknown'"
        );
        assert!(client.squeue(&[]).await.expect("no call").is_empty());
        assert_eq!(client.calls(), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn missing_binary_is_spawn_error() {
        let client = SlurmClient::new(
            Some(PathBuf::from("/nonexistent/ucim")),
            Duration::from_secs(1),
        );
        let err = client.scancel(1).await.expect_err("no binary");
        assert!(matches!(err, SlurmError::Spawn { .. }));
        assert!(
            err.to_string().starts_with("could not start scancel: "),
            "{err}"
        );
        assert_eq!(client.calls(), 0);
    }
}
