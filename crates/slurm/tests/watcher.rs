//! Every rule of `Watcher::cycle`, one test each, through the public API only.

use slurm::watch::{accounting_ids, End, Phase, Transition, Watcher, SQUEUE_END_AFTER_CYCLES};
use slurm::{AcctRow, ExitStatus, QueueRow, SlurmState};

fn q(id: u64, state: &str, reason: &str) -> QueueRow {
    QueueRow {
        id,
        state: SlurmState::parse(state),
        reason: reason.into(),
        uid: Some(1001),
    }
}

fn a(id: u64, state: &str, exit: &str, started: bool) -> AcctRow {
    AcctRow {
        id,
        state: SlurmState::parse(state),
        exit: ExitStatus::parse(exit),
        started,
        elapsed_secs: Some(0),
    }
}

fn to(id: u64, to: Phase) -> Transition {
    Transition {
        id,
        to,
        reason: None,
    }
}

fn ended(state: &str, exit: Option<(i32, i32)>) -> Phase {
    Phase::Ended(End {
        state: SlurmState::parse(state),
        exit: exit.map(|(code, signal)| ExitStatus { code, signal }),
    })
}

fn watcher(jobs: &[(u64, Phase)]) -> Watcher {
    let mut w = Watcher::new();
    for (id, p) in jobs {
        w.track(*id, p.clone());
    }
    w
}

#[test]
fn live_phase_comes_from_squeue() {
    let mut w = watcher(&[
        (1, Phase::Queued),
        (2, Phase::Queued),
        (3, Phase::Queued),
        (4, Phase::Queued),
        (5, Phase::Running),
    ]);
    let squeue = [
        q(1, "PENDING", "Priority"),
        q(2, "CONFIGURING", "None"),
        q(3, "RUNNING", "None"),
        q(4, "COMPLETING", "None"),
        q(5, "SUSPENDED", "None"),
    ];
    let t = w.cycle(Some(&squeue), Some(&[]));
    assert_eq!(
        t,
        vec![
            to(3, Phase::Running),
            to(4, Phase::Running),
            to(5, Phase::Suspended)
        ]
    );
    assert_eq!(w.phase(5), Some(&Phase::Suspended));

    // Back from suspension, a resize, a requeue: all follow squeue.
    let squeue = [
        q(3, "REQUEUED", "None"),
        q(4, "RESIZING", "None"),
        q(5, "RUNNING", "None"),
    ];
    let t = w.cycle(Some(&squeue), Some(&[]));
    assert_eq!(t, vec![to(3, Phase::Queued), to(5, Phase::Running)]);
}

#[test]
fn reason_is_reported_but_a_reason_change_alone_emits_nothing() {
    let mut w = watcher(&[(1, Phase::Running)]);
    let t = w.cycle(Some(&[q(1, "PENDING", "BeginTime")]), None);
    assert_eq!(
        t,
        vec![Transition {
            id: 1,
            to: Phase::Queued,
            reason: Some("BeginTime".into())
        }]
    );
    assert!(w
        .cycle(Some(&[q(1, "PENDING", "Resources")]), None)
        .is_empty());
    assert!(w
        .cycle(Some(&[q(1, "PENDING", "Priority")]), None)
        .is_empty());
}

#[test]
fn sacct_terminal_ends_with_exit_code_and_untracks() {
    let mut w = watcher(&[(7, Phase::Running), (8, Phase::Running)]);
    let t = w.cycle(
        Some(&[q(7, "FAILED", "NonZeroExitCode"), q(8, "RUNNING", "None")]),
        Some(&[a(7, "FAILED", "3:0", true), a(8, "RUNNING", "0:0", true)]),
    );
    assert_eq!(
        t,
        vec![Transition {
            id: 7,
            to: ended("FAILED", Some((3, 0))),
            reason: Some("NonZeroExitCode".into())
        }]
    );
    assert_eq!(w.tracked_ids(), vec![8]);
    assert_eq!(w.len(), 1);
    assert_eq!(w.phase(7), None);
    // Later answers about an untracked job are ignored.
    assert!(w
        .cycle(
            Some(&[q(7, "FAILED", "NonZeroExitCode")]),
            Some(&[a(7, "FAILED", "3:0", true)])
        )
        .is_empty());
}

