//! The batched watcher: one squeue answer and at most one sacct answer per cycle for all tracked jobs,
//! turned into phase transitions. Pure logic, no IO, so every rule can be tested without Slurm.
//!
//! sacct is the expensive call (slurmctld answers squeue from memory; sacct goes through slurmdbd to its
//! database), and only ends need it, so a cycle asks sacct only about the jobs [`accounting_ids`] picks.
//!
//! The two sources disagree in known ways: squeue is live but forgets finished jobs after MinJobAge and has
//! no exit code; sacct has exit codes but lags (RUNNING shows ~5 s late) and may be disabled. Hence: live
//! phases come from squeue, ends preferably from sacct, and nothing is ever concluded from a job's absence
//! or from a failed call.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::parse::{AcctRow, QueueRow};
use crate::state::{ExitStatus, SlurmState};
use crate::SlurmJobId;

/// The jobs of `ids` to ask sacct about, given this cycle's squeue answer (`None`: squeue failed, so all
/// of them). A job squeue shows waiting or running has not ended, and live phases come from squeue alone,
/// so sacct could add nothing about it; every other job (completing, ended, in an unknown state, or not
/// shown at all) is asked about. When none is left, pass `Some(&[])` to [`Watcher::cycle`] for sacct.
pub fn accounting_ids(ids: &[SlurmJobId], squeue: Option<&[QueueRow]>) -> Vec<SlurmJobId> {
    let Some(rows) = squeue else { return ids.to_vec() };
    let settled: HashSet<SlurmJobId> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                SlurmState::Pending | SlurmState::Configuring | SlurmState::Running | SlurmState::Suspended | SlurmState::Resizing
            )
        })
        .map(|r| r.id)
        .collect();
    ids.iter().copied().filter(|id| !settled.contains(id)).collect()
}

/// Successful sacct cycles without an end for a job squeue shows finished, after which squeue's state is
/// taken as the end (accounting lagging badly, disabled, or stuck on a runaway record).
pub const SQUEUE_END_AFTER_CYCLES: u32 = 5;

/// What ucim knows about a job's life, in Slurm terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Running,
    Suspended,
    Ended(End),
}

/// How a job ended. `exit` is `None` when only squeue saw the end (squeue has no exit code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub state: SlurmState,
    pub exit: Option<ExitStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: SlurmJobId,
    pub to: Phase,
    /// Slurm's reason (e.g. `Resources`, `NonZeroExitCode`, `TimeLimit`) when squeue gave one other than `None`.
    pub reason: Option<String>,
}

/// The live phase a non-terminal squeue state means, or `None` for terminal and unknown states (which then
/// change nothing).
pub fn live_phase(state: &SlurmState) -> Option<Phase> {
    match state {
        SlurmState::Pending | SlurmState::Configuring | SlurmState::Requeued => Some(Phase::Queued),
        SlurmState::Running | SlurmState::Completing | SlurmState::Resizing => Some(Phase::Running),
        SlurmState::Suspended => Some(Phase::Suspended),
        SlurmState::Other(s) => match s.as_str() {
            "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => {
                Some(Phase::Queued)
            }
            "SIGNALING" | "STAGE_OUT" => Some(Phase::Running),
            "STOPPED" => Some(Phase::Suspended),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    /// Never `Ended`: ended jobs leave the map.
    phase: Phase,
    /// The terminal state (and reason) squeue last showed, kept after squeue forgets the job.
    squeue_end: Option<(SlurmState, Option<String>)>,
    /// Consecutive successful sacct cycles, since `squeue_end` was set, that showed no end.
    acct_silent: u32,
    /// Consecutive cycles in which both calls succeeded and neither mentioned the job.
    missing: u32,
}

/// Remembers each tracked job's last phase and diffs each cycle's answers against it.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    jobs: BTreeMap<SlurmJobId, Tracked>,
}

fn reason_of(row: &QueueRow) -> Option<String> {
    let r = row.reason.trim();
    (!r.is_empty() && r != "None").then(|| r.to_string())
}

/// Ends of a job squeue alone saw that prove it ran, so a missed Running is still reported.
fn squeue_end_implies_started(state: &SlurmState) -> bool {
    matches!(
        state,
        SlurmState::Completed | SlurmState::Failed | SlurmState::Timeout | SlurmState::OutOfMemory
    )
}

impl Watcher {
    pub fn new() -> Watcher {
        Watcher::default()
    }

    /// Starts (or restarts, after a reload from the database) tracking `id` in phase `last`.
    /// Tracking a job as `Ended` untracks it: there is nothing left to watch.
    pub fn track(&mut self, id: SlurmJobId, last: Phase) {
        if matches!(last, Phase::Ended(_)) {
            self.jobs.remove(&id);
            return;
        }
        self.jobs.insert(
            id,
            Tracked {
                phase: last,
                squeue_end: None,
                acct_silent: 0,
                missing: 0,
            },
        );
    }

