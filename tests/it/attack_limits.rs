//! The adversarial cases of issue 17 that concern limits, reproduced against the whole adapter
//! on 127.0.0.1: half-open connections, the connection cap, authentication before any body,
//! ids that are the caller's error, and duplicates that must be refused rather than merged.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::stack::Stack;

const TOKEN: &str = "attack-token";

fn dispatch_body(action_id: &str, flow_ref: &str) -> Value {
    json!({
        "actionId": action_id, "tenantId": "t1", "runId": "r1", "correlationId": "c1",
        "flowRef": flow_ref, "payload": {"message": "hi"}
    })
}

/// An adapter for tenant `t1` with one inbound event class, plus `yaml`.
async fn stack(yaml: &str) -> Stack {
    Stack::builder()
        .tenant("t1", TOKEN)
        .yaml(&format!(
            "events:\n  inbound:\n    classes:\n      - {{type: com.portarium.run.RunStarted, trigger: portarium.event}}\n{yaml}"
        ))
        .start()
        .await
}

fn event(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "portarium.control-plane",
           "type": "com.portarium.run.RunStarted", "data": data,
           "tenantid": "t1", "correlationid": "corr-1"})
}

fn addr(s: &Stack) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// 300 connections that each send half a request head and then nothing, held (and reopened
/// whenever the adapter closes them) for 30 s: meanwhile `/healthz` and dispatches answer
/// within 1 s each, and the adapter does close the half-open connections (its header-read
/// timeout, 10 s by default). Before issue 17 they held the adapter until it ran out of file
/// descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_leave_dispatches_and_healthz_answering() {
    const ATTACKERS: usize = 300;
    const HOLD: Duration = Duration::from_secs(30);
    let s = stack("").await;
    let target = addr(&s);
    let until = Instant::now() + HOLD;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let (target, closed) = (target.clone(), closed.clone());
        attackers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(mut conn) = TcpStream::connect(&target).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = conn
                    .write_all(b"POST /v1/dispatch HTTP/1.1\r\nHost: x\r\nContent-")
                    .await;
                let mut sink = [0u8; 1024];
                let left = until.saturating_duration_since(Instant::now());
                // Held until the adapter closes it (EOF or reset) or the attack ends.
                if let Ok(Ok(_)) = tokio::time::timeout(left, conn.read(&mut sink)).await {
                    closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let health = http.get(format!("{}/healthz", s.base)).send().await;
        assert_eq!(health.expect("healthz answers").status().as_u16(), 200);
        let health_took = started.elapsed();
        let started = Instant::now();
        let (status, answer) = s
            .dispatch(
                Some(TOKEN),
                &dispatch_body(&format!("probe-{probes}"), "core.echo"),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        slowest = slowest.max(health_took).max(started.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for a in attackers {
        a.await.unwrap();
    }
    let closed = closed.load(Ordering::Relaxed);
    eprintln!("{probes} probes, slowest {slowest:?}; {closed} half-open connections closed");
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest of {probes} probes took {slowest:?}"
    );
    assert!(
        closed >= ATTACKERS,
        "the adapter closed only {closed} half-open connections in 30 s"
    );
}

/// Captured log output, for a test running on one thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// At `server.max_connections` the next connection waits in the listen backlog, and the
/// adapter says so once; when the header-read timeout closes the idle ones, it is served.
// One thread, so the subscriber set for this test also sees the server's tasks.
#[tokio::test(flavor = "current_thread")]
async fn the_connection_cap_holds_new_connections_back_and_says_so() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = crate::support::scoped_subscriber(subscriber);
    let s = stack("server: {max_streams: 1, max_connections: 3, header_read_timeout: 2s}\n").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr(&s)).await.unwrap());
    }
    let started = Instant::now();
    let health = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_000),
        "answered after {waited:?}: the cap did not hold it back"
    );
    assert!(
        waited < Duration::from_secs(5),
        "waited {waited:?}: the idle connections were not closed at the header timeout"
    );
    let text = logs.text();
    assert_eq!(
        text.matches("connection cap reached (server.max_connections = 3)")
            .count(),
        1,
        "{text}"
    );
    for mut conn in idle {
        let mut buf = [0u8; 16];
        assert_eq!(
            conn.read(&mut buf).await.unwrap_or(0),
            0,
            "closed by the adapter"
        );
    }
}

