//! The HTTP stack every st2 call goes through, built once from tower layers, outermost first:
//! retry → concurrency limit → per-attempt timeout → body buffering → reqwest.
//!
//! Reading the body inside the timeout gives one deadline for the whole answer, and a
//! connection that breaks mid-body is retried like one that broke before the headers. Retrying
//! outside the limit means an attempt waiting out its backoff holds no concurrency slot.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Request, StatusCode};
use tower::retry::Policy;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::config::RetryConfig;
use crate::error::repeatable;
use st2_basics::Retry;
pub(crate) use st2_basics::retry_after;

/// A whole answer from st2.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Attempts it took, retries included.
    pub attempts: u32,
}

impl Reply {
    /// `Retry-After` as a duration (see [`retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

/// The failure of a call that was attempted more than once.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub(crate) struct Exhausted {
    pub attempts: u32,
    pub source: BoxError,
}

/// The composed stack, cheap to clone; clones share the concurrency limit.
pub(crate) type Transport = BoxCloneSyncService<Request, Reply, BoxError>;

/// Builds the stack around `client`.
pub(crate) fn build(
    client: reqwest::Client,
    timeout: Duration,
    max_concurrency: usize,
    retry: &RetryConfig,
) -> Transport {
    let service = ServiceBuilder::new()
        .retry(RetryPolicy::new(retry))
        .concurrency_limit(max_concurrency)
        .timeout(timeout)
        .service(client.and_then(read_whole));
    BoxCloneSyncService::new(service)
}

async fn read_whole(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Reply {
        status,
        headers,
        body,
        attempts: 1,
    })
}

/// rustls's reason when the TLS handshake with st2 failed (most often: its certificate is
/// not signed by a trusted CA), found among the error's sources.
pub(crate) fn tls_refusal<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // hyper's connector wraps rustls's error in io::Errors, whose `source` skips the
        // wrapped error itself; descend through `get_ref` instead.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Whether an outcome is worth another attempt: its reason, and st2's `Retry-After` if any.
fn retryable(result: &Result<Reply, BoxError>) -> Option<(&'static str, Option<Duration>)> {
    match result {
        Ok(reply) => {
            let reason = match reply.status {
                StatusCode::TOO_MANY_REQUESTS => "429",
                StatusCode::BAD_GATEWAY => "502",
                StatusCode::SERVICE_UNAVAILABLE => "503",
                StatusCode::GATEWAY_TIMEOUT => "504",
                _ => return None,
            };
            Some((reason, reply.retry_after()))
        }
        // A refused certificate stays refused; retrying only delays the answer.
        Err(err) if tls_refusal(err.as_ref()).is_some() => None,
        Err(err) => {
            let reason = if err.is::<tower::timeout::error::Elapsed>() {
                "timeout"
            } else {
                let e = err.downcast_ref::<reqwest::Error>()?;
                if e.is_connect() {
                    "connect"
                } else if e.is_timeout() || e.is_request() || e.is_body() {
                    "connection lost"
                } else {
                    return None;
                }
            };
            Some((reason, None))
        }
    }
}

/// Retries repeatable calls after connection failures, timeouts, 429, 502, 503 and 504; the
/// timing and budget are the shared [`st2_basics::Retry`] decision (a `Retry-After` longer
/// than the backoff ceiling ends the retries, so the caller sees st2's wait).
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    retry: Retry,
}

impl RetryPolicy {
    /// A fresh policy (tower clones it for each request, so each call has its own budget).
    pub fn new(config: &RetryConfig) -> Self {
        let policy = st2_basics::RetryPolicy::new(config.backoff.clone())
            .max_attempts(config.max_retries.saturating_add(1));
        Self {
            retry: policy.start(),
        }
    }

    /// Why and how long to wait before another attempt, or `None` to stop.
    fn next_wait(&mut self, result: &Result<Reply, BoxError>) -> Option<(&'static str, Duration)> {
        let (reason, asked) = retryable(result)?;
        let wait = self.retry.after_failure(asked).ok()?;
        Some((reason, wait))
    }

