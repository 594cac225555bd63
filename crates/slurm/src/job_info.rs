//! Reading `scontrol show job -o ID`: one line of `Key=Value` pairs separated by single spaces.
//!
//! The format has no quoting. Most values never contain a space, but a few are free text (the job name, the
//! command with its arguments, paths such as `WorkDir=`, comments), and some reason strings have spaces
//! (`launch failed requeued held`). So a space-separated token starts a new field only if it looks like
//! `Key=`, and inside a free-text value only if `Key` is one Slurm prints: `WorkDir=/tmp/a b=c` stays one
//! path. A free-text value can still contain a real key name (a job named `x UserId=root(0)`); then a field
//! this parser reads appears twice and the line is refused as ambiguous rather than guessed at.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::SlurmError;
use crate::parse::parse_elapsed;
use crate::state::{ExitStatus, SlurmState};
use crate::SlurmJobId;

/// Keys whose values may contain spaces (space-separated, like the other key lists).
const FREE_TEXT: &str = "\
    JobName Command WorkDir StdErr StdIn StdOut Comment AdminComment SystemComment Extra \
    MailUser CrontabSpec Container ContainerID SELinuxContext BurstBuffer";

/// Every key scontrol (22.05 to 24.x) prints for a job without `-d`; inside a free-text value only these
/// start a new field.
const KNOWN_KEYS: &str = "\
    JobId ArrayJobId ArrayTaskId ArrayTaskThrottle HetJobId HetJobOffset JobName HetJobIdSet \
    UserId GroupId MCS_label Priority Nice Account QOS WCKey JobState Reason FailedNode \
    Dependency Requeue Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit \
    TimeMin SubmitTime EligibleTime AccrueTime ResizeTime StartTime EndTime Deadline CronJob \
    CrontabSpec PreemptEligibleTime PreemptTime SuspendTime SecsPreSuspend LastSchedEval \
    Scheduler Partition AllocNode:Sid ReqNodeList ExcNodeList NodeList SchedNodeList \
    BatchFeatures BatchHost StepMgrEnabled FedOrigin FedViableSiblings FedActiveSiblings \
    NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T TRES ReqTRES AllocTRES Socks/Node \
    NtasksPerN:B:S:C CoreSpec ThreadSpec MinCPUsNode MinMemoryNode MinMemoryCPU MinMemoryTRES \
    MinTmpDiskNode Features DelayBoot ClusterFeatures Prefer Reservation OverSubscribe \
    Contiguous Licenses LicensesAlloc Network Command WorkDir AdminComment SystemComment Comment \
    Extra StdErr StdIn StdOut Switches BurstBuffer BurstBufferState CpuFreqMin CpuFreqMax \
    CpuFreqGov GresEnforceBind GresOneTaskPerSharing GresAllowTaskSharing \
    KillOInInvalidDependent SpreadJob OOMKillStep CpusPerTres MemPerTres TresBind TresFreq \
    TresPerJob TresPerNode TresPerSocket TresPerTask MailUser MailType NtasksPerTRES Container \
    ContainerID SELinuxContext ResvPorts Power";

/// Keys this parser reads: each must appear at most once (and only one `MinMemory*`).
const READ_KEYS: &str = "\
    JobId JobName UserId JobState Reason ExitCode RunTime TimeLimit Partition NodeList NumNodes \
    NumCPUs MinMemoryNode MinMemoryCPU WorkDir";

/// What `scontrol show job` says about one job (slurmctld's live record; gone MinJobAge after the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: SlurmJobId,
    pub name: String,
    pub state: SlurmState,
    /// Slurm's reason code, verbatim (`None` when there is none); see [`crate::pending_reason_text`].
    pub reason: String,
    /// `None` for `UNLIMITED`, and for `Partition_Limit` (the partition's MaxTime applies; ask the partition).
    pub time_limit_minutes: Option<u64>,
    pub user_id: Option<u32>,
    pub partition: Option<String>,
    /// For a pending job the requested count (the lower end of a range).
    pub num_nodes: Option<u32>,
    pub num_cpus: Option<u32>,
    /// `None` until nodes are allocated.
    pub node_list: Option<String>,
    /// The memory request in MiB, per node or per CPU (see `memory_per_cpu`). 0 means "all of each node's
    /// memory" (`--mem=0`).
    pub min_memory_mb: Option<u64>,
    /// `min_memory_mb` came from `MinMemoryCPU` (`--mem-per-cpu`) rather than `MinMemoryNode` (`--mem`).
    pub memory_per_cpu: bool,
    pub work_dir: Option<PathBuf>,
    pub exit: Option<ExitStatus>,
    pub run_time_secs: Option<u64>,
}