#[test]
fn sacct_ends_a_job_even_when_squeue_failed_or_forgot_it() {
    let mut w = watcher(&[(1, Phase::Running), (2, Phase::Running)]);
    let t = w.cycle(None, Some(&[a(1, "CANCELLED by 1002", "0:0", true)]));
    assert_eq!(t, vec![to(1, ended("CANCELLED", Some((0, 0))))]);
    let t = w.cycle(Some(&[]), Some(&[a(2, "TIMEOUT", "0:0", true)]));
    assert_eq!(t, vec![to(2, ended("TIMEOUT", Some((0, 0))))]);
    assert!(w.is_empty());
}

#[test]
fn squeue_terminal_ends_after_five_successful_sacct_cycles_without_a_row() {
    let mut w = watcher(&[(1, Phase::Running)]);
    let squeue = [q(1, "COMPLETED", "None")];
    for i in 1..SQUEUE_END_AFTER_CYCLES {
        assert!(w.cycle(Some(&squeue), Some(&[])).is_empty(), "cycle {i}");
        // Failed sacct cycles neither count nor reset.
        assert!(w.cycle(Some(&squeue), None).is_empty());
    }
    let t = w.cycle(Some(&squeue), Some(&[]));
    assert_eq!(t, vec![to(1, ended("COMPLETED", None))]);
    assert!(w.is_empty());
}

#[test]
fn squeue_end_is_remembered_after_squeue_forgets_the_job() {
    // MinJobAge can expire while accounting is silent: the earlier terminal sighting still counts.
    let mut w = watcher(&[(1, Phase::Running)]);
    assert!(w
        .cycle(Some(&[q(1, "TIMEOUT", "TimeLimit")]), Some(&[]))
        .is_empty());
    for _ in 2..SQUEUE_END_AFTER_CYCLES {
        assert!(w.cycle(Some(&[]), Some(&[])).is_empty());
    }
    let t = w.cycle(None, Some(&[]));
    assert_eq!(
        t,
        vec![Transition {
            id: 1,
            to: ended("TIMEOUT", None),
            reason: Some("TimeLimit".into())
        }]
    );
}

#[test]
fn squeue_end_counter_resets_when_the_job_lives_again() {
    let mut w = watcher(&[(1, Phase::Running)]);
    for _ in 1..SQUEUE_END_AFTER_CYCLES {
        assert!(w
            .cycle(Some(&[q(1, "NODE_FAIL", "None")]), Some(&[]))
            .is_empty());
    }
    // Requeued after the node failure.
    assert_eq!(
        w.cycle(Some(&[q(1, "PENDING", "BeginTime")]), Some(&[]))
            .len(),
        1
    );
    for _ in 1..SQUEUE_END_AFTER_CYCLES {
        assert!(w
            .cycle(Some(&[q(1, "NODE_FAIL", "None")]), Some(&[]))
            .is_empty());
    }
    assert_eq!(
        w.cycle(Some(&[q(1, "NODE_FAIL", "None")]), Some(&[])),
        vec![to(1, ended("NODE_FAIL", None))]
    );
}

#[test]
fn stale_non_terminal_sacct_row_does_not_block_squeue_end_forever() {
    // A runaway accounting record stuck at RUNNING: squeue's positive evidence wins after the grace cycles.
    let mut w = watcher(&[(1, Phase::Running)]);
    let squeue = [q(1, "COMPLETED", "None")];
    let sacct = [a(1, "RUNNING", "0:0", true)];
    for _ in 1..SQUEUE_END_AFTER_CYCLES {
        assert!(w.cycle(Some(&squeue), Some(&sacct)).is_empty());
    }
    assert_eq!(
        w.cycle(Some(&squeue), Some(&sacct)),
        vec![to(1, ended("COMPLETED", None))]
    );
}

#[test]
fn failed_or_empty_answers_never_end_or_change_a_job() {
    let mut w = watcher(&[
        (1, Phase::Running),
        (2, Phase::Queued),
        (3, Phase::Suspended),
    ]);
    for _ in 0..20 {
        assert!(w.cycle(None, None).is_empty());
        assert!(w.cycle(Some(&[]), None).is_empty());
        assert!(w.cycle(None, Some(&[])).is_empty());
        assert!(w.cycle(Some(&[]), Some(&[])).is_empty());
    }
    assert_eq!(w.tracked_ids(), vec![1, 2, 3]);
    assert_eq!(w.phase(1), Some(&Phase::Running));
    assert_eq!(w.phase(2), Some(&Phase::Queued));
    assert_eq!(w.phase(3), Some(&Phase::Suspended));
}

