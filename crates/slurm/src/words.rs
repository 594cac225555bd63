//! Slurm's codes in words an HPC user understands: why a job waits, and how it ended.
//!
//! Pending reasons are lower-case phrases without a full stop, to follow "Queued: " or similar; end
//! messages are sentences starting "The job", also without a full stop. Codes a user might search for or
//! quote to support (limits, node trouble) stay in the text in parentheses.

use crate::state::{ExitStatus, SlurmState};

/// Reason codes (as squeue `%r` and scontrol `Reason=` print them) and their phrases. The code is added in
/// parentheses where marked `true`.
const REASONS: &[(&str, &str, bool)] = &[
    ("Priority", "waiting behind higher-priority jobs", false),
    ("Resources", "waiting for resources to become free", false),
    ("Dependency", "waiting for the jobs it depends on", false),
    (
        "DependencyNeverSatisfied",
        "will never start: a job it depends on did not succeed",
        true,
    ),
    ("BeginTime", "waiting for its requested start time", false),
    (
        "JobHeldUser",
        "held by its owner; it starts once released",
        false,
    ),
    ("JobHeldAdmin", "held by a system administrator", false),
    (
        "launch failed requeued held",
        "could not be launched on its node and is held; contact support",
        false,
    ),
    ("Reservation", "waiting for its reservation to start", false),
    (
        "ReqNodeNotAvail",
        "waiting for nodes that are down, drained or reserved",
        true,
    ),
    ("NodeDown", "waiting for a node that is down", true),
    (
        "PartitionDown",
        "the partition is down; the job starts when it is back up",
        true,
    ),
    (
        "PartitionInactive",
        "the partition is inactive; the job starts when it is enabled",
        true,
    ),
    (
        "PartitionTimeLimit",
        "the requested time is longer than the partition allows; it will not start",
        true,
    ),
    (
        "PartitionNodeLimit",
        "it asks for more nodes than the partition allows; it will not start",
        true,
    ),
    (
        "BadConstraints",
        "no node can satisfy the requested features or resources",
        true,
    ),
    ("Licenses", "waiting for software licenses", true),
    (
        "Cleaning",
        "waiting for its previous run to be cleaned up",
        false,
    ),
    ("Prolog", "its node is being prepared", false),
    ("PowerUpNode", "waiting for nodes to power up", false),
    (
        "InvalidAccount",
        "the account is not valid; it will not start",
        true,
    ),
    (
        "InvalidQOS",
        "the quality of service (QOS) is not valid; it will not start",
        true,
    ),
    (
        "QOSMaxJobsPerUserLimit",
        "you have reached the maximum number of running jobs allowed",
        true,
    ),
    (
        "QOSMaxSubmitJobPerUserLimit",
        "you have reached the maximum number of queued jobs allowed",
        true,
    ),
    (
        "QOSMaxCpuPerUserLimit",
        "you are using the maximum number of CPUs allowed",
        true,
    ),
    (
        "QOSMaxNodePerUserLimit",
        "you are using the maximum number of nodes allowed",
        true,
    ),
    (
        "QOSMaxMemoryPerUser",
        "you are using the maximum memory allowed",
        true,
    ),
    (
        "QOSMaxWallDurationPerJobLimit",
        "the requested time is longer than allowed; it will not start",
        true,
    ),
    (
        "AssocMaxJobsLimit",
        "your project has reached the maximum number of running jobs allowed",
        true,
    ),
    (
        "AssocMaxSubmitJobLimit",
        "your project has reached the maximum number of queued jobs allowed",
        true,
    ),
    (
        "AssocGrpCPUMinutesLimit",
        "the project has used up its CPU time allocation",
        true,
    ),
    (
        "AssocGrpCpuLimit",
        "your project is using the maximum number of CPUs allowed",
        true,
    ),
    (
        "AssocGrpJobsLimit",
        "your project has reached the maximum number of running jobs allowed",
        true,
    ),
    (
        "AssocGrpNodeLimit",
        "your project is using the maximum number of nodes allowed",
        true,
    ),
    (
        "AssocGrpMemLimit",
        "your project is using the maximum memory allowed",
        true,
    ),
    (
        "AssocGrpBillingMinutes",
        "the project has used up its allocation",
        true,
    ),
    (
        "QOSGrpCPUMinutesLimit",
        "the CPU time allocation of this service level is used up",
        true,
    ),
    (
        "QOSGrpCpuLimit",
        "all CPUs allowed for this service level are in use",
        true,
    ),
    (
        "QOSGrpJobsLimit",
        "the maximum number of running jobs for this service level is reached",
        true,
    ),
];

