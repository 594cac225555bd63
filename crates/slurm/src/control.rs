//! scontrol operations on one job: time limit, suspend/resume, and the full record (`show job`).
//!
//! Refusals are [`SlurmError::Failed`] carrying scontrol's own words, readable with
//! [`SlurmError::slurm_message`]. Seen with Slurm 22.05 (scontrol exits 1 for all of them):
//! - suspend/resume of a pending job: "Job is pending execution for job N"
//! - suspend/resume of an ended job: "Job/step already completing or completed for job N"
//! - resume of a job that is not suspended: "Job is not suspended for job N"
//! - suspend/resume of an unknown id: "Unexpected message received for job N" (sic)
//! - time limit of an ended job: "Job has already finished for job N"; of an unknown id: "Invalid job id
//!   specified for job N"
//! - suspend/resume by anyone but root, SlurmUser or a Slurm operator/administrator, and raising a time
//!   limit by the job's owner: "Access/permission denied for job N" (owners may lower their limit).
//!
//! Suspending an already suspended job succeeds (exit 0) and changes nothing.

use std::ffi::OsString;

use crate::client::SlurmClient;
use crate::error::SlurmError;
use crate::job_info::{parse_show_job, JobInfo};
use crate::SlurmJobId;

/// The largest time limit passed on: scontrol reads minutes into a C `int`, and Slurm reserves the top
/// 32-bit values for "infinite" and "not set".
pub const MAX_TIME_LIMIT_MINUTES: u64 = i32::MAX as u64;

impl SlurmClient {
    /// `scontrol update JobId=ID TimeLimit=MINUTES`: the new limit counts from the job's start, so for a
    /// running job it extends (or shortens) the run.
    ///
    /// 0 is refused without calling Slurm ([`SlurmError::Invalid`]): scontrol accepts it, and a running job
    /// then ends with TIMEOUT at slurmctld's next limit check (seen within 30 s), which no caller means.
    pub async fn set_time_limit(&self, id: SlurmJobId, minutes: u64) -> Result<(), SlurmError> {
        if minutes == 0 || minutes > MAX_TIME_LIMIT_MINUTES {
            return Err(SlurmError::Invalid {
                command: "scontrol".into(),
                message: format!(
                    "a time limit must be between 1 and {MAX_TIME_LIMIT_MINUTES} minutes, not {minutes}"
                ),
            });
        }
        let args: Vec<OsString> = vec![
            "update".into(),
            format!("JobId={id}").into(),
            format!("TimeLimit={minutes}").into(),
        ];
        self.run("scontrol", &args).await.map(|_| ())
    }

    /// `scontrol suspend ID`: stops the job's processes (SIGSTOP) and frees its CPUs for other jobs while
    /// keeping its memory. Only root, SlurmUser and Slurm operators may suspend.
    pub async fn suspend(&self, id: SlurmJobId) -> Result<(), SlurmError> {
        self.run("scontrol", &["suspend".into(), id.to_string().into()])
            .await
            .map(|_| ())
    }

    /// `scontrol resume ID`: continues a suspended job (SIGCONT). Same privileges as [`Self::suspend`].
    pub async fn resume(&self, id: SlurmJobId) -> Result<(), SlurmError> {
        self.run("scontrol", &["resume".into(), id.to_string().into()])
            .await
            .map(|_| ())
    }

    /// `scontrol show job -o ID`, read by [`parse_show_job`]. `Ok(None)` for an id slurmctld does not know
    /// (never existed, or ended more than MinJobAge ago: use sacct for those).
    pub async fn job_info(&self, id: SlurmJobId) -> Result<Option<JobInfo>, SlurmError> {
        let args: Vec<OsString> = vec![
            "show".into(),
            "job".into(),
            "-o".into(),
            id.to_string().into(),
        ];
        match self.run("scontrol", &args).await {
            Ok(out) => parse_show_job(&out.stdout),
            Err(SlurmError::Failed { ref stderr, .. })
                if stderr.contains("Invalid job id specified") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::{fake_bin, recorded, recording};
    use crate::SlurmState;

    #[tokio::test]
    async fn argv_is_exactly_scontrols() {
        let dir = fake_bin("control-argv", "scontrol", &recording("exit 0"));
        let c = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        c.set_time_limit(42, 150).await.expect("ok");
        assert_eq!(
            recorded(&dir, "scontrol"),
            ["update", "JobId=42", "TimeLimit=150"]
        );
        c.suspend(42).await.expect("ok");
        assert_eq!(recorded(&dir, "scontrol"), ["suspend", "42"]);
        c.resume(42).await.expect("ok");
        assert_eq!(recorded(&dir, "scontrol"), ["resume", "42"]);
        assert_eq!(c.job_info(42).await.expect("empty output"), None);
        assert_eq!(recorded(&dir, "scontrol"), ["show", "job", "-o", "42"]);
        assert_eq!(c.calls(), 4);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn refusals_keep_slurms_words() {
        let dir = fake_bin(
            "control-refused",
            "scontrol",
            "echo \"Job is pending execution for job $2\" >&2; exit 1",
        );
        let c = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        let err = c.suspend(7).await.expect_err("refused");
        assert_eq!(
            err.to_string(),
            "scontrol failed (exit 1): Job is pending execution for job 7"
        );
        assert_eq!(
            err.slurm_message().as_deref(),
            Some("Job is pending execution for job 7")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn zero_or_huge_time_limit_is_refused_without_a_call() {
        let c = SlurmClient::new(Some("/nonexistent/ucim".into()), Duration::from_secs(1));
        for minutes in [0, MAX_TIME_LIMIT_MINUTES + 1] {
            let err = c.set_time_limit(1, minutes).await.expect_err("refused");
            assert!(matches!(err, SlurmError::Invalid { .. }), "{err}");
        }
        assert_eq!(c.calls(), 0);
    }

    #[tokio::test]
    async fn job_info_unknown_id_is_none_and_output_is_parsed() {
        let dir = fake_bin(
            "control-info",
            "scontrol",
            "if [ \"$4\" = 9 ]; then echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; fi\n\
             echo \"JobId=$4 JobName=a b UserId=alice(1001) JobState=RUNNING Reason=None TimeLimit=02:30:00\"",
        );
        let c = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        assert_eq!(c.job_info(9).await.expect("unknown"), None);
        let j = c.job_info(8).await.expect("ok").expect("known");
        assert_eq!(
            (j.id, j.name.as_str(), j.state),
            (8, "a b", SlurmState::Running)
        );
        assert_eq!((j.user_id, j.time_limit_minutes), (Some(1001), Some(150)));
        std::fs::remove_dir_all(dir).ok();
    }
}
