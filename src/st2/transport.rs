//! The HTTP stack every st2 call goes through, built once from tower layers:
//! retry (outermost, so each attempt gets its own deadline and permit) → concurrency
//! limit → per-attempt timeout → reqwest.

use std::time::Duration;

use reqwest::{Request, Response, StatusCode};
use tower::retry::Policy;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};

use crate::config::RetryConfig;

/// The composed stack, cheap to clone; clones share the concurrency limit.
pub type Transport = BoxCloneSyncService<Request, Response, BoxError>;

/// Builds the stack around `client`.
pub fn build(
    client: reqwest::Client,
    timeout: Duration,
    max_concurrency: usize,
    retry: &RetryConfig,
) -> Transport {
    let service = ServiceBuilder::new()
        .retry(RetryPolicy::new(retry))
        .concurrency_limit(max_concurrency)
        .timeout(timeout)
        .service(client);
    BoxCloneSyncService::new(service)
}

/// Retries calls that cannot create a second effect (not POST/PATCH) after transport
/// failures, timeouts, 429, 502, 503 and 504, with capped, jittered exponential backoff.
/// A `Retry-After` from st2 replaces the computed backoff, capped at the ceiling.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    remaining: u32,
    attempt: u32,
    initial: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// A fresh policy (one is cloned per request by tower).
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            remaining: config.max_retries,
            attempt: 0,
            initial: Duration::from_millis(config.initial_backoff_ms),
            max: Duration::from_millis(config.max_backoff_ms),
        }
    }

    /// Backoff before the next attempt: initial × 2^attempt, capped, then 50–100 % jitter.
    fn backoff(&self) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.max);
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Whether the outcome of one attempt is worth another.
fn retryable(result: &Result<Response, BoxError>) -> Option<Option<Duration>> {
    match result {
        Ok(resp) => match resp.status() {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Some(retry_after(resp)),
            _ => None,
        },
        Err(err) => {
            let transport = err.is::<tower::timeout::error::Elapsed>()
                || err
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request());
            transport.then_some(None)
        }
    }
}

/// `Retry-After` in seconds (st2 and proxies send seconds, not dates).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Policy<Request, Response, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request,
        result: &mut Result<Response, BoxError>,
    ) -> Option<Self::Future> {
        if self.remaining == 0
            || matches!(
                *req.method(),
                reqwest::Method::POST | reqwest::Method::PATCH
            )
        {
            return None;
        }
        let hinted = retryable(result)?;
        let wait = hinted.map_or_else(|| self.backoff(), |d| d.min(self.max));
        self.remaining -= 1;
        self.attempt += 1;
        tracing::debug!(method = %req.method(), path = req.url().path(), wait_ms = wait.as_millis() as u64, "retrying st2 call");
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        req.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half() {
        let mut p = RetryPolicy::new(&RetryConfig {
            max_retries: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        });
        for (attempt, ceiling) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1_000),
            (9, 1_000),
        ] {
            p.attempt = attempt;
            for _ in 0..50 {
                let b = p.backoff().as_millis() as u64;
                assert!(
                    b >= ceiling / 2 && b <= ceiling,
                    "attempt {attempt}: {b} ms outside {}..={ceiling}",
                    ceiling / 2
                );
            }
        }
    }
}
