//! How loaded each partition is, for a product's "queue status": one sinfo and one squeue call for all
//! partitions, and a pure rule turning the numbers into [`QueueStatus`].

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::client::SlurmClient;
use crate::error::SlurmError;
use crate::job_info::parse_time_limit;

/// The `-o` format given to sinfo: partition name (without the default's `*`), CPUs as
/// allocated/idle/other/total, availability (`up`, `down`, `drain`, `inact`).
pub const SINFO_FORMAT: &str = "%R|%C|%a";
/// The `-o` format given to squeue for pending jobs: partition(s) (comma-separated while pending, if the job
/// named several) and reason.
pub const PENDING_FORMAT: &str = "%P|%r";

/// Pending reasons that mean "waiting for this partition's CPUs". Held jobs, dependencies, begin times and
/// per-user limits say nothing about the partition, so they do not count as load.
const LOAD_REASONS: &[&str] = &["Resources", "Priority"];

/// One partition's CPUs (summed over its nodes; a node in two partitions counts in both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLoad {
    pub partition: String,
    pub cpus_allocated: u64,
    pub cpus_idle: u64,
    /// CPUs on nodes that are down, drained or otherwise unusable.
    pub cpus_other: u64,
    pub cpus_total: u64,
    /// The partition accepts and starts jobs (sinfo `up`).
    pub up: bool,
    /// Pending jobs waiting for resources or behind higher priority in this partition (see `LOAD_REASONS`).
    pub pending_jobs: usize,
}

/// How soon a job submitted now is likely to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueStatus {
    /// Idle CPUs and nobody waiting: a job should start at once.
    Available,
    /// Jobs are waiting, or fewer than 10 % of the CPUs are idle: a job may wait.
    Busy,
    /// The partition is not up, has no usable CPUs, or has no idle CPUs while jobs wait: a job will wait.
    Full,
}

/// The rule, in order:
/// 1. **Full** if the partition is not up or has no CPUs that are not down/drained (it starts nothing);
/// 2. **Full** if no CPU is idle and `pending` jobs wait (a new job queues behind them);
/// 3. **Busy** if any job waits, or idle CPUs are under 10 % of the total (the next job may wait);
/// 4. **Available** otherwise.
///
/// `pending` is a parameter rather than `load.pending_jobs` so a caller can add jobs it has just submitted.
pub fn queue_status(load: &PartitionLoad, pending: usize) -> QueueStatus {
    let usable = load.cpus_total.saturating_sub(load.cpus_other);
    if !load.up || usable == 0 {
        return QueueStatus::Full;
    }
    if load.cpus_idle == 0 && pending > 0 {
        return QueueStatus::Full;
    }
    if pending > 0 || load.cpus_idle * 10 < load.cpus_total {
        return QueueStatus::Busy;
    }
    QueueStatus::Available
}

impl PartitionLoad {
    /// [`queue_status`] with the pending jobs Slurm reported.
    pub fn status(&self) -> QueueStatus {
        queue_status(self, self.pending_jobs)
    }
}

/// Parses `sinfo -h -o '%R|%C|%a'`. sinfo prints one line per group of nodes with the same CPU count, so
/// lines of one partition are summed; partitions come out sorted by name. `pending_jobs` is 0.
pub fn parse_sinfo(text: &str) -> Result<Vec<PartitionLoad>, SlurmError> {
    let mut parts: BTreeMap<String, PartitionLoad> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [name, cpus, avail] = fields[..] else {
            return Err(SlurmError::parse(
                "sinfo",
                line,
                "expected 3 '|'-separated fields",
            ));
        };
        let counts: Vec<u64> = cpus
            .split('/')
            .map_while(|n| n.trim().parse().ok())
            .collect();
        let [allocated, idle, other, total] = counts[..] else {
            return Err(SlurmError::parse("sinfo", line, "expected CPUs as A/I/O/T"));
        };
        let name = name.trim().trim_end_matches('*');
        if name.is_empty() {
            return Err(SlurmError::parse("sinfo", line, "empty partition name"));
        }
        let entry = parts
            .entry(name.to_string())
            .or_insert_with(|| PartitionLoad {
                partition: name.to_string(),
                cpus_allocated: 0,
                cpus_idle: 0,
                cpus_other: 0,
                cpus_total: 0,
                up: true,
                pending_jobs: 0,
            });
        entry.cpus_allocated += allocated;
        entry.cpus_idle += idle;
        entry.cpus_other += other;
        entry.cpus_total += total;
        entry.up &= avail.trim().eq_ignore_ascii_case("up");
    }
    Ok(parts.into_values().collect())
}