/// What a pending job waits for, in words; `None` for `None` (or nothing). Decorations after the code, as
/// in `ReqNodeNotAvail, UnavailableNodes:n1` (squeue) or `ReqNodeNotAvail,_UnavailableNodes:n1` (scontrol),
/// are ignored. Association and QOS limits not listed get a generic phrase from the shape of their name
/// (`Assoc`/`QOS`, `Grp`/`Max`, `Minutes`, `RunMinutes`); anything else is "waiting" with the code.
pub fn pending_reason_text(reason: &str) -> Option<String> {
    let reason = reason
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let code = reason.split([',', '(']).next().unwrap_or("").trim();
    if code.is_empty() || code == "None" {
        return None;
    }
    if let Some(&(_, text, with_code)) = REASONS.iter().find(|(c, _, _)| *c == code) {
        return Some(if with_code {
            format!("{text} ({code})")
        } else {
            text.to_string()
        });
    }
    let limit_of =
        |prefix: &str| code.starts_with(prefix) && (code.contains("Grp") || code.contains("Max"));
    let generic = if !(limit_of("Assoc") || limit_of("QOS")) {
        "waiting"
    } else if code.contains("RunMinutes") {
        "waiting until running jobs hold less of the compute time allowed at once"
    } else if code.contains("Minutes") {
        "waiting because an allocation of compute time is used up"
    } else if code.starts_with("Assoc") {
        "waiting because a limit of your project is reached"
    } else {
        "waiting because a limit of your service level (QOS) is reached"
    };
    Some(format!("{generic} ({code})"))
}

/// How a job ended, as one sentence for its owner. `memory_limit_mb` (MiB, as Slurm counts) and
/// `time_limit_minutes` are shown when known and relevant; `exit` comes from sacct.
///
/// An exit code above 128 is how a shell reports a child killed by signal (code − 128), so it is named.
pub fn end_message(
    state: &SlurmState,
    exit: Option<ExitStatus>,
    memory_limit_mb: Option<u64>,
    time_limit_minutes: Option<u64>,
) -> String {
    let limit = |value: Option<String>| value.map(|v| format!(" (limit {v})")).unwrap_or_default();
    match state {
        SlurmState::Completed => "The job completed successfully".to_string(),
        SlurmState::Failed => match exit {
            Some(e) if e.signal != 0 => format!("The job failed (killed by signal {})", e.signal),
            Some(e) if e.code > 128 && e.code < 128 + 65 => format!(
                "The job failed (exit code {}, usually meaning killed by signal {})",
                e.code,
                e.code - 128
            ),
            Some(e) if e.code != 0 => format!("The job failed (exit code {})", e.code),
            _ => "The job failed".to_string(),
        },
        SlurmState::OutOfMemory => format!(
            "The job ran out of memory{}",
            limit(memory_limit_mb.filter(|&m| m > 0).map(format_memory))
        ),
        SlurmState::Timeout => match time_limit_minutes {
            Some(m) => format!("The job reached its time limit ({})", format_minutes(m)),
            None => "The job reached its time limit".to_string(),
        },
        SlurmState::Cancelled => "The job was cancelled".to_string(),
        SlurmState::NodeFail => "The job ended because a node it ran on failed".to_string(),
        SlurmState::Preempted => {
            "The job was stopped to make room for a higher-priority job".to_string()
        }
        SlurmState::Deadline => {
            "The job was ended because it could not finish before its deadline".to_string()
        }
        SlurmState::BootFail => {
            "The job could not start because its node failed to boot".to_string()
        }
        other => format!("The job ended in Slurm state {other}"),
    }
}