#[test]
fn absent_from_both_never_ends_but_is_counted() {
    let mut w = watcher(&[(1, Phase::Running)]);
    for _ in 0..3 {
        w.cycle(Some(&[]), Some(&[]));
    }
    // A failed call tells nothing: the count neither grows nor resets.
    w.cycle(None, Some(&[]));
    assert_eq!(w.missing_cycles(1), Some(3));
    assert_eq!(w.phase(1), Some(&Phase::Running));
    w.cycle(Some(&[q(1, "RUNNING", "None")]), None);
    assert_eq!(w.missing_cycles(1), Some(0));
    assert_eq!(w.missing_cycles(99), None);
}

#[test]
fn straight_from_queued_to_ended_emits_running_first_when_it_ran() {
    let mut w = watcher(&[(1, Phase::Queued), (2, Phase::Queued)]);
    let t = w.cycle(
        Some(&[q(1, "COMPLETED", "None"), q(2, "CANCELLED", "BeginTime")]),
        Some(&[
            a(1, "COMPLETED", "0:0", true),
            a(2, "CANCELLED by 0", "0:0", false),
        ]),
    );
    assert_eq!(
        t,
        vec![
            to(1, Phase::Running),
            to(1, ended("COMPLETED", Some((0, 0)))),
            Transition {
                id: 2,
                to: ended("CANCELLED", Some((0, 0))),
                reason: Some("BeginTime".into())
            },
        ]
    );
}

#[test]
fn reload_after_restart_as_queued_still_reports_running() {
    // The server restarted; the job ran and finished meanwhile; only sacct remembers it.
    let mut w = Watcher::new();
    w.track(42, Phase::Queued);
    let t = w.cycle(Some(&[]), Some(&[a(42, "OUT_OF_MEMORY", "0:125", true)]));
    assert_eq!(
        t,
        vec![
            to(42, Phase::Running),
            to(42, ended("OUT_OF_MEMORY", Some((0, 125))))
        ]
    );
}

#[test]
fn squeue_only_end_from_queued_infers_running_from_the_state() {
    let mut w = watcher(&[(1, Phase::Queued), (2, Phase::Queued)]);
    let squeue = [q(1, "COMPLETED", "None"), q(2, "CANCELLED", "None")];
    let mut t = Vec::new();
    for _ in 0..SQUEUE_END_AFTER_CYCLES {
        t.extend(w.cycle(Some(&squeue), Some(&[])));
    }
    assert_eq!(
        t,
        vec![
            to(1, Phase::Running),
            to(1, ended("COMPLETED", None)),
            to(2, ended("CANCELLED", None))
        ]
    );
}

#[test]
fn squeue_wins_for_live_phases_sacct_for_terminal() {
    let mut w = watcher(&[(1, Phase::Queued), (2, Phase::Running)]);
    // sacct lags ~5 s on RUNNING.
    let t = w.cycle(
        Some(&[q(1, "RUNNING", "None")]),
        Some(&[a(1, "PENDING", "0:0", false)]),
    );
    assert_eq!(t, vec![to(1, Phase::Running)]);
    assert!(w
        .cycle(
            Some(&[q(1, "RUNNING", "None")]),
            Some(&[a(1, "PENDING", "0:0", false)])
        )
        .is_empty());
    // The job finished between the squeue and the sacct call: sacct's end wins.
    let t = w.cycle(
        Some(&[q(2, "RUNNING", "None")]),
        Some(&[a(2, "COMPLETED", "0:0", true)]),
    );
    assert_eq!(t, vec![to(2, ended("COMPLETED", Some((0, 0))))]);
}

#[test]
fn sacct_end_of_a_previous_run_does_not_end_a_requeued_job() {
    let mut w = watcher(&[(1, Phase::Running)]);
    let t = w.cycle(
        Some(&[q(1, "PENDING", "BeginTime")]),
        Some(&[a(1, "NODE_FAIL", "0:0", true)]),
    );
    assert_eq!(
        t,
        vec![Transition {
            id: 1,
            to: Phase::Queued,
            reason: Some("BeginTime".into())
        }]
    );
    assert!(w
        .cycle(
            Some(&[q(1, "REQUEUED", "None")]),
            Some(&[a(1, "PREEMPTED", "0:0", true)])
        )
        .is_empty());
    assert_eq!(w.len(), 1);
}