/// Parses `squeue -h -t PENDING -o '%P|%r'` into waiting jobs per partition, counting only jobs whose
/// reason is load (`Resources`, `Priority`). A job pending in several partitions counts in each.
pub fn parse_pending(text: &str) -> Result<BTreeMap<String, usize>, SlurmError> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((partitions, reason)) = line.split_once('|') else {
            return Err(SlurmError::parse(
                "squeue",
                line,
                "expected 2 '|'-separated fields",
            ));
        };
        if !LOAD_REASONS.contains(&reason.trim()) {
            continue;
        }
        for p in partitions
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            *counts.entry(p.to_string()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Reads `MaxTime=` from `scontrol show partition -o NAME`: minutes, or `None` for `UNLIMITED`.
pub fn parse_partition_max_time(text: &str) -> Result<Option<u64>, SlurmError> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let value = line
        .split(' ')
        .find_map(|field| field.strip_prefix("MaxTime="))
        .ok_or_else(|| SlurmError::parse("scontrol", line, "no MaxTime= field"))?;
    if value.eq_ignore_ascii_case("UNLIMITED") || value.eq_ignore_ascii_case("INFINITE") {
        return Ok(None);
    }
    parse_time_limit(value)
        .map(Some)
        .ok_or_else(|| SlurmError::parse("scontrol", line, "unreadable MaxTime"))
}

impl SlurmClient {
    /// The longest time limit `partition` allows (`scontrol show partition -o NAME`), `None` if unlimited.
    /// Slurm operators are not held to it, so a caller acting as one must check it itself.
    pub async fn partition_max_time(&self, partition: &str) -> Result<Option<u64>, SlurmError> {
        let args: Vec<OsString> = vec![
            "show".into(),
            "partition".into(),
            "-o".into(),
            partition.into(),
        ];
        parse_partition_max_time(&self.run("scontrol", &args).await?.stdout)
    }

    /// Every partition's CPU load and waiting jobs: `sinfo -h -o '%R|%C|%a'` and
    /// `squeue -h -t PENDING -o '%P|%r'`, two calls whatever the size of the cluster.
    ///
    /// Hidden partitions, and partitions or jobs the caller may not see (PrivateData), are not shown.
    pub async fn partition_load(&self) -> Result<Vec<PartitionLoad>, SlurmError> {
        let sinfo: Vec<OsString> = vec!["-h".into(), "-o".into(), SINFO_FORMAT.into()];
        let mut loads = parse_sinfo(&self.run("sinfo", &sinfo).await?.stdout)?;
        let squeue: Vec<OsString> = vec![
            "-h".into(),
            "-t".into(),
            "PENDING".into(),
            "-o".into(),
            PENDING_FORMAT.into(),
        ];
        let pending = parse_pending(&self.run("squeue", &squeue).await?.stdout)?;
        for load in &mut loads {
            load.pending_jobs = pending.get(&load.partition).copied().unwrap_or(0);
        }
        Ok(loads)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::{fake_bin, recorded, recording};

    fn load(idle: u64, other: u64, total: u64, up: bool) -> PartitionLoad {
        PartitionLoad {
            partition: "p".into(),
            cpus_allocated: total - idle - other,
            cpus_idle: idle,
            cpus_other: other,
            cpus_total: total,
            up,
            pending_jobs: 0,
        }
    }

    #[test]
    fn sinfo_real_output_and_summing() {
        // Captured from the dev cluster: `cpu` is the default partition (sinfo %P would print `cpu*`).
        let rows = parse_sinfo("cpu|1/7/0/8|up\nshort|1/7/0/8|up\n").expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            PartitionLoad {
                partition: "cpu".into(),
                ..load(7, 0, 8, true)
            }
        );
        assert_eq!(rows[0].cpus_allocated, 1);
        let rows = parse_sinfo(
            "big|64/0/0/64|up\nbig|10/20/2/32|up\nold|0/0/16/16|down\nx*|0/4/0/4|inact\n",
        )
        .expect("parses");
        assert_eq!(
            rows.iter()
                .map(|r| (r.partition.as_str(), r.cpus_idle, r.cpus_total, r.up))
                .collect::<Vec<_>>(),
            [
                ("big", 20, 96, true),
                ("old", 0, 16, false),
                ("x", 4, 4, false)
            ]
        );
        assert_eq!(rows[0].cpus_allocated, 74);
        assert!(parse_sinfo("").expect("empty").is_empty());
    }

