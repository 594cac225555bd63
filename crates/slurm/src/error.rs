//! Errors from running and reading Slurm commands. Each displays as one line, fit for a log or a UCloud message.

use std::process::ExitStatus as ProcessStatus;
use std::time::Duration;

/// Longest stderr kept in [`SlurmError::Failed`]: enough for Slurm's messages, bounded so a chatty wrapper
/// cannot flood logs or error bodies.
pub const MAX_STDERR: usize = 1000;
/// Longest offending line kept in [`SlurmError::Parse`].
pub const MAX_LINE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The program could not be started (missing binary, permissions).
    #[error("could not start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than the client's timeout and was killed.
    #[error("{command} timed out after {} and was killed", fmt_duration(*after))]
    Timeout { command: String, after: Duration },
    /// The program exited non-zero (or by a signal). `stderr` is trimmed, its lines joined by "; ", bounded.
    #[error("{command} failed ({}): {stderr}", fmt_status(status))]
    Failed {
        command: String,
        status: ProcessStatus,
        stderr: String,
    },
    /// The program succeeded but printed something this crate cannot read.
    #[error("cannot parse {command} output ({message}): {line:?}")]
    Parse {
        command: String,
        line: String,
        message: String,
    },
    /// The request was refused before any program ran, because Slurm would accept it and do harm (e.g. a
    /// time limit of 0 minutes, which ends a running job with TIMEOUT at Slurm's next check).
    #[error("{command} not run: {message}")]
    Invalid { command: String, message: String },
}

impl SlurmError {
    pub(crate) fn parse(command: &str, line: &str, message: impl Into<String>) -> SlurmError {
        SlurmError::Parse {
            command: command.to_string(),
            line: one_line(line, MAX_LINE),
            message: message.into(),
        }
    }

    /// Slurm's own words, fit to show the user who asked: the stderr of a `Failed` command without the
    /// tools' `scontrol: error: ` / `slurm_load_jobs error: ` prefixes (e.g. "Job is pending execution for
    /// job 12", "Access/permission denied for job 12"), or the reason of an `Invalid` request. `None` for
    /// spawn failures, timeouts and unreadable output: those are the operator's problem, not the user's.
    pub fn slurm_message(&self) -> Option<String> {
        match self {
            SlurmError::Failed { stderr, .. } => Some(
                stderr
                    .split("; ")
                    .map(strip_tool_prefix)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            SlurmError::Invalid { message, .. } => Some(message.clone()),
            _ => None,
        }
    }

    /// The exit code of a `Failed` command, if it exited normally (e.g. scancel's 210 for "permission denied").
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            SlurmError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }
}

/// `scontrol: error: X` and `slurm_load_jobs error: X` become `X`: one word (no spaces), then ` error: `
/// or `: error: `.
fn strip_tool_prefix(part: &str) -> &str {
    for sep in [": error: ", " error: "] {
        if let Some((tool, rest)) = part.split_once(sep) {
            if !tool.is_empty() && !tool.contains(' ') {
                return rest;
            }
        }
    }
    part
}

fn fmt_status(status: &ProcessStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Joins the non-blank lines of `text` with "; " and cuts the result to at most `max` bytes (on a char
/// boundary), so multi-line stderr still yields a one-line message.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(line);
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn failed_is_one_clear_line() {
        let stderr = "sbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed: Invalid partition name specified\n";
        let e = SlurmError::Failed {
            command: "sbatch".into(),
            status: ProcessStatus::from_raw(1 << 8),
            stderr: one_line(stderr, MAX_STDERR),
        };
        assert_eq!(
            e.to_string(),
            "sbatch failed (exit 1): sbatch: error: invalid partition specified: nosuch; sbatch: error: Batch job submission failed: Invalid partition name specified"
        );
        assert_eq!(e.exit_code(), Some(1));
        let killed = SlurmError::Failed {
            command: "squeue".into(),
            status: ProcessStatus::from_raw(9),
            stderr: "(no output)".into(),
        };
        assert_eq!(
            killed.to_string(),
            "squeue failed (killed by signal 9): (no output)"
        );
    }

    #[test]
    fn timeout_and_parse_messages() {
        let t = SlurmError::Timeout {
            command: "sacct".into(),
            after: Duration::from_secs(10),
        };
        assert_eq!(t.to_string(), "sacct timed out after 10 s and was killed");
        let p = SlurmError::parse("squeue", "garbage", "expected 4 fields");
        assert_eq!(
            p.to_string(),
            "cannot parse squeue output (expected 4 fields): \"garbage\""
        );
    }

    #[test]
    fn slurm_message_is_slurms_words_without_tool_prefixes() {
        let failed = |stderr: &str| SlurmError::Failed {
            command: "scontrol".into(),
            status: ProcessStatus::from_raw(1 << 8),
            stderr: stderr.into(),
        };
        // Texts seen from scontrol 22.05 on the dev cluster.
        assert_eq!(
            failed("Job is pending execution for job 1065")
                .slurm_message()
                .as_deref(),
            Some("Job is pending execution for job 1065")
        );
        assert_eq!(
            failed("slurm_load_jobs error: Invalid job id specified")
                .slurm_message()
                .as_deref(),
            Some("Invalid job id specified")
        );
        assert_eq!(
            failed("scontrol: error: Invalid TimeLimit value")
                .slurm_message()
                .as_deref(),
            Some("Invalid TimeLimit value")
        );
        assert_eq!(
            failed("sbatch: error: invalid partition specified: x; sbatch: error: Batch job submission failed: Invalid partition name specified")
                .slurm_message()
                .as_deref(),
            Some("invalid partition specified: x; Batch job submission failed: Invalid partition name specified")
        );
        let invalid = SlurmError::Invalid {
            command: "scontrol".into(),
            message: "a time limit of 0 minutes would end the job".into(),
        };
        assert_eq!(
            invalid.to_string(),
            "scontrol not run: a time limit of 0 minutes would end the job"
        );
        assert_eq!(
            invalid.slurm_message().as_deref(),
            Some("a time limit of 0 minutes would end the job")
        );
        let timeout = SlurmError::Timeout {
            command: "scontrol".into(),
            after: Duration::from_secs(10),
        };
        assert_eq!(timeout.slurm_message(), None);
    }

    #[test]
    fn one_line_bounds_on_char_boundary() {
        let long = "é".repeat(2000);
        let s = one_line(&long, 11);
        assert!(s.len() <= 11 + '…'.len_utf8());
        assert!(s.ends_with('…'));
        assert_eq!(one_line("  a \n\n b  \n", 100), "a; b");
    }
}
