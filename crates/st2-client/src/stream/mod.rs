//! Following st2's event stream: one long-lived SSE connection per credential, reconnected and
//! reconciled over REST so no status change is missed, and the watch API the adapter uses.
//!
//! - [`parse`]: an incremental parser for st2's SSE framing.
//! - `consumer`: the connection loop (silence detection, capped backoff with jitter,
//!   reconciliation after every reconnect).
//! - `poll`: the one poll loop that reads followed executions while the stream is down or
//!   disabled.
//! - [`ExecutionWatcher`]: follows executions ([`Follow`]: statuses and output in execution
//!   order), waits for terminal statuses, and fans out every snapshot observed.

mod consumer;
mod follow;
mod hub;
mod output;
pub mod parse;
mod poll;

pub use follow::{ExecutionEvent, Follow, MAX_FOLLOW, OUTPUT_DRAIN};
pub use hub::{ConnectionState, ExecutionWatcher, StatsHandle, StreamStats, WaitError};
pub use parse::{ParseError, SseEvent, SseParser};

use std::time::Duration;

use serde::Deserialize;
use st2_basics::{BackoffConfig, FieldError, duration};

/// `st2.stream`: following executions through st2's event stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Follow executions through the stream; off, the watcher's poll loop reads every
    /// followed execution each `fallback_poll`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A connection that sends nothing (not even st2's keep-alive, every 25 s by default)
    /// for this long is dropped and reopened.
    #[serde(
        default = "default_silence",
        alias = "silence_timeout_ms",
        with = "st2_basics::duration"
    )]
    pub silence_timeout: Duration,
    /// Pauses between reconnect attempts.
    #[serde(default = "default_backoff")]
    pub backoff: BackoffConfig,
    /// While the stream is down (or disabled), the poll loop reads each followed execution
    /// this often instead.
    #[serde(
        default = "default_fallback_poll",
        alias = "fallback_poll_ms",
        with = "st2_basics::duration"
    )]
    pub fallback_poll: Duration,
    /// Executions remembered per watcher (recently finished, and in flight); bounds memory.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Bytes (of their JSON) the remembered executions take at most, finished and in flight
    /// each; the oldest go first.
    #[serde(default = "default_cache_max_bytes")]
    pub cache_max_bytes: usize,
    /// A finished execution whose JSON is larger is remembered as its summary (id, status,
    /// times) and read from st2 again when a follow asks for it.
    #[serde(default = "default_cached_execution_max_bytes")]
    pub cached_execution_max_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            silence_timeout: default_silence(),
            backoff: default_backoff(),
            fallback_poll: default_fallback_poll(),
            capacity: default_capacity(),
            cache_max_bytes: default_cache_max_bytes(),
            cached_execution_max_bytes: default_cached_execution_max_bytes(),
        }
    }
}

fn default_enabled() -> bool {
    true
}
fn default_silence() -> Duration {
    Duration::from_secs(60)
}
fn default_backoff() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(250), Duration::from_secs(30))
}
fn default_fallback_poll() -> Duration {
    Duration::from_secs(2)
}
fn default_capacity() -> usize {
    4_096
}
fn default_cache_max_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_cached_execution_max_bytes() -> usize {
    16 * 1024
}

impl StreamConfig {
    /// Adds a [`FieldError`] (under `st2.stream.`) for every broken rule.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        self.backoff.validate("st2.stream.backoff", errors);
        let mut bad = |field: &str, reason: String| {
            errors.push(FieldError::new(format!("st2.stream.{field}"), reason))
        };
        if self.silence_timeout < Duration::from_secs(1) {
            bad(
                "silence_timeout",
                format!(
                    "{} is below 1s; st2 sends a keep-alive only every 25 s by default, so set it above that",
                    duration::format(self.silence_timeout)
                ),
            );
        }
        if self.fallback_poll < Duration::from_millis(100) {
            bad(
                "fallback_poll",
                format!(
                    "{} is below 100ms; every waited-on execution is read this often while the stream is down",
                    duration::format(self.fallback_poll)
                ),
            );
        }
        if !(16..=1_000_000).contains(&self.capacity) {
            bad(
                "capacity",
                format!("{} is outside 16..=1000000", self.capacity),
            );
        }
        if self.cache_max_bytes < 1024 * 1024 {
            bad(
                "cache_max_bytes",
                format!(
                    "{} is below 1048576 (1 MiB); executions in flight would be forgotten while followed",
                    self.cache_max_bytes
                ),
            );
        }
        if self.cached_execution_max_bytes > self.cache_max_bytes / 16 {
            bad(
                "cached_execution_max_bytes",
                format!(
                    "{} is over cache_max_bytes / 16 ({}); a few whole executions would fill the cache",
                    self.cached_execution_max_bytes,
                    self.cache_max_bytes / 16
                ),
            );
        }
    }
}
