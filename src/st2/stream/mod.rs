//! Following st2's event stream: one long-lived SSE connection per credential, reconnected and
//! reconciled over REST so no status change is missed, and the watch API the adapter uses.
//!
//! - [`parse`]: an incremental parser for st2's SSE framing.
//! - `consumer`: the connection loop (silence detection, capped backoff with jitter,
//!   reconciliation after every reconnect).
//! - [`ExecutionWatcher`]: waits for terminal statuses, fans out every snapshot observed, and
//!   follows one execution's output.

mod consumer;
mod hub;
mod output;
pub mod parse;

pub use hub::{ConnectionState, ExecutionWatcher, StreamStats, WaitError};
pub use output::OutputStream;
pub use parse::{ParseError, SseEvent, SseParser};

use serde::Deserialize;

use crate::config::FieldError;

/// `st2.stream`: following executions through st2's event stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Follow executions through the stream; off, every execution is polled.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A connection that sends nothing (not even st2's keep-alive, every 25 s by default)
    /// for this long is dropped and reopened.
    #[serde(default = "default_silence")]
    pub silence_timeout_ms: u64,
    /// First pause before reconnecting; doubles per failed attempt, with jitter.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    /// Longest pause between reconnect attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// While the stream is down, each waited-on execution is read this often instead.
    #[serde(default = "default_fallback_poll")]
    pub fallback_poll_ms: u64,
    /// Executions remembered per watcher (recently finished, and in flight); bounds memory.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            silence_timeout_ms: default_silence(),
            initial_backoff_ms: default_initial_backoff(),
            max_backoff_ms: default_max_backoff(),
            fallback_poll_ms: default_fallback_poll(),
            capacity: default_capacity(),
        }
    }
}

fn default_enabled() -> bool {
    true
}
fn default_silence() -> u64 {
    60_000
}
fn default_initial_backoff() -> u64 {
    250
}
fn default_max_backoff() -> u64 {
    30_000
}
fn default_fallback_poll() -> u64 {
    2_000
}
fn default_capacity() -> usize {
    4_096
}

impl StreamConfig {
    /// Adds a [`FieldError`] (under `st2.stream.`) for every broken rule.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut bad = |field: &str, reason: String| {
            errors.push(FieldError {
                field: format!("st2.stream.{field}"),
                reason,
            })
        };
        if self.silence_timeout_ms < 1_000 {
            bad(
                "silence_timeout_ms",
                format!(
                    "{} is below 1000; st2 sends a keep-alive only every 25 s by default, so set it above that",
                    self.silence_timeout_ms
                ),
            );
        }
        if self.initial_backoff_ms == 0 || self.initial_backoff_ms > self.max_backoff_ms {
            bad(
                "initial_backoff_ms",
                format!(
                    "{} must be between 1 and st2.stream.max_backoff_ms ({})",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            );
        }
        if self.fallback_poll_ms < 100 {
            bad(
                "fallback_poll_ms",
                format!(
                    "{} is below 100; every waited-on execution is read this often while the stream is down",
                    self.fallback_poll_ms
                ),
            );
        }
        if !(16..=1_000_000).contains(&self.capacity) {
            bad(
                "capacity",
                format!("{} is outside 16..=1000000", self.capacity),
            );
        }
    }
}
