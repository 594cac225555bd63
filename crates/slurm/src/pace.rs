//! Adaptive pacing of the watcher loop: how long to wait before the next squeue + sacct cycle. Pure logic,
//! no clock, so every rule is testable.
//!
//! The rules, in order:
//! 1. A failed cycle (squeue or sacct failed or timed out) backs off exponentially: `slow`, 2 × `slow`,
//!    4 × `slow` … up to `max_backoff`. The first successful cycle ends the backoff.
//! 2. A busy cycle (a job is about to start, was just submitted, is ending, or any transition happened)
//!    is followed by `fast`, so users see starts and ends within about a second.
//! 3. Quiet cycles step towards `slow` by doubling (`fast`, 2 × `fast`, … `slow`), so a burst of activity
//!    is not followed by a slow poll at once.
//! 4. Whatever the rule says, the pause is at least [`Pacer::FLOOR_FACTOR`] times as long as the cycle's
//!    Slurm calls took, so a slow slurmctld gets at most a fifth of its time taken by ucim. This floor is not
//!    capped by `max_backoff`: with a client timeout of T, a pause can reach 4 × T.

use std::time::Duration;

/// What happened in one watcher cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CycleOutcome {
    /// Something is about to change: a job queued and about to start, just submitted, or ending, or any
    /// transition happened in this cycle.
    pub busy: bool,
    /// squeue or sacct failed or timed out.
    pub failed: bool,
    /// How long the cycle's Slurm calls took together.
    pub took: Duration,
}

/// Chooses the pause after each cycle; see the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct Pacer {
    fast: Duration,
    slow: Duration,
    max_backoff: Duration,
    /// The pause the quiet/busy rules reached; failures leave it alone.
    quiet: Duration,
    failures: u32,
}

impl Default for Pacer {
    /// 1 s when busy, 5 s when quiet, backing off up to 30 s.
    fn default() -> Pacer {
        Pacer::new(
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }
}

impl Pacer {
    /// The pause is never shorter than this many times the duration of the cycle's Slurm calls.
    pub const FLOOR_FACTOR: u32 = 4;

    /// `slow` below `fast` is raised to `fast`, and `max_backoff` below `slow` to `slow`.
    pub fn new(fast: Duration, slow: Duration, max_backoff: Duration) -> Pacer {
        let slow = slow.max(fast);
        Pacer {
            fast,
            slow,
            max_backoff: max_backoff.max(slow),
            quiet: fast,
            failures: 0,
        }
    }

    /// The pause before the next cycle, given how this one went.
    pub fn next(&mut self, outcome: CycleOutcome) -> Duration {
        let pause = if outcome.failed {
            self.failures = self.failures.saturating_add(1);
            let doublings = (self.failures - 1).min(20);
            self.slow
                .saturating_mul(1 << doublings)
                .min(self.max_backoff)
        } else {
            self.failures = 0;
            self.quiet = if outcome.busy {
                self.fast
            } else {
                self.quiet.saturating_mul(2).min(self.slow)
            };
            self.quiet
        };
        pause.max(outcome.took.saturating_mul(Self::FLOOR_FACTOR))
    }

    /// How soon a poke (a job just submitted, suspended, extended) may bring the next cycle after this one:
    /// the busy pace, and never below the floor, so a burst of submissions cannot poll Slurm back to back.
    /// While Slurm fails, pokes do not shorten the backoff at all.
    pub fn soonest(&self, outcome: CycleOutcome, pause: Duration) -> Duration {
        if self.failures > 0 {
            return pause;
        }
        self.fast.max(outcome.took.saturating_mul(Self::FLOOR_FACTOR)).min(pause)
    }

    /// Consecutive failed cycles so far (0 after a success), e.g. for a log line or a health check.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn quiet() -> CycleOutcome {
        CycleOutcome::default()
    }

    fn busy() -> CycleOutcome {
        CycleOutcome {
            busy: true,
            ..Default::default()
        }
    }

    fn failed() -> CycleOutcome {
        CycleOutcome {
            failed: true,
            ..Default::default()
        }
    }

    fn run(p: &mut Pacer, outcomes: &[CycleOutcome]) -> Vec<f64> {
        outcomes.iter().map(|&o| p.next(o).as_secs_f64()).collect()
    }

    #[test]
    fn pokes_wait_for_the_busy_pace_and_the_floor_and_not_at_all_while_failing() {
        let mut p = Pacer::default();
        let pause = p.next(quiet());
        assert_eq!(p.soonest(quiet(), pause), secs(1.0));
        let slow_call = CycleOutcome { took: secs(0.5), ..Default::default() };
        let pause = p.next(slow_call);
        assert_eq!(p.soonest(slow_call, pause), secs(2.0));
        let pause = p.next(failed());
        assert_eq!(p.soonest(failed(), pause), pause);
    }

    #[test]
    fn busy_is_fast() {
        let mut p = Pacer::default();
        assert_eq!(run(&mut p, &[busy(), busy()]), [1.0, 1.0]);
    }

    #[test]
    fn quiet_steps_towards_slow_by_doubling_and_busy_snaps_back() {
        let mut p = Pacer::default();
        assert_eq!(
            run(&mut p, &[quiet(), quiet(), quiet(), quiet()]),
            [2.0, 4.0, 5.0, 5.0]
        );
        assert_eq!(run(&mut p, &[busy(), quiet(), quiet()]), [1.0, 2.0, 4.0]);
    }

    #[test]
    fn failures_back_off_exponentially_and_reset_on_success() {
        let mut p = Pacer::default();
        let f = failed();
        assert_eq!(run(&mut p, &[f, f, f, f, f]), [5.0, 10.0, 20.0, 30.0, 30.0]);
        assert_eq!(p.failures(), 5);
        assert_eq!(run(&mut p, &[busy()]), [1.0]);
        assert_eq!(p.failures(), 0);
        assert_eq!(
            run(&mut p, &[f, quiet()]),
            [5.0, 2.0],
            "backoff starts over; quiet resumes its steps"
        );
        // A failed cycle is not trusted to say it was busy.
        assert_eq!(
            run(
                &mut p,
                &[CycleOutcome {
                    busy: true,
                    failed: true,
                    ..Default::default()
                }]
            ),
            [5.0]
        );
        // Thousands of failures do not overflow.
        for _ in 0..10_000 {
            assert!(p.next(f) <= secs(30.0));
        }
    }

    #[test]
    fn never_shorter_than_a_few_times_the_calls() {
        let mut p = Pacer::default();
        let took = |t: f64, o: CycleOutcome| CycleOutcome { took: secs(t), ..o };
        assert_eq!(
            run(&mut p, &[took(0.1, busy())]),
            [1.0],
            "fast calls: the rule decides"
        );
        assert_eq!(run(&mut p, &[took(2.0, busy())]), [8.0]);
        assert_eq!(run(&mut p, &[took(3.0, quiet())]), [12.0]);
        assert_eq!(
            run(&mut p, &[took(20.0, failed())]),
            [80.0],
            "not capped by max_backoff"
        );
        assert_eq!(run(&mut p, &[busy()]), [1.0], "a quick cycle is fast again");
    }

    #[test]
    fn inverted_bounds_are_normalised() {
        let mut p = Pacer::new(secs(2.0), secs(1.0), secs(0.5));
        assert_eq!(
            run(&mut p, &[quiet(), failed(), failed(), busy()]),
            [2.0, 2.0, 2.0, 2.0]
        );
    }
}
