//! The one retry decision of the workspace: after a failed attempt, wait how long, or stop and
//! why. st2 calls, the OTLP export and the event sinks all ask it, so a budget of attempts, a
//! give-up time and a server's `Retry-After` mean the same everywhere.
//!
//! What counts as retryable stays with each caller (an HTTP status, a gRPC code, a missing
//! ack); this module only decides the timing and the budget.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Backoff, BackoffConfig};

/// How one operation is retried: pauses from `backoff`, within a budget of attempts and/or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pauses between attempts; `max` also caps a `Retry-After` that is honoured.
    pub backoff: BackoffConfig,
    /// Attempts in all, the first included; `None` for no limit.
    pub max_attempts: Option<u32>,
    /// No attempt starts once this long has passed since the first; `None` for no limit.
    pub give_up_after: Option<Duration>,
}

/// Why a [`Retry`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The budget of attempts is spent (the attempts made).
    Attempts(u32),
    /// `give_up_after` has passed since the first attempt.
    Elapsed(Duration),
    /// The server asked to wait longer than `backoff.max` (what it asked for).
    WaitTooLong(Duration),
}

impl RetryPolicy {
    /// Retries forever with `backoff`, until a limit is added.
    pub fn new(backoff: BackoffConfig) -> Self {
        Self {
            backoff,
            max_attempts: None,
            give_up_after: None,
        }
    }

    /// At most `attempts` attempts, the first included.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// No new attempt once `limit` has passed since the first.
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// The retry state of one operation whose first attempt starts now.
    pub fn start(&self) -> Retry {
        Retry {
            backoff: Backoff::new(self.backoff.clone()),
            max_attempts: self.max_attempts,
            give_up_after: self.give_up_after,
            started: Instant::now(),
            attempts: 1,
        }
    }
}

/// One operation being retried under a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    max_attempts: Option<u32>,
    give_up_after: Option<Duration>,
    started: Instant,
    attempts: u32,
}

impl Retry {
    /// The current attempt failed in a way worth repeating: the pause before the next one, or
    /// why to stop. `retry_after` (the server's own wait) replaces the backoff when it is at
    /// most `backoff.max`; a longer one stops, so the caller sees the server's wait instead of
    /// a retry it asked not to get.
    pub fn after_failure(&mut self, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        if self.max_attempts.is_some_and(|max| self.attempts >= max) {
            return Err(GiveUp::Attempts(self.attempts));
        }
        let elapsed = self.started.elapsed();
        if self.give_up_after.is_some_and(|limit| elapsed >= limit) {
            return Err(GiveUp::Elapsed(elapsed));
        }
        // The step advances either way, so a server that stops sending `Retry-After` does not
        // restart the schedule from `initial`.
        let backoff = self.backoff.next_delay();
        let wait = match retry_after {
            Some(asked) if asked > self.backoff.config().max => {
                return Err(GiveUp::WaitTooLong(asked));
            }
            Some(asked) => asked,
            None => backoff,
        };
        self.attempts += 1;
        Ok(wait)
    }

    /// Attempts made so far, the current one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The policy's longest pause (`backoff.max`).
    pub fn max_wait(&self) -> Duration {
        self.backoff.config().max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(BackoffConfig::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
    }

    #[test]
    fn attempts_are_counted_with_the_first_and_the_budget_stops_them() {
        let mut r = policy().max_attempts(3).start();
        assert!(r.after_failure(None).is_ok());
        assert!(r.after_failure(None).is_ok());
        assert_eq!(r.attempts(), 3);
        assert_eq!(r.after_failure(None), Err(GiveUp::Attempts(3)));
        assert_eq!(
            policy().max_attempts(1).start().after_failure(None),
            Err(GiveUp::Attempts(1))
        );
    }

    #[test]
    fn backoff_pauses_double_within_the_shared_schedule() {
        let mut r = policy().start();
        for full in [100, 200, 400, 800, 1_600, 2_000, 2_000] {
            let wait = r.after_failure(None).unwrap().as_millis() as u64;
            assert!((full / 2..=full).contains(&wait), "{wait} for {full}");
        }
    }

    #[test]
    fn retry_after_replaces_the_backoff_up_to_the_ceiling_and_stops_beyond() {
        let mut r = policy().start();
        assert_eq!(
            r.after_failure(Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            r.after_failure(Some(Duration::from_secs(3))),
            Err(GiveUp::WaitTooLong(Duration::from_secs(3)))
        );
        assert_eq!(r.attempts(), 2, "a refused wait is no attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn give_up_after_counts_from_the_first_attempt_on_the_tokio_clock() {
        let mut r = policy().give_up_after(Duration::from_secs(10)).start();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(r.after_failure(None).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            r.after_failure(None),
            Err(GiveUp::Elapsed(Duration::from_secs(10)))
        );
    }
}
