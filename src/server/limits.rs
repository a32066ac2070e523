//! What every incoming request passes through, as layers on the router rather than in each
//! handler: a span continuing the caller's W3C trace, a deadline for answers, and a cap on the
//! streaming responses open at once (`server.request_timeout`, `server.max_streams`). The
//! limits on connections themselves sit below the router, in `super::conn`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use st2_basics::FieldError;
use tokio::sync::Semaphore;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;

use super::answer::{Contract, Failure};
use super::tls::ListenerConfig;
use crate::core::DispatchError;
use crate::core::portarium::{ErrorKind, Hint};

/// How long a caller over `server.max_streams` is asked to wait before trying again.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Margin of the default request deadline over the longest dispatch wait, so a dispatch that
/// waits the full `dispatch.max_wait_ms` still answers `Timeout` itself.
const WAIT_MARGIN: Duration = Duration::from_secs(30);

/// Default of `server.max_streams`.
pub(crate) fn default_max_streams() -> usize {
    256
}

/// What the router enforces on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Deadline of a non-streaming request; `None` derives it from `dispatch.max_wait_ms`.
    pub request_timeout: Option<Duration>,
    /// Streaming responses open at once.
    pub max_streams: usize,
    /// Where `statusUrl` points.
    pub origin: super::origin::OriginPolicy,
}

impl Limits {
    /// The limits `server` and `dispatch.max_body_bytes` configure.
    pub fn new(server: &ListenerConfig, max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            request_timeout: server.request_timeout,
            max_streams: server.max_streams,
            origin: super::origin::OriginPolicy::new(server),
        }
    }

    /// The deadline of a non-streaming request, given the longest dispatch wait.
    pub fn request_timeout(&self, max_wait: Duration) -> Duration {
        self.request_timeout.unwrap_or(max_wait + WAIT_MARGIN)
    }
}

/// A body limit alone, the other limits at their defaults.
impl From<usize> for Limits {
    fn from(max_body_bytes: usize) -> Self {
        Self::new(&ListenerConfig::default(), max_body_bytes)
    }
}

impl ListenerConfig {
    /// Adds a [`FieldError`] per broken rule of the request limits; a deadline must outlast
    /// the longest dispatch wait, or a patient dispatch would be cut off without its answer.
    pub fn validate_limits(&self, max_wait: Duration, errors: &mut Vec<FieldError>) {
        if let Some(timeout) = self.request_timeout
            && timeout <= max_wait
        {
            errors.push(FieldError::new(
                "server.request_timeout",
                format!(
                    "{} must be longer than dispatch.max_wait_ms ({} ms)",
                    st2_basics::duration::format(timeout),
                    max_wait.as_millis()
                ),
            ));
        }
        if self.max_streams == 0 {
            errors.push(FieldError::new("server.max_streams", "must be at least 1"));
        }
        if self.max_connections <= self.max_streams {
            errors.push(FieldError::new(
                "server.max_connections",
                format!(
                    "{} must exceed server.max_streams ({}): open streams hold connections, and dispatches need room beside them",
                    self.max_connections, self.max_streams
                ),
            ));
        }
        for (field, value) in [
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
        ] {
            if value < Duration::from_millis(100) {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "{} is below 100ms; a client needs time to send a request",
                        st2_basics::duration::format(value)
                    ),
                ));
            }
        }
        super::origin::validate(self.public_base_url.as_ref(), errors);
    }
}

/// The trace layer: one span per request, a child of the caller's `traceparent` when it sends
/// a valid one, so the adapter's spans join Portarium's trace.
pub fn trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, impl Fn(&Request) -> tracing::Span + Clone>
{
    TraceLayer::new_for_http().make_span_with(|request: &Request| {
        // `tenant.id` is filled in by a dispatch (the span exporter drops spans without one).
        let span = tracing::info_span!(
            "http.request",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            tenant.id = tracing::field::Empty,
        );
        if let Some(trace) = super::dispatch::trace_context(request.headers()) {
            crate::telemetry::own::continue_trace(&span, &trace);
        }
        span
    })
}

/// The answer to a request that outlived its deadline, in `contract`'s shape.
pub(crate) fn timed_out(contract: Contract) -> Response {
    refuse(
        contract,
        StatusCode::GATEWAY_TIMEOUT,
        "the request was not answered within server.request_timeout; retry it (a dispatch re-attaches to its execution)".into(),
    )
}

/// A refusal the router makes itself, in `contract`'s shape, with the error kind of `status`.
fn refuse(contract: Contract, status: StatusCode, message: String) -> Response {
    refuse_with(contract, status, message, Hint::default())
}

/// The same, with what the answer says beyond the kind (its `Retry-After`).
fn refuse_with(contract: Contract, status: StatusCode, message: String, hint: Hint) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
        StatusCode::NOT_FOUND => ErrorKind::FlowNotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
        _ => ErrorKind::RemoteError,
    };
    let error = DispatchError {
        hint,
        ..DispatchError::refused(kind, message)
    };
    contract.refuse(Failure { status, error }, None)
}

/// Largest plain-text error body read to be re-answered as JSON; axum's are one line.
const PLAIN_ERROR_MAX: usize = 16 * 1024;

/// Re-answers an error that left the route as plain text or with no body (an extractor's
/// rejection of a path or query, a 405) in the route's JSON shape, keeping its status and words.
pub(crate) async fn json_errors(
    State(contract): State<Contract>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), PLAIN_ERROR_MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    refuse(contract, status, message)
}

/// The answer to a path no route serves, in the native JSON shape.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    refuse(
        Contract::Native,
        StatusCode::NOT_FOUND,
        format!("no route {method} {}; see /openapi.json", uri.path()),
    )
}

/// The answer to a method a route does not take, in the native JSON shape.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    refuse(
        Contract::Native,
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}; see /openapi.json", uri.path()),
    )
}

/// Open streaming responses, shared by every streaming route; each route refuses in its own
/// contract's shape.
#[derive(Clone, Debug)]
pub(crate) struct Streams {
    slots: Arc<Semaphore>,
    max: usize,
    contract: Contract,
}

impl Streams {
    /// Room for `max` streams at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            contract: Contract::Native,
        }
    }

    /// The same slots, refused in `contract`'s shape.
    pub(crate) fn answering(&self, contract: Contract) -> Self {
        Self {
            contract,
            ..self.clone()
        }
    }
}

/// Admits a streaming request if a slot is free, else answers 503 with `Retry-After`. tower's
/// concurrency limit does not fit: it queues rather than refuses, and frees its slot when the
/// headers are sent, while a stream holds its slot until its body ends.
pub(crate) async fn limit_streams(
    State(streams): State<Streams>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(slot) = streams.slots.clone().try_acquire_owned() else {
        return refuse_with(
            streams.contract,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many open streams (server.max_streams = {}); retry after {} s",
                streams.max,
                STREAM_RETRY_AFTER.as_secs()
            ),
            Hint {
                retry_after: Some(STREAM_RETRY_AFTER),
                ..Hint::default()
            },
        );
    };
    next.run(request).await.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}