    /// Records how many attempts the final outcome took.
    fn stamp(&self, result: &mut Result<Reply, BoxError>) {
        let attempts = self.retry.attempts();
        match result {
            Ok(reply) => reply.attempts = attempts,
            Err(err) if attempts > 1 => {
                let source = std::mem::replace(err, BoxError::from(""));
                *err = Box::new(Exhausted { attempts, source });
            }
            Err(_) => {}
        }
    }
}

impl Policy<Request, Reply, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request,
        result: &mut Result<Reply, BoxError>,
    ) -> Option<Self::Future> {
        let Some((reason, wait)) = self.next_wait(result) else {
            self.stamp(result);
            return None;
        };
        tracing::debug!(
            method = %req.method(),
            path = req.url().path(),
            reason,
            attempt = self.retry.attempts(),
            wait_ms = wait.as_millis() as u64,
            "retrying st2 call"
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        // No clone, no retry: tower then hands back the first outcome as it is.
        if repeatable(req.method(), req.url().path()) {
            req.try_clone()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::Method;
    use reqwest::header::RETRY_AFTER;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc2822;

    use super::*;

    fn policy(max_retries: u32, initial_backoff_ms: u64, max_backoff_ms: u64) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            max_retries,
            backoff: st2_basics::BackoffConfig::new(
                Duration::from_millis(initial_backoff_ms),
                Duration::from_millis(max_backoff_ms),
            ),
        })
    }

    fn reply(status: u16, retry_after: Option<&str>) -> Result<Reply, BoxError> {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, v.parse().unwrap());
        }
        Ok(Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
            attempts: 1,
        })
    }

    #[test]
    fn max_retries_bounds_the_attempts_and_the_backoff_is_the_shared_one() {
        let mut p = policy(3, 100, 1_000);
        for ceiling in [100, 200, 400] {
            let (_, wait) = p.next_wait(&reply(503, None)).unwrap();
            let ms = wait.as_millis() as u64;
            assert!((ceiling / 2..=ceiling).contains(&ms), "{ms} for {ceiling}");
        }
        assert_eq!(p.next_wait(&reply(503, None)), None, "budget spent");
        let mut stamped = reply(503, None);
        p.stamp(&mut stamped);
        assert_eq!(stamped.unwrap().attempts, 4);
    }

    #[test]
    fn only_overload_and_gateway_statuses_are_retried() {
        for status in [429, 502, 503, 504] {
            assert!(
                policy(3, 10, 100).next_wait(&reply(status, None)).is_some(),
                "{status}"
            );
        }
        for status in [200, 400, 401, 404, 409, 500, 501] {
            assert!(
                policy(3, 10, 100).next_wait(&reply(status, None)).is_none(),
                "{status}"
            );
        }
        assert!(
            policy(0, 10, 100).next_wait(&reply(503, None)).is_none(),
            "no budget"
        );
    }

    #[test]
    fn retry_after_replaces_the_backoff_up_to_the_ceiling() {
        let p = || policy(3, 10, 2_000);
        assert_eq!(
            p().next_wait(&reply(429, Some("1"))),
            Some(("429", Duration::from_secs(1)))
        );
        assert_eq!(
            p().next_wait(&reply(429, Some("3"))),
            None,
            "longer than the ceiling"
        );
        let soon = (OffsetDateTime::now_utc() + time::Duration::seconds(1))
            .format(&Rfc2822)
            .unwrap();
        let (_, wait) = p().next_wait(&reply(503, Some(&soon))).unwrap();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // HTTP dates name the zone GMT rather than an offset.
        let http_date = soon.replace("+0000", "GMT");
        let (_, wait) = p().next_wait(&reply(503, Some(&http_date))).unwrap();
        assert!(wait <= Duration::from_secs(1), "{http_date}: {wait:?}");
        assert!(
            reply(503, Some(&http_date))
                .unwrap()
                .retry_after()
                .is_some()
        );
        assert!(reply(503, Some("soon")).unwrap().retry_after().is_none());
    }

    #[test]
    fn only_post_and_patch_are_never_repeated_but_token_requests_are() {
        for m in [Method::GET, Method::PUT, Method::DELETE] {
            assert!(repeatable(&m, "/api/v1/executions/1"), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!repeatable(&m, "/api/v1/executions"), "{m}");
        }
        assert!(repeatable(&Method::POST, "/auth/v1/tokens"));
        assert!(repeatable(&Method::POST, "/tokens"));
    }
}