#[test]
fn transitions_are_ordered_by_job_id() {
    let ids = [50u64, 3, 17, 9, 1000, 2];
    let mut w = Watcher::new();
    for id in ids {
        w.track(id, Phase::Queued);
    }
    let squeue: Vec<QueueRow> = ids.iter().map(|&id| q(id, "RUNNING", "None")).collect();
    let sacct: Vec<AcctRow> = ids
        .iter()
        .rev()
        .map(|&id| a(id, "RUNNING", "0:0", true))
        .collect();
    let t = w.cycle(Some(&squeue), Some(&sacct));
    assert_eq!(
        t.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![2, 3, 9, 17, 50, 1000]
    );
    assert_eq!(w.tracked_ids(), vec![2, 3, 9, 17, 50, 1000]);
}

#[test]
fn unknown_states_change_nothing() {
    let mut w = watcher(&[(1, Phase::Running)]);
    assert!(w
        .cycle(
            Some(&[q(1, "SOMETHING_NEW", "None")]),
            Some(&[a(1, "SOMETHING_NEW", "0:0", true)])
        )
        .is_empty());
    assert_eq!(w.phase(1), Some(&Phase::Running));
    // Known-but-rare ones map sensibly.
    assert_eq!(
        w.cycle(Some(&[q(1, "STOPPED", "None")]), None),
        vec![to(1, Phase::Suspended)]
    );
    assert_eq!(
        w.cycle(Some(&[q(1, "REQUEUE_HOLD", "None")]), None),
        vec![to(1, Phase::Queued)]
    );
}

#[test]
fn track_untrack_and_reload() {
    let mut w = Watcher::new();
    w.track(1, Phase::Running);
    w.track(2, Phase::Queued);
    w.track(3, ended("COMPLETED", None));
    assert_eq!(w.tracked_ids(), vec![1, 2]);
    w.track(1, Phase::Suspended);
    assert_eq!(w.phase(1), Some(&Phase::Suspended));
    w.untrack(2);
    w.untrack(99);
    assert_eq!(w.tracked_ids(), vec![1]);
}

#[test]
fn sacct_is_asked_only_about_jobs_squeue_does_not_show_waiting_or_running() {
    let ids = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    let squeue = [
        q(1, "PENDING", "Priority"),
        q(2, "CONFIGURING", "None"),
        q(3, "RUNNING", "None"),
        q(4, "SUSPENDED", "None"),
        q(5, "COMPLETING", "None"),
        q(6, "COMPLETED", "None"),
        q(7, "REQUEUED", "None"),
        q(8, "SPECIAL_EXIT", "None"),
        // 9: squeue does not show it
    ];
    assert_eq!(accounting_ids(&ids, Some(&squeue)), [5, 6, 7, 8, 9]);
    assert_eq!(accounting_ids(&ids, None), ids, "squeue failed: ask about all");
    assert!(accounting_ids(&ids[..4], Some(&squeue)).is_empty(), "a queue of waiting and running jobs needs no sacct");
}

/// Cycles as the monitor runs them: sacct answers only about the ids `accounting_ids` picked.
fn cycle_asking_sacct_only_when_needed(w: &mut Watcher, squeue: &[QueueRow], accounting: &[AcctRow]) -> (Vec<Transition>, Vec<u64>) {
    let asked = accounting_ids(&w.tracked_ids(), Some(squeue));
    let answer: Vec<AcctRow> = accounting.iter().filter(|r| asked.contains(&r.id)).cloned().collect();
    (w.cycle(Some(squeue), Some(&answer)), asked)
}

#[test]
fn ends_are_still_found_when_sacct_is_asked_only_about_some_jobs() {
    let mut w = watcher(&[(1, Phase::Queued), (2, Phase::Running), (3, Phase::Running)]);
    // Job 1 waits again after a requeue; the accounting database still has its first run's failure.
    let accounting = [a(1, "FAILED", "1:0", true), a(2, "COMPLETED", "0:0", true), a(3, "OUT_OF_MEMORY", "0:125", true)];
    let (t, asked) = cycle_asking_sacct_only_when_needed(&mut w, &[q(1, "PENDING", "None"), q(2, "RUNNING", "None"), q(3, "COMPLETING", "None")], &accounting);
    assert_eq!(asked, [3]);
    assert_eq!(t, vec![to(3, ended("OUT_OF_MEMORY", Some((0, 125))))], "an ending job's end comes with its exit code");
    let (t, asked) = cycle_asking_sacct_only_when_needed(&mut w, &[q(1, "PENDING", "None")], &accounting);
    assert_eq!(asked, [2], "squeue forgot job 2: sacct is asked");
    assert_eq!(t, vec![to(2, ended("COMPLETED", Some((0, 0))))]);
    assert_eq!(w.phase(1), Some(&Phase::Queued), "a waiting job is not ended by an old accounting record");
}
