//! Every job in the queue, in one `squeue` call: for finding jobs users submitted outside UCloud in the
//! same poll that watches UCloud's jobs (the listing replaces the `-j IDS` call, it is not an extra one).
//!
//! The job name is deliberately not read: it is the only field a user can fill with anything, including a
//! newline that would forge a line for someone else's job. Every other field is Slurm's own.

use std::ffi::OsString;

use crate::error::SlurmError;
use crate::parse::{job_id_of, QueueRow};
use crate::state::SlurmState;
use crate::{parse_time_limit, SlurmClient};

/// id, state, partition, CPUs, nodes, time limit, uid, and the reason last (the only free-ish text).
pub const LISTING_FORMAT: &str = "%A|%T|%P|%C|%D|%l|%U|%r";

/// One job of the listing: its queue row and what a UCloud job record needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedJob {
    pub row: QueueRow,
    pub partition: String,
    /// CPUs of the whole job.
    pub cpus: u32,
    pub nodes: u32,
    /// `None`: unlimited.
    pub time_limit_minutes: Option<u64>,
}

/// Parses `squeue -h -o LISTING_FORMAT`. Lines that do not parse are skipped (and logged), not fatal:
/// the listing includes every user's jobs, and one odd line must not blind the watcher to all others.
pub fn parse_listing(text: &str) -> Vec<ListedJob> {
    let mut out = Vec::with_capacity(text.len() / 40);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match parse_line(line) {
            Some(Some(job)) => out.push(job),
            Some(None) => {}
            None => tracing::warn!(line, "squeue listing: a line that does not parse was skipped"),
        }
    }
    out
}

/// `None`: malformed; `Some(None)`: a sub-id (array task, het component) ucim does not handle.
fn parse_line(line: &str) -> Option<Option<ListedJob>> {
    let f: Vec<&str> = line.splitn(8, '|').collect();
    if f.len() != 8 {
        return None;
    }
    let Some(id) = job_id_of(f[0])? else { return Some(None) };
    Some(Some(ListedJob {
        row: QueueRow {
            id,
            state: SlurmState::parse(f[1]),
            reason: f[7].trim().to_string(),
            uid: f[6].trim().parse().ok(),
        },
        partition: f[2].trim().trim_end_matches('*').to_string(),
        cpus: f[3].trim().parse().ok()?,
        nodes: f[4].trim().parse().ok()?,
        time_limit_minutes: parse_time_limit(f[5]),
    }))
}

impl SlurmClient {
    /// One `squeue -h -t all -o LISTING_FORMAT` for every job slurmctld knows (finished ones for MinJobAge).
    pub async fn squeue_all(&self) -> Result<Vec<ListedJob>, SlurmError> {
        let args: Vec<OsString> = vec!["-h".into(), "-t".into(), "all".into(), "-o".into(), LISTING_FORMAT.into()];
        let out = self.run("squeue", &args).await?;
        Ok(parse_listing(&out.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_field_and_skips_what_it_cannot_read() {
        let text = "101|RUNNING|cpu|4|1|1:00:00|1001|None\n\
                    102|PENDING|short*|8|2|UNLIMITED|1002|Priority\n\
                    103_4|PENDING|cpu|1|1|5:00|1001|None\n\
                    garbage line\n\
                    104|COMPLETED|cpu|x|1|5:00|1001|None\n";
        let jobs = parse_listing(text);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].row, QueueRow { id: 101, state: SlurmState::Running, reason: "None".into(), uid: Some(1001) });
        assert_eq!((jobs[0].partition.as_str(), jobs[0].cpus, jobs[0].nodes, jobs[0].time_limit_minutes), ("cpu", 4, 1, Some(60)));
        assert_eq!((jobs[1].partition.as_str(), jobs[1].nodes, jobs[1].time_limit_minutes), ("short", 2, None));
        assert_eq!(jobs[1].row.reason, "Priority");
    }
}
