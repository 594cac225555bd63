//! Slurm job states and exit codes, as printed by `squeue -o %T` and `sacct -o State,ExitCode`.

use std::fmt;

/// A Slurm job state. Names follow Slurm's long names; anything this crate does not know is kept verbatim
/// in [`SlurmState::Other`] so a newer Slurm never makes parsing fail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SlurmState {
    Pending,
    Configuring,
    Running,
    Completing,
    Suspended,
    Requeued,
    Resizing,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    OutOfMemory,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    /// E.g. `REQUEUE_HOLD`, `SPECIAL_EXIT`, `STOPPED`, `SIGNALING`, `STAGE_OUT`, `REVOKED`: upper-cased
    /// first word of what Slurm printed.
    Other(String),
}

impl SlurmState {
    /// Parses a state as squeue (`%T` long names, `%t` short codes) or sacct prints it.
    ///
    /// sacct appends who cancelled (`CANCELLED by 1002`), and truncated fixed-width output ends in `+`;
    /// only the first word counts.
    pub fn parse(text: &str) -> SlurmState {
        let word = text.split_whitespace().next().unwrap_or("");
        let word = word.trim_end_matches('+');
        // Slurm prints upper case; only allocate for the odd caller that does not.
        let upper;
        let word = if word.bytes().any(|b| b.is_ascii_lowercase()) {
            upper = word.to_ascii_uppercase();
            upper.as_str()
        } else {
            word
        };
        match word {
            "PENDING" | "PD" => SlurmState::Pending,
            "CONFIGURING" | "CF" => SlurmState::Configuring,
            "RUNNING" | "R" => SlurmState::Running,
            "COMPLETING" | "CG" => SlurmState::Completing,
            "SUSPENDED" | "S" => SlurmState::Suspended,
            "REQUEUED" | "RQ" => SlurmState::Requeued,
            "RESIZING" | "RS" => SlurmState::Resizing,
            "COMPLETED" | "CD" => SlurmState::Completed,
            "CANCELLED" | "CA" => SlurmState::Cancelled,
            "FAILED" | "F" => SlurmState::Failed,
            "TIMEOUT" | "TO" => SlurmState::Timeout,
            "OUT_OF_MEMORY" | "OOM" => SlurmState::OutOfMemory,
            "NODE_FAIL" | "NF" => SlurmState::NodeFail,
            "PREEMPTED" | "PR" => SlurmState::Preempted,
            "BOOT_FAIL" | "BF" => SlurmState::BootFail,
            "DEADLINE" | "DL" => SlurmState::Deadline,
            _ => SlurmState::Other(word.to_string()),
        }
    }

    /// True when the job is finished for good: it holds no resources and will not run again by itself.
    /// `Other` states are never terminal, so an unknown state can only delay an end, never invent one.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SlurmState::Completed
                | SlurmState::Cancelled
                | SlurmState::Failed
                | SlurmState::Timeout
                | SlurmState::OutOfMemory
                | SlurmState::NodeFail
                | SlurmState::Preempted
                | SlurmState::BootFail
                | SlurmState::Deadline
        )
    }

    /// Slurm's long name, as squeue `%T` prints it.
    pub fn as_str(&self) -> &str {
        match self {
            SlurmState::Pending => "PENDING",
            SlurmState::Configuring => "CONFIGURING",
            SlurmState::Running => "RUNNING",
            SlurmState::Completing => "COMPLETING",
            SlurmState::Suspended => "SUSPENDED",
            SlurmState::Requeued => "REQUEUED",
            SlurmState::Resizing => "RESIZING",
            SlurmState::Completed => "COMPLETED",
            SlurmState::Cancelled => "CANCELLED",
            SlurmState::Failed => "FAILED",
            SlurmState::Timeout => "TIMEOUT",
            SlurmState::OutOfMemory => "OUT_OF_MEMORY",
            SlurmState::NodeFail => "NODE_FAIL",
            SlurmState::Preempted => "PREEMPTED",
            SlurmState::BootFail => "BOOT_FAIL",
            SlurmState::Deadline => "DEADLINE",
            SlurmState::Other(s) => s,
        }
    }
}

