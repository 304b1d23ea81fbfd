//! How a commit that lost a race is retried: after a jittered, growing pause, within a
//! generous budget. A change that does not conflict (an append, or a change to tables other
//! than the ones that moved) is re-staged on the new head until it lands, so only true
//! conflicts reach the user; the budget only stops a writer starved by a storm of others.

use std::time::{Duration, Instant};

/// Attempts at most, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 100;
/// Time since the first attempt after which a lost race is no longer retried.
const MAX_ELAPSED: Duration = Duration::from_secs(60);
/// The pause before the second attempt, at most; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(4);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Counts the attempts of one commit and paces its retries.
pub(crate) struct Backoff {
    attempt: u32,
    started: Instant,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            attempt: 1,
            started: Instant::now(),
        }
    }

    /// The attempt under way, from 1.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Sleeps before the next attempt and counts it; `false` (without sleeping) when the
    /// budget is spent and the conflict should reach the caller.
    pub(crate) async fn next(&mut self) -> bool {
        if self.attempt >= MAX_ATTEMPTS || self.started.elapsed() >= MAX_ELAPSED {
            return false;
        }
        tokio::time::sleep(pause(self.attempt)).await;
        self.attempt += 1;
        true
    }
}

/// "Full jitter": uniformly random up to the doubling ceiling, so writers that collided once
/// spread out instead of colliding again in lockstep.
fn pause(attempt: u32) -> Duration {
    let ceiling = FIRST_PAUSE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_PAUSE);
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    Duration::from_nanos(random % (ceiling.as_nanos() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_under_a_doubling_ceiling() {
        for attempt in 1..=MAX_ATTEMPTS {
            let ceiling = FIRST_PAUSE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_PAUSE);
            assert!(pause(attempt) <= ceiling);
        }
        // Jittered: twenty draws at the largest ceiling are not all equal.
        let draws: std::collections::HashSet<Duration> = (0..20).map(|_| pause(20)).collect();
        assert!(draws.len() > 1);
    }
}
