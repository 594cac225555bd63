//! Reading `squeue` and `sacct` output in the exact formats [`crate::SlurmClient`] asks for.
//!
//! Parsing is strict about structure (a line with the wrong number of fields or a non-numeric job id fails
//! the whole answer, which the watcher then treats as "no answer") and lenient about content (unknown states
//! become [`SlurmState::Other`]), so a newer Slurm cannot make a job end by mistake.

use crate::error::SlurmError;
use crate::state::{ExitStatus, SlurmState};
use crate::SlurmJobId;

/// The `-o` format given to squeue: job id, long state name, reason, numeric uid.
pub const SQUEUE_FORMAT: &str = "%A|%T|%r|%U";
/// The `-o` fields given to sacct. `NodeList` is there because a job cancelled while held gets a real
/// `Start` time (equal to its end) but `None assigned` nodes: only both together prove it ran.
pub const SACCT_FIELDS: &str = "JobID,State,ExitCode,Start,End,Elapsed,NodeList";

/// One line of squeue: the live view from slurmctld (finished jobs stay for MinJobAge, 300 s by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub id: SlurmJobId,
    pub state: SlurmState,
    /// Slurm's reason, e.g. `Resources`, `Priority`, `NonZeroExitCode`, `TimeLimit`; `None` when there is none.
    pub reason: String,
    pub uid: Option<u32>,
}

/// One allocation line of sacct (`-X`): the accounting view, which has exit codes but lags squeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcctRow {
    pub id: SlurmJobId,
    pub state: SlurmState,
    pub exit: Option<ExitStatus>,
    /// The job really ran: `Start` is a time (not `Unknown`/`None`) and nodes were assigned.
    pub started: bool,
    pub elapsed_secs: Option<u64>,
}

/// What a job-id field holds: a plain job, or something we never submit (array task, het component, step).
enum JobIdField {
    Job(SlurmJobId),
    Skip,
}

fn job_id(field: &str) -> Option<JobIdField> {
    let field = field.trim();
    if let Ok(id) = field.parse::<SlurmJobId>() {
        return Some(JobIdField::Job(id));
    }
    // `12_3`, `12_[1-5]`, `12+1`, `12.batch`, `12.0`, `12_3.extern`: sub-ids of a job.
    let digits = field.bytes().take_while(u8::is_ascii_digit).count();
    match field.as_bytes().get(digits) {
        Some(b'_' | b'+' | b'.') if digits > 0 => Some(JobIdField::Skip),
        _ => None,
    }
}

/// A job-id field: `None` if malformed, `Some(None)` for a sub-id ucim skips, `Some(Some(id))` for a job.
pub(crate) fn job_id_of(field: &str) -> Option<Option<SlurmJobId>> {
    match job_id(field)? {
        JobIdField::Job(id) => Some(Some(id)),
        JobIdField::Skip => Some(None),
    }
}

/// Parses `squeue -h -o '%A|%T|%r|%U'`. Blank lines are ignored; array tasks and het components are skipped.
pub fn parse_squeue(text: &str) -> Result<Vec<QueueRow>, SlurmError> {
    let mut rows = Vec::with_capacity(text.len() / 24);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut head = line.splitn(3, '|');
        let (Some(id), Some(state), Some(rest)) = (head.next(), head.next(), head.next()) else {
            return Err(SlurmError::parse(
                "squeue",
                line,
                "expected 4 '|'-separated fields",
            ));
        };
        // The reason is the only free-text field, so take the uid from the right.
        let Some((reason, uid)) = rest.rsplit_once('|') else {
            return Err(SlurmError::parse(
                "squeue",
                line,
                "expected 4 '|'-separated fields",
            ));
        };
        let id = match job_id(id) {
            Some(JobIdField::Job(id)) => id,
            Some(JobIdField::Skip) => continue,
            None => return Err(SlurmError::parse("squeue", line, "job id is not a number")),
        };
        rows.push(QueueRow {
            id,
            state: SlurmState::parse(state),
            reason: reason.trim().to_string(),
            uid: uid.trim().parse().ok(),
        });
    }
    Ok(rows)
}

