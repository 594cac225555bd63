//! How many instances unauthenticated traffic may start. Browser and WebSocket requests carry only a
//! `usernameHint` when they reach the ingress, and the ingress asks the server to start that user's
//! instance so the instance can check the request's token itself. Anyone can send such requests, so
//! starts they cause are rationed (a token bucket for the whole server); Core calls, which the server
//! verifies first, are not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct StartBudget {
    burst: f64,
    every: Duration,
    state: Mutex<(f64, Instant)>,
}

impl StartBudget {
    /// Up to `burst` starts at once, then one per `every`.
    pub fn new(burst: u32, every: Duration) -> StartBudget {
        StartBudget { burst: f64::from(burst), every, state: Mutex::new((f64::from(burst), Instant::now())) }
    }

    /// Takes one start if the budget has one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, since) = *state;
        let refilled = now.saturating_duration_since(since).as_secs_f64() / self.every.as_secs_f64();
        let tokens = (tokens + refilled).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let budget = StartBudget::new(3, Duration::from_secs(2));
        let t0 = Instant::now();
        assert!((0..3).all(|_| budget.try_take_at(t0)));
        assert!(!budget.try_take_at(t0));
        assert!(!budget.try_take_at(t0 + Duration::from_secs(1)));
        assert!(budget.try_take_at(t0 + Duration::from_millis(2100)));
        assert!(!budget.try_take_at(t0 + Duration::from_millis(2200)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(600);
        assert!((0..3).all(|_| budget.try_take_at(later)));
        assert!(!budget.try_take_at(later));
    }
}