    pub fn untrack(&mut self, id: SlurmJobId) {
        self.jobs.remove(&id);
    }

    /// Ids to ask squeue and sacct about, ascending. Only jobs that have not ended.
    pub fn tracked_ids(&self) -> Vec<SlurmJobId> {
        self.jobs.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The last phase of a tracked job.
    pub fn phase(&self, id: SlurmJobId) -> Option<&Phase> {
        self.jobs.get(&id).map(|t| &t.phase)
    }

    /// Consecutive cycles in which both calls succeeded and neither knew the job. Such a job never ends by
    /// itself; a growing count is for the caller to log (or to resolve by hand).
    pub fn missing_cycles(&self, id: SlurmJobId) -> Option<u32> {
        self.jobs.get(&id).map(|t| t.missing)
    }

    /// Feeds one cycle's answers; `None` means that call failed. Returns the transitions, ordered by job id
    /// (and, for one job, in the order they happened).
    ///
    /// - Live phases come from squeue only (sacct lags by seconds and would move jobs backwards).
    /// - A job ends when sacct shows a terminal state (with its exit code), unless squeue at the same time
    ///   shows it queued again: then it is being requeued and sacct's row is the previous run's.
    /// - A job also ends, with squeue's state and no exit code, once squeue has shown it terminal and
    ///   [`SQUEUE_END_AFTER_CYCLES`] successful sacct cycles have passed without sacct showing an end. With
    ///   accounting disabled sacct always fails, so pass `Some(&[])` for sacct instead of calling it.
    /// - If a job ends from `Queued` and the evidence says it ran, `Running` is emitted first.
    /// - Failed or empty answers, and absence from both, never end or change a job.
    /// - Ended jobs are untracked.
    pub fn cycle(
        &mut self,
        squeue: Option<&[QueueRow]>,
        sacct: Option<&[AcctRow]>,
    ) -> Vec<Transition> {
        let queue: Option<HashMap<SlurmJobId, &QueueRow>> =
            squeue.map(|rows| rows.iter().map(|r| (r.id, r)).collect());
        // On duplicate ids (a requeued job's older record) the later row wins.
        let acct: Option<HashMap<SlurmJobId, &AcctRow>> =
            sacct.map(|rows| rows.iter().map(|r| (r.id, r)).collect());
        let mut out = Vec::new();
        let mut ended = Vec::new();

        for (&id, job) in self.jobs.iter_mut() {
            let q = queue.as_ref().and_then(|m| m.get(&id).copied());
            let a = acct.as_ref().and_then(|m| m.get(&id).copied());

            if q.is_some() || a.is_some() {
                job.missing = 0;
            } else if queue.is_some() && acct.is_some() {
                job.missing = job.missing.saturating_add(1);
            }

            if let Some(q) = q {
                if q.state.is_terminal() {
                    if job.squeue_end.is_none() {
                        job.acct_silent = 0;
                    }
                    job.squeue_end = Some((q.state.clone(), reason_of(q)));
                } else {
                    // Alive again (or still): any earlier terminal sighting is obsolete.
                    job.squeue_end = None;
                    job.acct_silent = 0;
                }
            }

            let requeued = q.is_some_and(|q| live_phase(&q.state) == Some(Phase::Queued));
            let end = match a {
                Some(a) if a.state.is_terminal() && !requeued => Some((
                    End {
                        state: a.state.clone(),
                        exit: a.exit,
                    },
                    a.started,
                    q.and_then(reason_of),
                )),
                _ => match &job.squeue_end {
                    Some((state, reason)) if acct.is_some() => {
                        job.acct_silent = job.acct_silent.saturating_add(1);
                        (job.acct_silent >= SQUEUE_END_AFTER_CYCLES).then(|| {
                            let started =
                                squeue_end_implies_started(state) || a.is_some_and(|a| a.started);
                            (
                                End {
                                    state: state.clone(),
                                    exit: None,
                                },
                                started,
                                reason.clone(),
                            )
                        })
                    }
                    _ => None,
                },
            };

            if let Some((end, started, reason)) = end {
                if job.phase == Phase::Queued && started {
                    out.push(Transition {
                        id,
                        to: Phase::Running,
                        reason: None,
                    });
                }
                out.push(Transition {
                    id,
                    to: Phase::Ended(end),
                    reason,
                });
                ended.push(id);
                continue;
            }

            if let Some(phase) = q.and_then(|q| live_phase(&q.state)) {
                if phase != job.phase {
                    job.phase = phase.clone();
                    out.push(Transition {
                        id,
                        to: phase,
                        reason: q.and_then(reason_of),
                    });
                }
            }
        }

        for id in ended {
            self.jobs.remove(&id);
        }
        out
    }
}
