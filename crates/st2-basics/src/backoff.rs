//! The one backoff schedule of the workspace: exponential, capped, with "equal jitter" (half
//! fixed, half random, so clients that failed together do not come back together), and reset
//! once things have been healthy for a while.
//!
//! Every loop that waits before trying again (st2 calls, the event stream, event sinks, the
//! OTLP export, the TLS listener) takes its pauses from a [`Backoff`] built from a
//! [`BackoffConfig`], so they share one config shape and one tested behaviour. Time is
//! `tokio::time`, so tests run it on a paused clock.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::FieldError;

/// `backoff:` wherever something is retried: `{initial: 250ms, max: 30s, reset_after: 5s}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First pause; each further failure doubles it.
    #[serde(with = "crate::duration")]
    pub initial: Duration,
    /// Longest pause.
    #[serde(with = "crate::duration")]
    pub max: Duration,
    /// After this long without a failure the next pause starts again from `initial`.
    #[serde(default = "default_reset_after", with = "crate::duration")]
    pub reset_after: Duration,
}

fn default_reset_after() -> Duration {
    Duration::from_secs(5)
}

impl BackoffConfig {
    /// `initial` to `max`, reset after the default healthy period (5 s).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            reset_after: default_reset_after(),
        }
    }

    /// Adds a [`FieldError`] under `path` (e.g. `st2.stream.backoff`) for each broken rule.
    pub fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        if self.initial.is_zero() {
            errors.push(FieldError::new(
                format!("{path}.initial"),
                "must be greater than 0",
            ));
        }
        if self.initial > self.max {
            errors.push(FieldError::new(
                format!("{path}.initial"),
                format!(
                    "{} is longer than {path}.max ({})",
                    crate::duration::format(self.initial),
                    crate::duration::format(self.max)
                ),
            ));
        }
    }

    /// The pause before retry number `attempt` (0 for the first): `initial × 2^attempt`,
    /// capped at `max`, then half of it fixed and half random.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        full / 2 + full.mul_f64(fastrand::f64() * 0.5)
    }
}

/// A running backoff: how many failures in a row, and since when things were last healthy.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    healthy_since: Option<Instant>,
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            attempt: 0,
            healthy_since: None,
        }
    }

    /// The pause before the next try, counting one more failure. A healthy period of at least
    /// `reset_after` since [`Backoff::healthy`] restarts the schedule from `initial`.
    pub fn next_delay(&mut self) -> Duration {
        if self
            .healthy_since
            .take()
            .is_some_and(|since| since.elapsed() >= self.config.reset_after)
        {
            self.attempt = 0;
        }
        let delay = self.config.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Waits out [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Things work again from now (a connection opened, a delivery went through); if they
    /// keep working for `reset_after`, the next failure starts from `initial`.
    pub fn healthy(&mut self) {
        self.healthy_since.get_or_insert_with(Instant::now);
    }

    /// Starts again from `initial` at once (a success that needs no healthy period).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.healthy_since = None;
    }

    /// Failures in a row counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The schedule this backoff follows.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial_ms: u64, max_ms: u64) -> BackoffConfig {
        BackoffConfig::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        )
    }

    #[test]
    fn delays_double_to_the_cap_and_keep_half_fixed() {
        let c = config(100, 1_000);
        for (attempt, full) in [(0, 100), (1, 200), (3, 800), (4, 1_000), (40, 1_000)] {
            for _ in 0..50 {
                let d = c.delay(attempt).as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "attempt {attempt}: {d}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_period_resets_the_schedule_and_a_short_one_does_not() {
        let mut b = Backoff::new(config(100, 10_000));
        for _ in 0..4 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 4);
        b.healthy();
        tokio::time::advance(Duration::from_secs(1)).await;
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(800),
            "short health kept the step: {d:?}"
        );
        b.healthy();
        tokio::time::advance(Duration::from_secs(5)).await;
        let d = b.next_delay();
        assert!(
            d <= Duration::from_millis(100),
            "reset after 5 s healthy: {d:?}"
        );
        assert_eq!(b.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_on_the_tokio_clock() {
        let mut b = Backoff::new(config(1_000, 1_000));
        let started = Instant::now();
        b.wait().await;
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(500)..=Duration::from_millis(1_000)).contains(&waited),
            "{waited:?}"
        );
    }

    #[test]
    fn config_reads_durations_and_reports_bad_bounds() {
        let c: BackoffConfig =
            serde_json::from_str(r#"{"initial": "250ms", "max": "30s"}"#).unwrap();
        assert_eq!(c, config(250, 30_000));
        let mut errors = Vec::new();
        config(5_000, 100).validate("st2.retry.backoff", &mut errors);
        config(0, 100).validate("events.backoff", &mut errors);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["st2.retry.backoff.initial", "events.backoff.initial"]
        );
    }
}