impl fmt::Display for SlurmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SlurmState {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SlurmState::parse(s))
    }
}

/// Slurm's `ExitCode` field, `code:signal`: the batch script's exit code, and the signal that killed it (0 if none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
}

impl ExitStatus {
    /// Parses `3:0`; a bare `3` is read as code 3, signal 0. Anything else is `None`.
    pub fn parse(text: &str) -> Option<ExitStatus> {
        let text = text.trim();
        let (code, signal) = match text.split_once(':') {
            Some((c, s)) => (c.trim().parse().ok()?, s.trim().parse().ok()?),
            None => (text.parse().ok()?, 0),
        };
        Some(ExitStatus { code, signal })
    }

    /// True for `0:0`.
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal == 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.code, self.signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_long_names_short_codes_and_sacct_decorations() {
        assert_eq!(SlurmState::parse("PENDING"), SlurmState::Pending);
        assert_eq!(SlurmState::parse("PD"), SlurmState::Pending);
        assert_eq!(
            SlurmState::parse("CANCELLED by 1002"),
            SlurmState::Cancelled
        );
        assert_eq!(SlurmState::parse("CANCELLED by 0"), SlurmState::Cancelled);
        assert_eq!(SlurmState::parse("CANCELLED+"), SlurmState::Cancelled);
        assert_eq!(SlurmState::parse("OUT_OF_MEMORY"), SlurmState::OutOfMemory);
        assert_eq!(SlurmState::parse("NODE_FAIL"), SlurmState::NodeFail);
        assert_eq!(SlurmState::parse("BOOT_FAIL"), SlurmState::BootFail);
        assert_eq!(SlurmState::parse("DEADLINE"), SlurmState::Deadline);
        assert_eq!(SlurmState::parse("PREEMPTED"), SlurmState::Preempted);
        assert_eq!(SlurmState::parse("completing"), SlurmState::Completing);
        assert_eq!(SlurmState::parse(" RESIZING "), SlurmState::Resizing);
        assert_eq!(
            SlurmState::parse("REQUEUE_HOLD"),
            SlurmState::Other("REQUEUE_HOLD".into())
        );
        assert_eq!(SlurmState::parse(""), SlurmState::Other(String::new()));
    }

    #[test]
    fn terminal_states() {
        for s in [
            "COMPLETED",
            "CANCELLED by 5",
            "FAILED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        ] {
            assert!(SlurmState::parse(s).is_terminal(), "{s}");
        }
        for s in [
            "PENDING",
            "CONFIGURING",
            "RUNNING",
            "COMPLETING",
            "SUSPENDED",
            "REQUEUED",
            "RESIZING",
            "SPECIAL_EXIT",
            "REVOKED",
        ] {
            assert!(!SlurmState::parse(s).is_terminal(), "{s}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["PENDING", "OUT_OF_MEMORY", "NODE_FAIL", "STOPPED"] {
            assert_eq!(SlurmState::parse(s).to_string(), s);
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            ExitStatus::parse("3:0"),
            Some(ExitStatus { code: 3, signal: 0 })
        );
        assert_eq!(
            ExitStatus::parse("0:15"),
            Some(ExitStatus {
                code: 0,
                signal: 15
            })
        );
        assert_eq!(
            ExitStatus::parse("0:125"),
            Some(ExitStatus {
                code: 0,
                signal: 125
            })
        );
        assert_eq!(
            ExitStatus::parse("7"),
            Some(ExitStatus { code: 7, signal: 0 })
        );
        assert_eq!(ExitStatus::parse(""), None);
        assert_eq!(ExitStatus::parse("x:1"), None);
        assert!(ExitStatus::parse("0:0").is_some_and(|e| e.success()));
        assert_eq!(ExitStatus { code: 3, signal: 0 }.to_string(), "3:0");
    }
}