impl JobInfo {
    /// The memory each node may use, in MiB: the request itself, or per-CPU memory times the CPUs per node
    /// (rounded up, for jobs spread over nodes). What the OOM killer enforces when memory is enforced.
    pub fn memory_limit_mb(&self) -> Option<u64> {
        let mem = self.min_memory_mb.filter(|&m| m > 0)?;
        if !self.memory_per_cpu {
            return Some(mem);
        }
        let cpus = u64::from(self.num_cpus?);
        let nodes = u64::from(self.num_nodes.unwrap_or(1).max(1));
        Some(mem * cpus.div_ceil(nodes))
    }
}

/// Splits one `-o` line into its fields, in order. Values keep inner spaces; the separator is dropped.
fn fields(line: &str) -> Vec<(&str, &str)> {
    // (key, value start, value end) as byte offsets into `line`.
    let mut spans: Vec<(&str, usize, usize)> = Vec::new();
    let mut start = 0;
    for token in line.split(' ') {
        let end = start + token.len();
        let key = token
            .split_once('=')
            .map(|(k, _)| k)
            .filter(|k| looks_like_key(k));
        let starts_field = match (key, spans.last()) {
            (Some(_), None) => true,
            (Some(key), Some(&(current, _, _))) => {
                !listed(FREE_TEXT, current) || listed(KNOWN_KEYS, key)
            }
            (None, _) => false,
        };
        if let (true, Some(key)) = (starts_field, key) {
            spans.push((key, start + key.len() + 1, end));
        } else if let Some(last) = spans.last_mut() {
            // Runs of spaces (empty tokens) only count once something follows them.
            if !token.is_empty() {
                last.2 = end;
            }
        }
        start = end + 1;
    }
    spans
        .into_iter()
        .map(|(k, s, e)| (k, &line[s..e]))
        .collect()
}

fn listed(list: &str, key: &str) -> bool {
    list.split_ascii_whitespace().any(|k| k == key)
}

fn looks_like_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b':'))
}

/// Parses `scontrol show job -o` output. Reads the first line starting `JobId=` (ucim submits no arrays or
/// het jobs, which would print one line per task or component); blank output is `Ok(None)`.
pub fn parse_show_job(text: &str) -> Result<Option<JobInfo>, SlurmError> {
    let Some(line) = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| !l.trim().is_empty())
    else {
        return Ok(None);
    };
    let line = line.trim_start();
    if !line.starts_with("JobId=") {
        return Err(SlurmError::parse(
            "scontrol",
            line,
            "expected a line starting JobId=",
        ));
    }
    let mut map: HashMap<&str, &str> = HashMap::new();
    for (key, value) in fields(line) {
        if map.insert(key, value).is_some() && listed(READ_KEYS, key) {
            return Err(SlurmError::parse(
                "scontrol",
                line,
                format!("{key}= appears twice"),
            ));
        }
    }
    if map.contains_key("MinMemoryNode") && map.contains_key("MinMemoryCPU") {
        return Err(SlurmError::parse(
            "scontrol",
            line,
            "both MinMemoryNode= and MinMemoryCPU=",
        ));
    }
    let id = map
        .get("JobId")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| SlurmError::parse("scontrol", line, "job id is not a number"))?;
    let state = map
        .get("JobState")
        .map(|v| SlurmState::parse(v))
        .ok_or_else(|| SlurmError::parse("scontrol", line, "no JobState="))?;
    let text = |key: &str| {
        map.get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty() && *v != "(null)")
            .map(str::to_string)
    };
    let (min_memory_mb, memory_per_cpu) = match (map.get("MinMemoryNode"), map.get("MinMemoryCPU"))
    {
        (Some(v), _) => (parse_memory_mb(v), false),
        (None, Some(v)) => (parse_memory_mb(v), true),
        (None, None) => (None, false),
    };
    Ok(Some(JobInfo {
        id,
        name: map
            .get("JobName")
            .map_or_else(String::new, |v| v.to_string()),
        state,
        reason: text("Reason").unwrap_or_default(),
        time_limit_minutes: map.get("TimeLimit").and_then(|v| parse_time_limit(v)),
        user_id: map.get("UserId").and_then(|v| id_in_parens(v)),
        partition: text("Partition"),
        num_nodes: map.get("NumNodes").and_then(|v| leading_number(v)),
        num_cpus: map.get("NumCPUs").and_then(|v| leading_number(v)),
        node_list: text("NodeList"),
        min_memory_mb,
        memory_per_cpu,
        work_dir: text("WorkDir").map(PathBuf::from),
        exit: map.get("ExitCode").and_then(|v| ExitStatus::parse(v)),
        run_time_secs: map.get("RunTime").and_then(|v| parse_elapsed(v)),
    }))
}