/// 4096 → "4 GiB", 1536 → "1.5 GiB", 512 → "512 MiB", 2 × 1024² → "2 TiB".
fn format_memory(mib: u64) -> String {
    const UNITS: [&str; 3] = ["MiB", "GiB", "TiB"];
    let mut value = mib as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// 150 → "2 h 30 min", 60 → "1 h", 45 → "45 min", 1500 → "1 d 1 h", 0 → "0 min".
pub fn format_minutes(minutes: u64) -> String {
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min")]
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        "0 min".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reason: &str) -> String {
        pending_reason_text(reason).expect("has a text")
    }

    #[test]
    fn common_pending_reasons() {
        assert_eq!(text("Resources"), "waiting for resources to become free");
        assert_eq!(text("Priority"), "waiting behind higher-priority jobs");
        assert_eq!(text("Dependency"), "waiting for the jobs it depends on");
        assert_eq!(
            text("QOSMaxJobsPerUserLimit"),
            "you have reached the maximum number of running jobs allowed (QOSMaxJobsPerUserLimit)"
        );
        assert!(text("AssocMaxJobsLimit").ends_with("(AssocMaxJobsLimit)"));
        assert!(text("QOSMaxCpuPerUserLimit").contains("CPUs"));
        assert!(text("AssocGrpCPUMinutesLimit").contains("used up"));
        assert!(text("PartitionDown").contains("partition is down"));
        assert!(text("PartitionTimeLimit").contains("will not start"));
        assert_eq!(text("BeginTime"), "waiting for its requested start time");
        assert!(text("JobHeldUser").contains("held by its owner"));
        assert!(text("JobHeldAdmin").contains("administrator"));
        assert!(text("launch failed requeued held").contains("contact support"));
    }

    #[test]
    fn decorated_none_generic_and_unknown() {
        let squeue = text("ReqNodeNotAvail, UnavailableNodes:vm");
        assert_eq!(squeue, text("ReqNodeNotAvail,_UnavailableNodes:vm"));
        assert_eq!(squeue, text("(ReqNodeNotAvail, UnavailableNodes:vm)"));
        assert!(squeue.ends_with("(ReqNodeNotAvail)"));
        assert_eq!(pending_reason_text("None"), None);
        assert_eq!(pending_reason_text(" "), None);
        assert_eq!(
            text("QOSGrpGRESRunMinutes"),
            "waiting until running jobs hold less of the compute time allowed at once (QOSGrpGRESRunMinutes)"
        );
        assert_eq!(
            text("AssocGrpGRESMinutesLimit"),
            "waiting because an allocation of compute time is used up (AssocGrpGRESMinutesLimit)"
        );
        assert!(text("AssocMaxNodesPerJobLimit").contains("limit of your project"));
        assert!(text("QOSMaxGRESPerUser").contains("service level (QOS)"));
        assert_eq!(text("QOSUsageThreshold"), "waiting (QOSUsageThreshold)");
        assert_eq!(text("FrobnicatorBusy"), "waiting (FrobnicatorBusy)");
    }

    #[test]
    fn end_messages() {
        let exit = |code, signal| Some(ExitStatus { code, signal });
        let msg = |s: &str, e, mem, time| end_message(&SlurmState::parse(s), e, mem, time);
        assert_eq!(
            msg("OUT_OF_MEMORY", exit(0, 125), Some(4096), None),
            "The job ran out of memory (limit 4 GiB)"
        );
        assert_eq!(
            msg("OUT_OF_MEMORY", None, None, None),
            "The job ran out of memory"
        );
        assert_eq!(
            msg("OUT_OF_MEMORY", None, Some(0), None),
            "The job ran out of memory"
        );
        assert_eq!(
            msg("TIMEOUT", exit(0, 0), None, Some(150)),
            "The job reached its time limit (2 h 30 min)"
        );
        assert_eq!(
            msg("TIMEOUT", None, None, None),
            "The job reached its time limit"
        );
        assert_eq!(
            msg("FAILED", exit(3, 0), None, None),
            "The job failed (exit code 3)"
        );
        assert_eq!(
            msg("FAILED", exit(0, 9), None, None),
            "The job failed (killed by signal 9)"
        );
        assert_eq!(
            msg("FAILED", exit(137, 0), None, None),
            "The job failed (exit code 137, usually meaning killed by signal 9)"
        );
        assert_eq!(msg("FAILED", None, None, None), "The job failed");
        assert_eq!(
            msg("COMPLETED", exit(0, 0), None, None),
            "The job completed successfully"
        );
        assert_eq!(
            msg("CANCELLED by 1001", exit(0, 15), None, None),
            "The job was cancelled"
        );
        assert!(msg("NODE_FAIL", None, None, None).contains("node it ran on failed"));
        assert!(msg("PREEMPTED", None, None, None).contains("higher-priority"));
        assert!(msg("DEADLINE", None, None, None).contains("deadline"));
        assert!(msg("BOOT_FAIL", None, None, None).contains("boot"));
        assert_eq!(
            msg("SPECIAL_EXIT", None, None, None),
            "The job ended in Slurm state SPECIAL_EXIT"
        );
    }

    #[test]
    fn units() {
        assert_eq!(format_memory(512), "512 MiB");
        assert_eq!(format_memory(1536), "1.5 GiB");
        assert_eq!(format_memory(1024 * 1024 * 2), "2 TiB");
        assert_eq!(format_memory(1500), "1.5 GiB");
        assert_eq!(format_minutes(60), "1 h");
        assert_eq!(format_minutes(45), "45 min");
        assert_eq!(format_minutes(1500), "1 d 1 h");
        assert_eq!(format_minutes(1441), "1 d 1 min");
        assert_eq!(format_minutes(0), "0 min");
    }
}