/// The TLS listener holds to the same limits: a peer that connects and never starts the
/// handshake is closed at `server.header_read_timeout`, not left holding a connection.
#[tokio::test]
async fn the_tls_listener_closes_a_silent_peer_at_the_header_timeout() {
    use crate::support::tls_file;
    let s = stack(&format!(
        "server: {{header_read_timeout: 1s, tls: {{cert_file: '{}', key_file: '{}'}}}}\n",
        tls_file("server.pem").display(),
        tls_file("server.key").display()
    ))
    .await;
    let mut conn = TcpStream::connect(s.base.trim_start_matches("https://"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open after 5 s: {read:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

/// Every route a tenant calls, as (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/dispatch"),
    ("POST", "/api/v1/flows/core.echo/run"),
    ("POST", "/api/v1/flows/machine-1/core.echo/run"),
    ("GET", "/v1/executions/e1"),
    ("POST", "/v1/executions/e1/cancel"),
    ("POST", "/v1/executions/e1/pause"),
    ("POST", "/v1/executions/e1/resume"),
    ("POST", "/v1/executions/e1/rerun"),
    ("GET", "/v1/executions/e1/output"),
    ("POST", "/tools/invoke"),
    ("POST", "/v1/invoke"),
    ("GET", "/v1/invoke/i1/status"),
    ("GET", "/v1/invoke/i1/stream"),
    ("POST", "/v1/events"),
];

/// A request announcing a 100 MB body with a wrong token, and sending 1 kB of it: every route
/// answers 401 at once. Had it waited for the body, the answer would never come.
#[tokio::test]
async fn every_route_refuses_a_bad_token_before_reading_the_body() {
    let s = stack("").await;
    let before = s.st2_requests();
    for (method, path) in ROUTES {
        let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\
             Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&[b' '; 1024]).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(3), async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "{method} {path}: closed without an answer");
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(read.is_ok(), "{method} {path}: no answer within 3 s");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{method} {path}: {answer}"
        );
    }
    assert_eq!(s.st2_requests(), before, "nothing reached st2");
}

