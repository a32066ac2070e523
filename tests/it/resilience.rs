//! The resilience layers on the adapter's router, against a real loopback adapter in front of
//! the st2 emulator: the request deadline (streams exempt), the cap on open streams, the trace
//! span continuing the caller's `traceparent`; and the config shape they and the retried
//! components share (`backoff: {initial, max}`, renamed fields refused by name).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use portarium_st2::config::Config;
use portarium_st2::server::Limits;
use serde_json::{Value, json};

use crate::support::stack::Stack;

const TOKEN: &str = "tenant-token";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// An adapter serving under `limits` in front of a fresh emulator; no st2 retries, so a slow st2
/// is not hidden behind them.
async fn stack(limits: Limits) -> Stack {
    Stack::builder()
        .st2("retry: {max_retries: 0}")
        .tenant("t1", TOKEN)
        .limits(limits)
        .start()
        .await
}

fn limits(request_timeout: Duration, max_streams: usize) -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        request_timeout: Some(request_timeout),
        max_streams,
        ..Limits::from(1 << 20)
    }
}

impl Stack {
    /// Dispatches `cmd` on `core.local`, waiting at most `wait_ms` for st2.
    async fn dispatch_cmd(&self, cmd: &str, wait_ms: u64) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/v1/dispatch?waitMs={wait_ms}"),
            TOKEN,
        )
        .json(&json!({
            "actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
            "flowRef": "core.local", "payload": {"cmd": cmd}
        }))
        .send()
        .await
        .unwrap()
    }

    /// The id of the newest st2 execution, read from the emulator itself.
    async fn newest_execution(&self) -> String {
        let list = self.st2_get("executions?limit=1").await;
        list[0]["id"].as_str().unwrap().to_string()
    }

    async fn output(&self, id: &str) -> reqwest::Response {
        self.request(
            reqwest::Method::GET,
            &format!("/v1/executions/{id}/output"),
            TOKEN,
        )
        .send()
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504_while_a_stream_outlives_it() {
    let s = stack(limits(Duration::from_millis(300), 4)).await;
    let started = Instant::now();
    let resp = s.dispatch_cmd("sleep 2", 10_000).await;
    assert_eq!(resp.status().as_u16(), 504);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("server.request_timeout"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "cut at the deadline"
    );

    // The execution keeps running; following its output takes longer than the deadline.
    let id = s.newest_execution().await;
    let streamed = Instant::now();
    let resp = s.output(&id).await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(streamed.elapsed() > Duration::from_millis(300), "{text}");
    assert!(
        text.contains("event: end"),
        "the stream ran to its end: {text}"
    );
}

#[tokio::test]
async fn streams_over_max_streams_get_503_with_retry_after_until_one_ends() {
    let s = stack(limits(Duration::from_secs(60), 1)).await;
    assert_eq!(s.dispatch_cmd("sleep 1", 50).await.status().as_u16(), 504);
    let id = s.newest_execution().await;
    let first = s.output(&id).await;
    assert_eq!(first.status().as_u16(), 200);

    let busy = s.output(&id).await;
    assert_eq!(busy.status().as_u16(), 503);
    assert_eq!(busy.headers()["retry-after"], "5");
    let body: Value = busy.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("server.max_streams = 1"),
        "{body}"
    );

    // The slot is held until the first stream's body ends, then freed.
    first.text().await.unwrap();
    assert_eq!(s.output(&id).await.status().as_u16(), 200);
}

/// Keeps every finished span.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Captured {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

// One thread, so the subscriber set for this test also sees the server task's spans.
#[tokio::test(flavor = "current_thread")]
async fn the_request_span_continues_the_callers_traceparent() {
    use tracing_subscriber::prelude::*;
    let captured = Captured::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(captured.clone())
        .build();
    let _guard = crate::support::scoped_subscriber(
        tracing_subscriber::registry().with(portarium_st2::telemetry::spans::layer(&provider)),
    );
    let s = stack(Limits::from(65_536)).await;
    let resp = s
        .http
        .get(format!("{}/healthz", s.base))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let span = loop {
        let found = captured
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|d| d.name == "http.request")
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(Instant::now() < deadline, "no request span was exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT_ID).unwrap());
}

const MINIMAL: &str = "st2: {base_url: 'http://127.0.0.1:9101', api_key: k}\n";

fn load(extra: &str) -> Result<Config, String> {
    Config::from_yaml(&format!("{MINIMAL}{extra}"), "test", std::iter::empty())
        .map_err(|e| e.to_string())
}

#[test]
fn every_backoff_is_one_shape_and_the_old_fields_are_refused_by_name() {
    let err = load(
        "telemetry: {otlp: {initial_backoff_ms: 5}}\n\
         events:\n  http: {url: 'http://h/e', delivery: {max_backoff_ms: 9}}\n\
         \x20 nats: {url: 'nats://h', delivery: {initial_backoff_ms: 1}}\n\
         \x20 inbound: {nats: {url: 'nats://h', max_backoff_ms: 9}}\n",
    )
    .unwrap_err();
    for want in [
        "telemetry.otlp.initial_backoff_ms: this field was renamed; write telemetry.otlp.backoff.initial",
        "events.http.delivery.max_backoff_ms: this field was renamed; write events.http.delivery.backoff.max",
        "events.nats.delivery.initial_backoff_ms: this field was renamed; write events.nats.delivery.backoff.initial",
        "events.inbound.nats.max_backoff_ms: this field was renamed; write events.inbound.nats.backoff.max",
    ] {
        assert!(err.contains(want), "{want} missing: {err}");
    }

    let c = load(
        "telemetry: {otlp: {backoff: {initial: 1s, max: 1m}}}\n\
         events:\n  http: {url: 'http://h/e', delivery: {backoff: {initial: 50ms, max: 5s}, give_up_after_ms: 90000}}\n",
    )
    .unwrap();
    assert_eq!(c.telemetry.otlp.backoff.max, Duration::from_secs(60));
    let delivery = &c.events.http.unwrap().delivery;
    assert_eq!(delivery.backoff.initial, Duration::from_millis(50));
    assert_eq!(
        delivery.give_up_after,
        Duration::from_secs(90),
        "the *_ms name still reads milliseconds"
    );

    let err =
        load("events: {inbound: {nats: {url: 'nats://h', backoff: {initial: 2s, max: 1s}}}}\n")
            .unwrap_err();
    assert!(err.contains("events.inbound.nats.backoff.initial"), "{err}");
}

#[test]
fn the_request_deadline_must_outlast_the_longest_dispatch_wait() {
    let c = load("").unwrap();
    assert_eq!(c.server.max_streams, 256);
    assert_eq!(
        Limits::new(&c.server, 1).request_timeout(Duration::from_secs(300)),
        Duration::from_secs(330)
    );
    let err =
        load("dispatch: {max_wait_ms: 60000}\nserver: {request_timeout: 60s, max_streams: 0}\n")
            .unwrap_err();
    for want in [
        "server.request_timeout: 1m must be longer than dispatch.max_wait_ms (60000 ms)",
        "server.max_streams: must be at least 1",
    ] {
        assert!(err.contains(want), "{want} missing: {err}");
    }
    assert!(load("dispatch: {max_wait_ms: 60000}\nserver: {request_timeout: 61s}\n").is_ok());
}