    #[test]
    fn sinfo_garbage() {
        assert!(parse_sinfo("cpu|1/7/0|up").is_err());
        assert!(parse_sinfo("cpu|a/b/c/d|up").is_err());
        assert!(parse_sinfo("cpu up").is_err());
        assert!(parse_sinfo("|1/1/0/2|up").is_err());
    }

    #[test]
    fn pending_counts_only_load() {
        let text =
            "cpu|Resources\ncpu|Priority\ncpu|JobHeldUser\nshort|Dependency\ncpu,short|Priority\n\
                    gpu|QOSMaxJobsPerUserLimit\ngpu|Priority\n";
        let counts = parse_pending(text).expect("parses");
        assert_eq!(counts.get("cpu"), Some(&3));
        assert_eq!(counts.get("short"), Some(&1));
        assert_eq!(counts.get("gpu"), Some(&1));
        assert!(parse_pending("").expect("empty").is_empty());
        assert!(parse_pending("no separator").is_err());
    }

    #[test]
    fn queue_status_rule() {
        // Full: not up, or nothing usable, whatever is pending.
        assert_eq!(queue_status(&load(8, 0, 8, false), 0), QueueStatus::Full);
        assert_eq!(queue_status(&load(0, 8, 8, true), 0), QueueStatus::Full);
        assert_eq!(queue_status(&load(0, 0, 0, true), 0), QueueStatus::Full);
        // Full: no idle CPU and jobs waiting.
        assert_eq!(queue_status(&load(0, 0, 8, true), 1), QueueStatus::Full);
        // Busy: no idle CPU, nobody waiting; or jobs waiting; or under 10 % idle.
        assert_eq!(queue_status(&load(0, 0, 8, true), 0), QueueStatus::Busy);
        assert_eq!(queue_status(&load(6, 0, 8, true), 2), QueueStatus::Busy);
        assert_eq!(queue_status(&load(9, 0, 100, true), 0), QueueStatus::Busy);
        // Available: 10 % or more idle and nobody waiting.
        assert_eq!(
            queue_status(&load(10, 0, 100, true), 0),
            QueueStatus::Available
        );
        assert_eq!(
            queue_status(&load(7, 0, 8, true), 0),
            QueueStatus::Available
        );
        assert_eq!(
            queue_status(&load(4, 4, 8, true), 0),
            QueueStatus::Available
        );
        let mut l = load(7, 0, 8, true);
        l.pending_jobs = 1;
        assert_eq!(l.status(), QueueStatus::Busy);
    }

    #[test]
    fn partition_max_time() {
        // Captured from the dev cluster (shortened).
        let short = "PartitionName=short AllowGroups=ALL Default=NO MaxNodes=UNLIMITED MaxTime=00:10:00 MinNodes=0\n";
        assert_eq!(parse_partition_max_time(short).expect("parses"), Some(10));
        let cpu = "PartitionName=cpu MaxTime=UNLIMITED State=UP";
        assert_eq!(parse_partition_max_time(cpu).expect("parses"), None);
        assert_eq!(
            parse_partition_max_time("PartitionName=x MaxTime=1-12:00:00").expect("parses"),
            Some(2160)
        );
        assert!(parse_partition_max_time("PartitionName=x").is_err());
        assert!(parse_partition_max_time("PartitionName=x MaxTime=soon").is_err());
    }

    #[tokio::test]
    async fn partition_load_is_two_calls() {
        let dir = fake_bin(
            "queue",
            "sinfo",
            &recording("echo 'cpu|1/7/0/8|up'; echo 'short|1/7/0/8|up'"),
        );
        fake_bin(
            "queue",
            "squeue",
            &recording("echo 'cpu|Resources'; echo 'cpu,short|Priority'"),
        );
        let c = SlurmClient::new(Some(dir.clone()), Duration::from_secs(5));
        let loads = c.partition_load().await.expect("ok");
        assert_eq!(
            loads
                .iter()
                .map(|l| (l.partition.as_str(), l.pending_jobs))
                .collect::<Vec<_>>(),
            [("cpu", 2), ("short", 1)]
        );
        assert_eq!(c.calls(), 2);
        assert_eq!(recorded(&dir, "sinfo"), ["-h", "-o", "%R|%C|%a"]);
        assert_eq!(
            recorded(&dir, "squeue"),
            ["-h", "-t", "PENDING", "-o", "%P|%r"]
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