/// Parses `sacct -n -P -o JobID,State,ExitCode,Start[,End[,Elapsed[,NodeList]]]`. Blank lines are ignored;
/// step lines (`12.batch`) and array/het sub-ids are skipped, so it also reads output made without `-X`.
pub fn parse_sacct(text: &str) -> Result<Vec<AcctRow>, SlurmError> {
    let mut rows = Vec::with_capacity(text.len() / 48);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split('|');
        let (Some(id), Some(state), Some(exit), Some(start)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(SlurmError::parse(
                "sacct",
                line,
                "expected at least 4 '|'-separated fields",
            ));
        };
        let _end = fields.next();
        let elapsed = fields.next();
        let nodes = fields.next();
        let id = match job_id(id) {
            Some(JobIdField::Job(id)) => id,
            Some(JobIdField::Skip) => continue,
            None => return Err(SlurmError::parse("sacct", line, "job id is not a number")),
        };
        let start = start.trim();
        let start_known = !(start.is_empty()
            || start.eq_ignore_ascii_case("Unknown")
            || start.eq_ignore_ascii_case("None"));
        let nodes_assigned = nodes.is_none_or(|n| {
            let n = n.trim();
            !(n.is_empty() || n.eq_ignore_ascii_case("None assigned") || n == "(null)")
        });
        rows.push(AcctRow {
            id,
            state: SlurmState::parse(state),
            exit: ExitStatus::parse(exit),
            started: start_known && nodes_assigned,
            elapsed_secs: elapsed.and_then(parse_elapsed),
        });
    }
    Ok(rows)
}