/// Two `Authorization` headers are refused 400 on every kind of route, whichever comes first.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let s = stack("").await;
    let before = s.st2_requests();
    for (method, path) in [
        ("POST", "/v1/dispatch"),
        ("POST", "/tools/invoke"),
        ("POST", "/v1/invoke"),
        ("POST", "/v1/events"),
    ] {
        for (first, second) in [(TOKEN, "other"), ("other", TOKEN)] {
            let answer = s
                .http
                .request(method.parse().unwrap(), format!("{}{path}", s.base))
                .header("authorization", format!("Bearer {first}"))
                .header("authorization", format!("Bearer {second}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 400, "{method} {path}");
            let body: Value = answer.json().await.unwrap();
            assert!(
                body.to_string()
                    .contains("more than one Authorization header"),
                "{path}: {body}"
            );
        }
    }
    assert_eq!(s.st2_requests(), before, "nothing reached st2");
}

/// Ids the caller got wrong are the caller's error, answered before st2 is called: an event id
/// with a newline or NUL or over 256 bytes (400), an idempotency key of 21 kB or with a
/// newline, a tracestate over 512 bytes (422). Before issue 17 they were answered 502.
#[tokio::test]
async fn ids_out_of_their_limits_are_client_errors_before_st2() {
    let s = stack("").await;
    for id in ["e\n1", "e\u{0}1", &"e".repeat(257), &"e".repeat(60_000)] {
        let (status, answer) = s
            .post(Some(TOKEN), "/v1/events", &event(id, json!({})))
            .await;
        assert_eq!(status, 400, "{id:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("attribute id:"),
            "{answer}"
        );
    }
    let (status, _) = s
        .post(
            Some(TOKEN),
            "/v1/events",
            &event(&"e".repeat(256), json!({})),
        )
        .await;
    assert_eq!(status, 202, "256 bytes is within the limit");
    let fired_before = s.st2_requests();

    for key in [
        "k".repeat(21_000),
        "k\n1".to_string(),
        "k\u{0}1".to_string(),
    ] {
        let mut body = dispatch_body("a1", "core.echo");
        body["idempotencyKey"] = json!(key);
        let (status, answer) = s.dispatch(Some(TOKEN), &body).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("idempotencyKey"),
            "{answer}"
        );
    }
    let answer = s
        .request(reqwest::Method::POST, "/v1/dispatch", TOKEN)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("tracestate", format!("v={}", "x".repeat(600)))
        .json(&dispatch_body("a2", "core.echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    let answer = s
        .request(reqwest::Method::POST, "/v1/dispatch", TOKEN)
        .header("idempotency-key", "k".repeat(600))
        .json(&dispatch_body("a3", "core.echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        422,
        "the header is held to the same limit"
    );
    assert_eq!(
        s.st2_requests(),
        fired_before,
        "no st2 call for any of them"
    );
    assert_eq!(s.creates(), 0);
}

/// A disabled action is the caller's problem on a dry run as on a real run: 422 naming it.
/// Before issue 17 the dry run answered valid and the run 502.
#[tokio::test]
async fn a_disabled_action_is_refused_by_dry_run_and_run_alike() {
    let s = stack("").await;
    let dry = json!({
        "toolName": "examples.disabled", "parameters": {}, "dryRun": true,
        "metadata": {"tenantId": "t1", "runId": "r1", "actionId": "a1", "correlationId": "c1"}
    });
    let answer = s
        .send_as(reqwest::Method::POST, "/tools/invoke", TOKEN, &dry)
        .await;
    assert_eq!(answer.status().as_u16(), 422);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("is disabled"),
        "{body}"
    );
    assert_eq!(s.creates(), 0, "a dry run starts nothing");

    let (status, answer) = s
        .dispatch(Some(TOKEN), &dispatch_body("a2", "examples.disabled"))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorKind"], "RemoteError", "{answer}");
}

/// The same event again is a duplicate (200, st2 not called); the same id with other data is
/// refused 409 and fires nothing. Before issue 17 both were answered "duplicate".
#[tokio::test]
async fn a_replayed_event_id_with_other_data_conflicts() {
    let s = stack("").await;
    let first = event("ev-1", json!({"amount": 1}));
    let (status, answer) = s.post(Some(TOKEN), "/v1/events", &first).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = s.post(Some(TOKEN), "/v1/events", &first).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("duplicate"))
    );
    let (status, answer) = s
        .post(
            Some(TOKEN),
            "/v1/events",
            &event("ev-1", json!({"amount": 1000})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("different content"),
        "{answer}"
    );
    let fired = s.st2_get("triggerinstances").await;
    assert_eq!(fired.as_array().unwrap().len(), 1, "{fired}");
}

/// Over NATS, an event whose id breaks the limits is terminated: acknowledged for good and never
/// redelivered, nor fired; the next event goes through.
#[tokio::test]
async fn an_invalid_event_over_nats_is_terminated_not_redelivered() {
    let mut server = crate::support::nats::NatsServer::on_port(crate::support::free_port());
    server.start();
    let js = server.portarium_stream().await;
    let s = stack(&format!(
        "    nats: {{url: '{}', backoff: {{initial: 20ms, max: 200ms}}}}\n",
        server.url()
    ))
    .await;
    for body in [
        event("bad\nid", json!({})),
        event(&"x".repeat(300), json!({})),
        event("good-1", json!({})),
    ] {
        crate::support::nats::publish_event(&js, &body).await;
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    let fired = loop {
        let fired = s.st2_get("triggerinstances").await;
        if fired.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break fired.as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["payload"]["id"], "good-1");
    // Past several redelivery delays (backoff.max): a NAKed message would be back by now.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stream = js.get_stream("PORTARIUM_EVENTS").await.unwrap();
    let info = stream.consumer_info("portarium-st2-inbound").await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "nothing redelivered: {info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 3, "{info:?}");
    assert_eq!(
        s.st2_get("triggerinstances")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The connection limits have sane defaults, and broken ones are reported with the rest of the
/// configuration's problems, by dotted path.
#[test]
fn connection_limits_are_validated_with_the_rest_of_the_config() {
    use portarium_st2::config::Config;
    let load = |extra: &str| {
        let yaml = format!("st2: {{base_url: 'http://127.0.0.1:9', api_key: k}}\n{extra}");
        Config::from_yaml(&yaml, "test", std::iter::empty()).map_err(|e| e.to_string())
    };
    let c = load("").unwrap();
    assert_eq!(
        (
            c.server.header_read_timeout,
            c.server.idle_timeout,
            c.server.max_connections
        ),
        (Duration::from_secs(10), Duration::from_secs(60), 512)
    );
    assert_eq!(c.st2.stream.cache_max_bytes, 16 << 20);
    assert_eq!(c.st2.stream.cached_execution_max_bytes, 16 << 10);
    let err = load(
        "server: {max_streams: 8, max_connections: 8, header_read_timeout: 50ms, idle_timeout: 0s}\n",
    )
    .unwrap_err();
    for want in [
        "server.max_connections: 8 must exceed server.max_streams (8)",
        "server.header_read_timeout: 50ms is below 100ms",
        "server.idle_timeout: 0",
    ] {
        assert!(err.contains(want), "{want} missing: {err}");
    }
    let stream = st2_client::stream::StreamConfig {
        cache_max_bytes: 1000,
        cached_execution_max_bytes: 100_000,
        ..Default::default()
    };
    let mut errors = Vec::new();
    stream.validate(&mut errors);
    let text = format!("{errors:?}");
    assert!(text.contains("st2.stream.cache_max_bytes"), "{text}");
    assert!(
        text.contains("st2.stream.cached_execution_max_bytes"),
        "{text}"
    );
}

/// `statusUrl` never comes from the caller's `Host` or `X-Forwarded-Proto` unless the operator
/// says a proxy sets them: by default it is the address the connection reached; with
/// `server.public_base_url` it is that URL.
#[tokio::test]
async fn status_url_is_the_adapters_own_whatever_host_the_caller_writes() {
    // The `statusUrl` of a `method` request to `path` that claims another host and scheme.
    async fn status_url(s: &Stack, method: reqwest::Method, path: &str, body: Value) -> String {
        let mut req = s
            .request(method, path, TOKEN)
            .header("host", "evil.example")
            .header("x-forwarded-proto", "https");
        if !body.is_null() {
            req = req.json(&body);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        answer["statusUrl"].as_str().unwrap().to_string()
    }
    async fn invoke(s: &Stack, id: &str) -> String {
        let body = json!({
            "schemaVersion": 1, "invocationId": id, "machineId": "st2",
            "workspaceId": "t1", "runId": "run-1", "action": "core.noop", "input": {}
        });
        status_url(s, reqwest::Method::POST, "/v1/invoke", body).await
    }

    let s = stack("").await;
    assert_eq!(
        invoke(&s, "inv-default").await,
        format!("{}/v1/invoke/inv-default/status", s.base)
    );

    let s = stack("server: {public_base_url: 'https://st2-adapter.example.com/'}\n").await;
    let public = "https://st2-adapter.example.com/v1/invoke/inv-public/status";
    assert_eq!(invoke(&s, "inv-public").await, public);
    let path = "/v1/invoke/inv-public/status";
    assert_eq!(
        status_url(&s, reqwest::Method::GET, path, Value::Null).await,
        public
    );

    let s = stack("server: {trust_forwarded_headers: true}\n").await;
    assert_eq!(
        invoke(&s, "inv-proxied").await,
        "https://evil.example/v1/invoke/inv-proxied/status",
        "behind a trusted proxy, its headers name the public address"
    );
}

/// A public base URL that could not be handed to callers is refused at load, naming the field.
#[test]
fn a_public_base_url_with_credentials_or_a_query_is_refused() {
    for (url, says) in [
        ("ftp://adapter.example", "http:// or https://"),
        ("https://adapter.example/?a=1", "no query"),
        ("https://user:pw@adapter.example", "no credentials"),
    ] {
        let yaml = format!(
            "st2: {{base_url: 'http://127.0.0.1:1', api_key: k}}\ntenants:\n  - {{id: t1, api_token: tok}}\nserver: {{public_base_url: '{url}'}}\n"
        );
        let err = portarium_st2::config::Config::from_yaml(&yaml, "test", std::iter::empty())
            .expect_err(url)
            .to_string();
        assert!(
            err.contains("server.public_base_url") && err.contains(says),
            "{url}: {err}"
        );
    }
}
