//! Fault switches: make the emulator fail, drop, delay or cut responses on purpose.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// What the stream endpoints should do, shared with every open SSE response.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StreamControl {
    /// Bumped by `cut_streams`: every stream opened before ends abruptly.
    pub cut: u64,
    /// While true, streams stay open but write nothing (no heartbeat either).
    pub silenced: bool,
}

/// The outcome of the fault switches for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Serve normally.
    Pass,
    /// Close the connection without answering.
    Drop,
    /// Serve the request, then close the connection instead of sending the answer: the
    /// caller cannot tell whether it took effect.
    LoseAnswer,
    /// Answer this status with st2's error shape.
    Fail(u16),
}

#[derive(Debug)]
struct Targeted {
    method: String,
    path_prefix: String,
    status: u16,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Switches {
    fail_next: Option<(u16, usize)>,
    targeted: Vec<Targeted>,
    fail_ratio: Option<(u16, f64)>,
    drop_next: usize,
    drop_ratio: f64,
    lose_answer_ratio: f64,
    delay: Duration,
}

#[derive(Debug)]
struct Inner {
    switches: Mutex<Switches>,
    streams: watch::Sender<StreamControl>,
}

/// A cheap, cloneable handle on the emulator's fault switches.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::new(Inner {
                switches: Mutex::new(Switches::default()),
                streams: watch::channel(StreamControl::default()).0,
            }),
        }
    }
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut Switches) -> R) -> R {
        f(&mut self
            .inner
            .switches
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The next `count` requests answer `status`.
    pub fn fail_next(&self, status: u16, count: usize) {
        self.with(|s| s.fail_next = (count > 0).then_some((status, count)));
    }

    /// The next `count` requests with this method whose path (query included, so
    /// `/api/v1/executions?` is the list alone) starts with `path_prefix` answer `status`.
    pub fn fail_next_on(&self, method: &str, path_prefix: &str, status: u16, count: usize) {
        self.with(|s| {
            s.targeted.push(Targeted {
                method: method.to_ascii_uppercase(),
                path_prefix: path_prefix.to_string(),
                status,
                remaining: count,
            })
        });
    }

    /// That fraction (0.0..=1.0) of requests answer `status`.
    pub fn fail_ratio(&self, status: u16, ratio: f64) {
        self.with(|s| s.fail_ratio = (ratio > 0.0).then_some((status, ratio.min(1.0))));
    }

    /// The next `count` requests get their connection closed without a response.
    pub fn drop_next(&self, count: usize) {
        self.with(|s| s.drop_next = count);
    }

    /// That fraction (0.0..=1.0) of requests get their connection closed without a response.
    pub fn drop_ratio(&self, ratio: f64) {
        self.with(|s| s.drop_ratio = ratio.clamp(0.0, 1.0));
    }

    /// That fraction (0.0..=1.0) of requests are served but their answer is lost (the
    /// connection closes instead), as when a network drops a response.
    pub fn lose_answer_ratio(&self, ratio: f64) {
        self.with(|s| s.lose_answer_ratio = ratio.clamp(0.0, 1.0));
    }

    /// Delay every response by this much.
    pub fn delay(&self, by: Duration) {
        self.with(|s| s.delay = by);
    }

    /// Abruptly end every open SSE response.
    pub fn cut_streams(&self) {
        self.inner.streams.send_modify(|c| c.cut += 1);
    }

    /// While on, SSE responses stay open but send nothing (no heartbeat either).
    pub fn silence_streams(&self, on: bool) {
        self.inner.streams.send_modify(|c| c.silenced = on);
    }

    /// Turn every switch off.
    pub fn clear(&self) {
        self.with(|s| *s = Switches::default());
        self.inner.streams.send_modify(|c| c.silenced = false);
    }

    pub(crate) fn stream_control(&self) -> watch::Receiver<StreamControl> {
        self.inner.streams.subscribe()
    }

    /// Decide what happens to one request (consumes counted switches).
    pub(crate) fn decide(&self, method: &str, path: &str) -> (Duration, Verdict) {
        self.with(|s| {
            let delay = s.delay;
            if s.drop_next > 0 {
                s.drop_next -= 1;
                return (delay, Verdict::Drop);
            }
            if let Some(t) = s
                .targeted
                .iter_mut()
                .find(|t| t.remaining > 0 && t.method == method && path.starts_with(&t.path_prefix))
            {
                t.remaining -= 1;
                let status = t.status;
                s.targeted.retain(|t| t.remaining > 0);
                return (delay, Verdict::Fail(status));
            }
            if let Some((status, count)) = s.fail_next {
                s.fail_next = (count > 1).then_some((status, count - 1));
                return (delay, Verdict::Fail(status));
            }
            if s.drop_ratio > 0.0 && fastrand::f64() < s.drop_ratio {
                return (delay, Verdict::Drop);
            }
            if let Some((status, ratio)) = s.fail_ratio
                && fastrand::f64() < ratio
            {
                return (delay, Verdict::Fail(status));
            }
            if s.lose_answer_ratio > 0.0 && fastrand::f64() < s.lose_answer_ratio {
                return (delay, Verdict::LoseAnswer);
            }
            (delay, Verdict::Pass)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_switches_run_out() {
        let f = Faults::default();
        f.fail_next(503, 2);
        f.fail_next_on("post", "/api/v1/executions", 500, 1);
        assert_eq!(f.decide("POST", "/api/v1/executions").1, Verdict::Fail(500));
        assert_eq!(f.decide("POST", "/api/v1/executions").1, Verdict::Fail(503));
        assert_eq!(f.decide("GET", "/api/v1/actions").1, Verdict::Fail(503));
        assert_eq!(f.decide("GET", "/api/v1/actions").1, Verdict::Pass);
        f.drop_next(1);
        assert_eq!(f.decide("GET", "/x").1, Verdict::Drop);
        f.fail_ratio(429, 1.0);
        assert_eq!(f.decide("GET", "/x").1, Verdict::Fail(429));
        f.delay(Duration::from_millis(5));
        f.clear();
        assert_eq!(f.decide("GET", "/x"), (Duration::ZERO, Verdict::Pass));
    }
}