/// Parses Slurm's duration format `[DD-][HH:]MM:SS[.mmm]` to whole seconds.
pub fn parse_elapsed(text: &str) -> Option<u64> {
    let text = text.trim();
    let (days, clock) = match text.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, text),
    };
    let clock = clock.split_once('.').map_or(clock, |(whole, _frac)| whole);
    let mut parts = [0u64; 3];
    let mut n = 0;
    for p in clock.split(':') {
        if n == 3 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = p.parse().ok()?;
        n += 1;
    }
    let (h, m, s) = match n {
        3 => (parts[0], parts[1], parts[2]),
        2 => (0, parts[0], parts[1]),
        _ => return None,
    };
    Some(((days * 24 + h) * 60 + m) * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_real_output() {
        // Shapes seen on the dev cluster (slurm-on-one-machine.md §3), with %U (uid) instead of %u.
        let text = "3|PENDING|Resources|1002\n4|PENDING|Priority|1002\n1|RUNNING|None|1001\n\n\
                    2|FAILED|NonZeroExitCode|1001\n4|TIMEOUT|TimeLimit|1002\n5|CANCELLED|JobHeldUser|1001\n";
        let rows = parse_squeue(text).expect("parses");
        assert_eq!(rows.len(), 6);
        assert_eq!(
            rows[0],
            QueueRow {
                id: 3,
                state: SlurmState::Pending,
                reason: "Resources".into(),
                uid: Some(1002)
            }
        );
        assert_eq!(rows[2].state, SlurmState::Running);
        assert_eq!(rows[2].reason, "None");
        assert_eq!(rows[3].state, SlurmState::Failed);
        assert_eq!(rows[3].reason, "NonZeroExitCode");
        assert_eq!(rows[4].state, SlurmState::Timeout);
    }

    #[test]
    fn squeue_skips_sub_ids_and_tolerates_pipes_in_reason() {
        let text = "12_3|RUNNING|None|0\r\n12+1|RUNNING|None|0\n13|PENDING|a|b reason|0\n14|RUNNING|None|\n";
        let rows = parse_squeue(text).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, 13);
        assert_eq!(rows[0].reason, "a|b reason");
        assert_eq!(rows[1].uid, None);
        assert!(parse_squeue("").expect("empty ok").is_empty());
    }

    #[test]
    fn squeue_rejects_garbage() {
        assert!(matches!(
            parse_squeue("slurm_load_jobs error: Invalid job id specified"),
            Err(SlurmError::Parse { .. })
        ));
        assert!(matches!(
            parse_squeue("x|RUNNING|None|0"),
            Err(SlurmError::Parse { .. })
        ));
        assert!(matches!(
            parse_squeue("1|RUNNING"),
            Err(SlurmError::Parse { .. })
        ));
    }

    #[test]
    fn sacct_real_output() {
        // Lines captured from the dev cluster with -o JobID,State,ExitCode,Start,End,Elapsed,NodeList.
        let text = "\
2|FAILED|3:0|2026-11-24T11:23:44|2026-11-24T11:23:44|00:00:00|vm
2.batch|FAILED|3:0|2026-11-24T11:23:44|2026-11-24T11:23:44|00:00:00|vm
3|RUNNING|0:0|2026-11-24T11:23:44|Unknown|00:00:07|vm
4|CANCELLED by 0|0:0|None|2026-11-24T11:23:44|00:00:00|None assigned
1|CANCELLED by 0|0:0|2026-11-24T11:21:26|2026-11-24T11:21:26|00:00:00|None assigned
6|PENDING|0:0|Unknown|Unknown|00:00:00|None assigned
7|TIMEOUT|0:0|2026-11-24T10:00:00|2026-11-24T10:01:17|00:01:17|vm
8|OUT_OF_MEMORY|0:125|2026-11-24T10:00:00|2026-11-24T10:00:03|1-02:03:04|vm
";
        let rows = parse_sacct(text).expect("parses");
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![2, 3, 4, 1, 6, 7, 8]
        );
        assert_eq!(
            rows[0],
            AcctRow {
                id: 2,
                state: SlurmState::Failed,
                exit: Some(ExitStatus { code: 3, signal: 0 }),
                started: true,
                elapsed_secs: Some(0)
            }
        );
        assert!(
            rows[1].started
                && rows[1].state == SlurmState::Running
                && rows[1].elapsed_secs == Some(7)
        );
        assert!(!rows[2].started, "Start None: cancelled before it began");
        assert_eq!(rows[2].state, SlurmState::Cancelled);
        assert!(
            !rows[3].started,
            "held then cancelled: Start is a time but no node was assigned"
        );
        assert!(!rows[4].started);
        assert_eq!(rows[5].elapsed_secs, Some(77));
        assert_eq!(
            rows[6].exit,
            Some(ExitStatus {
                code: 0,
                signal: 125
            })
        );
        assert_eq!(rows[6].elapsed_secs, Some(93784));
    }

    #[test]
    fn sacct_brief_format_without_nodelist() {
        let rows = parse_sacct("1|CANCELLED by 0|0:0|2026-11-24T11:21:26|2026-11-24T11:21:26\n5|PENDING|0:0|Unknown|Unknown\n")
            .expect("parses");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].started);
        assert_eq!(rows[0].elapsed_secs, None);
        assert!(!rows[1].started);
    }

    #[test]
    fn sacct_skips_arrays_and_rejects_garbage() {
        let rows = parse_sacct("12_3|COMPLETED|0:0|x|x|00:00:01|vm\n12_[4-9]|PENDING|0:0|Unknown|Unknown|00:00:00|None assigned\n")
            .expect("parses");
        assert!(rows.is_empty());
        assert!(parse_sacct("sacct: error: Slurm accounting storage is disabled").is_err());
        assert!(parse_sacct("1|COMPLETED|0:0").is_err());
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(parse_elapsed("00:00:02"), Some(2));
        assert_eq!(parse_elapsed("01:02:03"), Some(3723));
        assert_eq!(parse_elapsed("2-00:00:01"), Some(172801));
        assert_eq!(parse_elapsed("05:07"), Some(307));
        assert_eq!(parse_elapsed("05:07.123"), Some(307));
        assert_eq!(parse_elapsed("INVALID"), None);
        assert_eq!(parse_elapsed(""), None);
        assert_eq!(parse_elapsed("1:2:3:4"), None);
    }
}