/// `alice(1001)` → 1001 (the name may be missing or be a number itself when unknown to the host).
fn id_in_parens(text: &str) -> Option<u32> {
    let inner = text.trim().strip_suffix(')')?;
    inner[inner.rfind('(')? + 1..].parse().ok()
}

/// `2`, `1-3`, `2,4`: the first number.
fn leading_number(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text[..digits].parse().ok()
}

/// Parses a time limit as scontrol prints it, `[days-]hours:minutes:seconds`, to whole minutes (rounded up).
/// `UNLIMITED`, `Partition_Limit`, `NONE` and anything unreadable are `None`.
pub fn parse_time_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if ["UNLIMITED", "INFINITE", "Partition_Limit", "NONE", "N/A"]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
    {
        return None;
    }
    parse_elapsed(text).map(|secs| secs.div_ceil(60))
}

/// Parses a Slurm memory size (`4G`, `256M`, `1500M`, `1.50G`, `2T`, bare numbers being MiB) to MiB,
/// rounding up. Slurm's units are binary: `1G` is 1024 MiB.
pub fn parse_memory_mb(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let mib_per_unit: f64 = match unit {
        "" | "M" | "m" => 1.0,
        "K" | "k" => 1.0 / 1024.0,
        "G" | "g" => 1024.0,
        "T" | "t" => 1024.0 * 1024.0,
        "P" | "p" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    if number.is_empty() || number.bytes().filter(|&b| b == b'.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let mib = (value * mib_per_unit).ceil();
    (mib.is_finite() && mib < u64::MAX as f64).then_some(mib as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from the dev cluster (Slurm 22.05): names, commands and paths with spaces on purpose.
    const RUNNING: &str = include_str!("../tests/fixtures/show_job_running.txt");
    const SUSPENDED: &str = include_str!("../tests/fixtures/show_job_suspended.txt");
    const PENDING_HELD: &str = include_str!("../tests/fixtures/show_job_pending_held.txt");
    const PENDING_RESOURCES: &str =
        include_str!("../tests/fixtures/show_job_pending_resources.txt");
    const FAILED: &str = include_str!("../tests/fixtures/show_job_failed.txt");

    fn info(text: &str) -> JobInfo {
        parse_show_job(text).expect("parses").expect("a job")
    }

    #[test]
    fn running_job_with_spaces_in_name_command_and_paths() {
        let j = info(RUNNING);
        assert_eq!(j.id, 1057);
        assert_eq!(j.name, "ucim cap job");
        assert_eq!(j.state, SlurmState::Running);
        assert_eq!(j.reason, "None");
        assert_eq!(j.time_limit_minutes, Some(300));
        assert_eq!(j.user_id, Some(0));
        assert_eq!(j.partition.as_deref(), Some("cpu"));
        assert_eq!(j.num_nodes, Some(1));
        assert_eq!(j.num_cpus, Some(1));
        assert_eq!(j.node_list.as_deref(), Some("vm"));
        assert_eq!((j.min_memory_mb, j.memory_per_cpu), (Some(4096), false));
        assert_eq!(j.memory_limit_mb(), Some(4096));
        assert_eq!(j.work_dir, Some(PathBuf::from("/tmp/ucim cap dir")));
        assert_eq!(j.exit, Some(ExitStatus { code: 0, signal: 0 }));
        assert!(j.run_time_secs.is_some());
        let f: HashMap<&str, &str> = fields(RUNNING.trim_end_matches('\n')).into_iter().collect();
        assert_eq!(f["Command"], "/tmp/ucim cap dir/job.sh arg one two");
        assert_eq!(f["StdOut"], "/tmp/ucim cap dir/out 1057.txt");
        assert_eq!(f["Power"], "");
    }

    #[test]
    fn suspended_pending_and_failed_jobs() {
        let s = info(SUSPENDED);
        assert_eq!(
            (&s.state, s.time_limit_minutes),
            (&SlurmState::Suspended, Some(200))
        );

        let h = info(PENDING_HELD);
        assert_eq!(h.state, SlurmState::Pending);
        assert_eq!(h.reason, "JobHeldUser");
        assert_eq!(h.node_list, None, "NodeList= is empty while pending");
        assert_eq!((h.min_memory_mb, h.memory_per_cpu), (Some(256), true));
        assert_eq!(h.memory_limit_mb(), Some(256));
        assert_eq!(h.work_dir, Some(PathBuf::from("/tmp/ucim cap dir")));
        assert_eq!(h.time_limit_minutes, Some(5));

        let r = info(PENDING_RESOURCES);
        assert_eq!(
            (&r.state, r.reason.as_str()),
            (&SlurmState::Pending, "Resources")
        );
        assert_eq!(r.num_cpus, Some(8));
        assert_eq!(r.memory_limit_mb(), Some(8 * 256));

        let f = info(FAILED);
        assert_eq!(f.state, SlurmState::Failed);
        assert_eq!(f.reason, "NonZeroExitCode");
        assert_eq!(f.exit, Some(ExitStatus { code: 3, signal: 0 }));
        assert_eq!(f.user_id, Some(1001));
        assert_eq!(f.time_limit_minutes, Some(24 * 60));
        assert_eq!((f.min_memory_mb, f.memory_per_cpu), (Some(1500), true));
    }

    #[test]
    fn reason_with_spaces_and_unknown_keys_in_free_text() {
        // Real line, edited: Slurm prints some reasons with spaces, and paths may contain `word=`.
        let line = RUNNING
            .replace("Reason=None", "Reason=launch failed requeued held")
            .replace("WorkDir=/tmp/ucim cap dir", "WorkDir=/tmp/a=b c=d  e");
        let j = info(&line);
        assert_eq!(j.reason, "launch failed requeued held");
        assert_eq!(j.work_dir, Some(PathBuf::from("/tmp/a=b c=d  e")));
        assert_eq!(j.user_id, Some(0));
    }

    #[test]
    fn key_names_inside_free_text_are_refused_not_guessed() {
        let spoofed = RUNNING.replace("JobName=ucim cap job", "JobName=x UserId=alice(1001) y");
        assert!(matches!(
            parse_show_job(&spoofed),
            Err(SlurmError::Parse { .. })
        ));
        let args = RUNNING.replace("arg one two", "TimeLimit=UNLIMITED");
        assert!(matches!(
            parse_show_job(&args),
            Err(SlurmError::Parse { .. })
        ));
        let both = RUNNING.replace("job.sh arg", "job.sh MinMemoryCPU=1M arg");
        assert!(matches!(
            parse_show_job(&both),
            Err(SlurmError::Parse { .. })
        ));
        // A key Slurm prints but this parser does not read only shortens the value it lands in.
        let harmless = RUNNING.replace("job.sh arg", "job.sh Features=x arg");
        assert_eq!(info(&harmless).user_id, Some(0));
    }

    #[test]
    fn blank_and_garbage() {
        assert_eq!(parse_show_job("").expect("blank"), None);
        assert_eq!(parse_show_job("\n  \n").expect("blank"), None);
        assert!(parse_show_job("slurm_load_jobs error: Invalid job id specified").is_err());
        assert!(parse_show_job("JobId=x JobState=RUNNING").is_err());
        assert!(parse_show_job("JobId=5 JobName=x").is_err(), "no state");
        let minimal = info("JobId=5 JobState=PENDING\n");
        assert_eq!(
            (minimal.id, minimal.state, minimal.time_limit_minutes),
            (5, SlurmState::Pending, None)
        );
    }

    #[test]
    fn time_limits() {
        assert_eq!(parse_time_limit("00:05:00"), Some(5));
        assert_eq!(parse_time_limit("02:30:00"), Some(150));
        assert_eq!(parse_time_limit("1-02:04:00"), Some(1564));
        assert_eq!(parse_time_limit("00:00:30"), Some(1));
        assert_eq!(parse_time_limit("UNLIMITED"), None);
        assert_eq!(parse_time_limit("Partition_Limit"), None);
        assert_eq!(parse_time_limit("NONE"), None);
        assert_eq!(parse_time_limit("soon"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_mb("4G"), Some(4096));
        assert_eq!(parse_memory_mb("256M"), Some(256));
        assert_eq!(parse_memory_mb("1500M"), Some(1500));
        assert_eq!(parse_memory_mb("1.50G"), Some(1536));
        assert_eq!(parse_memory_mb("2T"), Some(2 * 1024 * 1024));
        assert_eq!(parse_memory_mb("100"), Some(100));
        assert_eq!(parse_memory_mb("0"), Some(0));
        assert_eq!(parse_memory_mb("512K"), Some(1));
        assert_eq!(parse_memory_mb("G"), None);
        assert_eq!(parse_memory_mb("4X"), None);
        assert_eq!(parse_memory_mb("1.2.3G"), None);
        assert_eq!(id_in_parens("alice(1001)"), Some(1001));
        assert_eq!(id_in_parens("1001(1001)"), Some(1001));
        assert_eq!(id_in_parens("alice"), None);
        assert_eq!(leading_number("1-2"), Some(1));
    }
}
