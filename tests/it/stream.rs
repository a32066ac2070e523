//! Following executions through st2's event stream, against st2's recorded framings and the
//! emulator over real HTTP/SSE: parsing, cuts, silence, dispatch without polling, live output.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use portarium_st2::config::Config;
use portarium_st2::core::Dispatched;
use portarium_st2::core::dispatch::Dispatcher;
use portarium_st2::core::portarium::DispatchRequest;
use serde_json::{Value, json};
use st2_client::St2Config;
use st2_client::models::OutputChunk;
use st2_client::secret::Secret;
use st2_client::stream::{ExecutionEvent, ExecutionWatcher, SseEvent, SseParser, StreamConfig};
use st2_client::{Execution, ExecutionRequest, ExecutionStatus, St2Client};
use st2_emulator::Emulator;
use tokio::sync::broadcast;
use tokio::time::Instant;

const KEY: &str = "stream-key";

// ---------------------------------------------------------------- parsing st2's framings

/// The raw bytes st2 wrote on the stream: the capture minus its HTTP head, if it has one.
fn capture_body(name: &str) -> Vec<u8> {
    let raw = std::fs::read(crate::support::reference_dir().join("captures").join(name)).unwrap();
    if raw.starts_with(b"HTTP/") {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        raw[at + 4..].to_vec()
    } else {
        raw
    }
}

fn parse_in_chunks(bytes: &[u8], mut sizes: impl FnMut(usize) -> usize) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let end = (at + sizes(n).max(1)).min(bytes.len());
        out.extend(parser.push(&bytes[at..end]).unwrap());
        at = end;
        n += 1;
    }
    out
}

const STREAM_CAPTURES: [&str; 6] = [
    "stream-action-refs-core-echo.sse",
    "stream-core-local.sse",
    "stream-execution-output-endpoint.sse",
    "stream-filtered-end-event.sse",
    "stream-orquesta-sequential.sse",
    "stream-output-events.sse",
];

#[test]
fn every_capture_parses_the_same_however_it_is_split() {
    if crate::support::missing() {
        return;
    }
    for name in STREAM_CAPTURES {
        let bytes = capture_body(name);
        let whole = parse_in_chunks(&bytes, |_| bytes.len());
        let frames = bytes
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"event: "))
            .count();
        assert_eq!(whole.len(), frames, "{name}");
        assert!(!whole.is_empty(), "{name}");
        for (i, ev) in whole.iter().enumerate() {
            match ev.event.as_str() {
                "st2.execution__create" | "st2.execution__update" => {
                    let e: Execution = serde_json::from_str(&ev.data)
                        .unwrap_or_else(|err| panic!("{name} event {i}: {err}"));
                    assert!(e.status.is_some(), "{name} event {i}");
                }
                "st2.execution.output__create" => {
                    let c: OutputChunk = serde_json::from_str(&ev.data).unwrap();
                    assert!(!c.data.is_empty());
                }
                "st2.liveaction__create" | "st2.liveaction__update" => {
                    serde_json::from_str::<Value>(&ev.data).unwrap();
                }
                "EOF" => assert_eq!(ev.data, "''", "{name}"),
                other => panic!("{name}: unexpected event {other}"),
            }
        }
        // Every split point for the short captures, fixed and varying sizes for all.
        if bytes.len() < 4_000 {
            for cut in 1..bytes.len() {
                let split = parse_in_chunks(&bytes, |n| if n == 0 { cut } else { bytes.len() });
                assert_eq!(split, whole, "{name} split at {cut}");
            }
        }
        for size in [1, 2, 3, 7, 64, 1_000] {
            assert_eq!(parse_in_chunks(&bytes, |_| size), whole, "{name} by {size}");
        }
        let mut seed = fastrand::Rng::with_seed(name.len() as u64);
        assert_eq!(
            parse_in_chunks(&bytes, |_| seed.usize(1..300)),
            whole,
            "{name} random"
        );
        // The same frames with CRLF line ends, and with comments and keep-alives between.
        let crlf: Vec<u8> = bytes
            .iter()
            .flat_map(|b| {
                if *b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![*b]
                }
            })
            .collect();
        assert_eq!(parse_in_chunks(&crlf, |_| 5), whole, "{name} crlf");
        let chatty = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\n\n", "\n\n: keep-alive\n\n\n");
        assert_eq!(
            parse_in_chunks(chatty.as_bytes(), |_| 11),
            whole,
            "{name} chatty"
        );
    }
}

#[test]
fn the_idle_capture_is_only_keep_alives() {
    if crate::support::missing() {
        return;
    }
    let idle = capture_body("stream-idle-30s-heartbeat.raw");
    assert!(!idle.is_empty());
    assert!(parse_in_chunks(&idle, |_| 1).is_empty());
}

#[test]
fn multi_line_data_joins() {
    let events = parse_in_chunks(
        b"event: st2.execution__update\ndata: {\"id\":\ndata:  \"x\"}\n\n",
        |_| 4,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "{\"id\":\n \"x\"}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0].data).unwrap()["id"],
        "x"
    );
}

// ---------------------------------------------------------------- against the emulator

async fn emulator() -> Emulator {
    crate::support::quick_emulator(KEY).await
}

fn client(emu: &Emulator) -> St2Client {
    let mut cfg = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    cfg.retry.backoff.initial = Duration::from_millis(10);
    cfg.retry.backoff.max = Duration::from_millis(50);
    St2Client::from_config(&cfg).unwrap()
}

/// Quick reconnects, and a fallback read so rare that no wait here is settled by one.
fn stream_config() -> StreamConfig {
    StreamConfig {
        silence_timeout: Duration::from_millis(1_000),
        backoff: st2_client::BackoffConfig::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ),
        fallback_poll: Duration::from_millis(120_000),
        ..StreamConfig::default()
    }
}

async fn watcher(emu: &Emulator) -> ExecutionWatcher {
    let w = ExecutionWatcher::start(client(emu), stream_config());
    assert!(w.connected(Instant::now() + Duration::from_secs(5)).await);
    w
}

async fn start_output_action(st2: &St2Client, lines: u64, interval_ms: u64) -> Execution {
    let mut req = ExecutionRequest::new("examples.output");
    req.parameters.insert("lines".into(), json!(lines));
    req.parameters
        .insert("interval_ms".into(), json!(interval_ms));
    req.context
        .insert("portarium".into(), json!({"tenant_id": "tenant-a"}));
    st2.executions().create(&req).await.unwrap()
}

/// Terminal statuses per execution id seen on `rx` so far.
fn terminal_seen(rx: &mut broadcast::Receiver<Arc<Execution>>) -> HashMap<String, ExecutionStatus> {
    let mut seen = HashMap::new();
    while let Ok(e) = rx.try_recv() {
        if let Some(s) = e.status.clone().filter(ExecutionStatus::is_terminal) {
            seen.insert(e.id.clone(), s);
        }
    }
    seen
}

fn stream_opens(emu: &Emulator) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.path == "/stream/v1/stream" && r.status == 200)
        .count()
}

/// Waits (bounded) until the watcher has opened `n` connections, so the next cut hits one.
async fn until_connects(w: &ExecutionWatcher, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.stats().connects < n {
        assert!(Instant::now() < deadline, "{:?}", w.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn cuts_and_outages_lose_no_status_change() {
    let emu = emulator().await;
    let st2 = client(&emu);
    let w = watcher(&emu).await;
    let mut updates = w.updates();
    let mut started = Vec::new();
    for i in 0..20 {
        started.push(start_output_action(&st2, 4 + i % 4, 100).await);
    }
    let waits: Vec<_> = started
        .iter()
        .map(|e| {
            let (w, id) = (w.clone(), e.id.clone());
            tokio::spawn(async move {
                let r = w
                    .wait_terminal(&id, Instant::now() + Duration::from_secs(15))
                    .await;
                (r, Instant::now())
            })
        })
        .collect();
    // Cuts while everything runs, each once the previous reconnect is done...
    for n in 1..=2 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        emu.faults().cut_streams();
        until_connects(&w, n + 1).await;
    }
    // ...then an outage (st2stream answering 503) longer than the executions still need, so
    // they end while no connection is open and only the reconciliation can tell.
    const REFUSED: u64 = 7;
    emu.faults()
        .fail_next_on("GET", "/stream/v1/stream", 503, REFUSED as usize);
    emu.faults().cut_streams();
    let outage = Instant::now();
    let mut finished = HashMap::new();
    let mut after_outage = 0;
    for wait in waits {
        let (r, at) = wait.await.unwrap();
        let e = r.expect("every wait ends with a terminal status");
        finished.insert(e.id.clone(), e.status.clone().unwrap());
        after_outage += usize::from(at > outage);
    }
    assert!(after_outage > 0, "no execution ended during the outage");
    for e in &started {
        let now = st2.executions().get(&e.id).send().await.unwrap();
        assert_eq!(finished[&e.id], now.status.unwrap(), "{}", e.id);
    }
    let seen = terminal_seen(&mut updates);
    for e in &started {
        assert_eq!(
            seen.get(&e.id),
            finished.get(&e.id),
            "updates() for {}",
            e.id
        );
    }
    let stats = w.stats();
    // Three cuts, each followed by a reconnect, and every connection reconciled.
    assert!(stats.connects >= 4, "{stats:?}");
    assert_eq!(stats.reconnects, stats.connects - 1, "{stats:?}");
    assert_eq!(stats.failed_connects, REFUSED, "{stats:?}");
    assert_eq!(stats.reconciliations, stats.connects, "{stats:?}");
    // At most the one read a wait makes when it cannot know the stream carries its
    // execution yet: the stream and the reconciliations settled every status.
    assert!(stats.wait_reads <= started.len() as u64, "{stats:?}");
    assert_eq!(stats.connects as usize, stream_opens(&emu), "{stats:?}");
}

#[tokio::test]
async fn a_silent_stream_is_detected_and_reconnected() {
    let emu = emulator().await;
    let st2 = client(&emu);
    let w = watcher(&emu).await;
    // Keep-alives alone keep a quiet connection up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(w.stats().silences, 0);
    assert_eq!(w.stats().connects, 1);
    emu.faults().silence_streams(true);
    let e = start_output_action(&st2, 2, 50).await;
    let wait = {
        let (w, id) = (w.clone(), e.id.clone());
        tokio::spawn(async move {
            w.wait_terminal(&id, Instant::now() + Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    emu.faults().silence_streams(false);
    let done = wait.await.unwrap().unwrap();
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
    let stats = w.stats();
    assert!(stats.silences >= 1, "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
}

fn dispatch_request(i: usize) -> DispatchRequest {
    DispatchRequest {
        action_id: format!("act-{i}"),
        idempotency_key: None,
        tenant_id: "tenant-a".into(),
        run_id: "run-stream".into(),
        correlation_id: "corr-1".into(),
        flow_ref: "examples.output".into(),
        payload: json!({"lines": 3, "interval_ms": 60})
            .as_object()
            .cloned()
            .unwrap(),
        trace: None,
        invocation_id: None,
    }
}

/// `GET /api/v1/executions/{id}` reads (not lists, not output) in the emulator's log.
fn execution_reads(emu: &Emulator) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .strip_prefix("/api/v1/executions/")
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        })
        .count()
}

async fn dispatch_five(d: &Dispatcher, offset: usize) {
    let runs = (offset..offset + 5).map(|i| {
        let d = d.clone();
        async move {
            d.dispatch(&dispatch_request(i), Duration::from_secs(10))
                .await
        }
    });
    for r in futures_util::future::join_all(runs).await {
        let Ok(Dispatched { output, .. }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(output["status"], "succeeded");
        assert_eq!(output["result"]["stdout"], "line 1\nline 2\nline 3");
    }
}

#[tokio::test]
async fn dispatch_through_the_watcher_reads_no_execution() {
    let emu = emulator().await;
    let polling = Dispatcher::new(client(&emu));
    dispatch_five(&polling, 0).await;
    let polled = execution_reads(&emu);
    // st2's `Date` has whole seconds: an execution started a second after the connection
    // opened is known to be on it, so the wait needs no read at all.
    let w = watcher(&emu).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let streamed = Dispatcher::new(client(&emu)).with_watcher(w.clone());
    dispatch_five(&streamed, 5).await;
    let through_stream = execution_reads(&emu) - polled;
    // Without a stream the dispatcher's poll loop reads each execution at least once.
    assert!(polled >= 5, "polling read {polled} times for 5 dispatches");
    assert_eq!(through_stream, 0, "the watcher path read executions");
    assert_eq!(w.stats().wait_reads, 0);
}

#[tokio::test]
async fn with_the_stream_down_waits_fall_back_to_reading_their_execution() {
    let emu = emulator().await;
    emu.faults()
        .fail_next_on("GET", "/stream/v1/stream", 503, 10_000);
    let w = ExecutionWatcher::start(
        client(&emu),
        StreamConfig {
            fallback_poll: Duration::from_millis(100),
            ..stream_config()
        },
    );
    let d = Dispatcher::new(client(&emu)).with_watcher(w.clone());
    dispatch_five(&d, 0).await;
    let stats = w.stats();
    assert_eq!(stats.connects, 0, "{stats:?}");
    assert!(stats.failed_connects >= 1, "{stats:?}");
    assert!(stats.wait_reads >= 5, "{stats:?}");
    assert_eq!(
        stats.wait_reads as usize,
        execution_reads(&emu),
        "{stats:?}"
    );
}

#[tokio::test]
async fn output_survives_cuts_in_order_without_duplicates() {
    let emu = emulator().await;
    let st2 = client(&emu);
    let w = watcher(&emu).await;
    let e = start_output_action(&st2, 6, 80).await;
    let mut out = w.follow(&e.id).filter_map(|event| {
        std::future::ready(match event {
            ExecutionEvent::Output(chunk) => Some(chunk),
            _ => None,
        })
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, out.next()).await {
        assert_eq!(chunk.execution_id, e.id);
        lines.push(chunk.data);
        if lines.len() == 2 || lines.len() == 4 {
            emu.faults().cut_streams();
        }
    }
    let want: Vec<String> = (1..=6).map(|n| format!("line {n}\n")).collect();
    assert_eq!(lines, want);
    // Ended because the execution ended, not because of the deadline.
    assert!(Instant::now() < deadline);
    let done = st2.executions().get(&e.id).send().await.unwrap();
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
}

// ---------------------------------------------------------------- the adapter's output route

/// The adapter on a loopback port; `stream` is the `st2.stream` section.
async fn adapter(emu: &Emulator, stream: &str) -> String {
    let yaml = format!(
        "listen: 127.0.0.1:0\nst2: {{base_url: '{}', api_key: {KEY}, stream: {stream}}}\n\
         tenants:\n  - {{id: tenant-a, api_token: token-a}}\n  - {{id: tenant-b, api_token: token-b}}\n",
        emu.base_url()
    );
    let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
    crate::support::stack::serve_dispatch_routes(&config).await
}

#[tokio::test]
async fn output_route_streams_lines_in_order_then_ends_with_the_status() {
    output_route(true).await;
}

#[tokio::test]
async fn output_route_works_without_the_stream_watcher() {
    output_route(false).await;
}

async fn output_route(watched: bool) {
    let emu = emulator().await;
    let base = adapter(
        &emu,
        &format!("{{enabled: {watched}, silence_timeout_ms: 1000}}"),
    )
    .await;
    let e = start_output_action(&client(&emu), 4, 80).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/executions/{}/output", e.id);
    let foreign = http.get(&url).bearer_auth("token-b").send().await.unwrap();
    assert_eq!(foreign.status(), 404);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown = http
        .get(format!(
            "{base}/v1/executions/000000000000000000000000/output"
        ))
        .bearer_auth("token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let response = tokio::time::timeout(
        Duration::from_secs(10),
        http.get(&url).bearer_auth("token-a").send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .expect("the response ends when the execution ends")
        .unwrap();
    let events = SseParser::default().push(&body).unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["output", "output", "output", "output", "end"]);
    let data: Vec<String> = events[..4]
        .iter()
        .map(|e| {
            let chunk: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(chunk["output_type"], "stdout");
            chunk["data"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(data, ["line 1\n", "line 2\n", "line 3\n", "line 4\n"]);
    let end: Value = serde_json::from_str(&events[4].data).unwrap();
    assert_eq!(end, json!({"executionId": e.id, "status": "succeeded"}));
    let ids: HashSet<String> = events[..4].iter().map(|e| e_id(&e.data)).collect();
    assert_eq!(ids, HashSet::from([e.id.clone()]));
}

fn e_id(data: &str) -> String {
    serde_json::from_str::<Value>(data).unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_stream_server_that_never_answers_is_given_up_on_and_retried() {
    // Accepts connections and reads requests, but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut cfg = St2Config::with_api_key(
        format!("http://{addr}").parse().unwrap(),
        Secret::from_value(KEY),
    );
    cfg.request_timeout = Duration::from_millis(200);
    let w = ExecutionWatcher::start(St2Client::from_config(&cfg).unwrap(), stream_config());
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.stats().failed_connects < 2 {
        assert!(Instant::now() < deadline, "{:?}", w.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.stats().connects, 0);
}

// ---------------------------------------------------------------- configuration

#[test]
fn stream_settings_are_validated_and_overridable_by_env() {
    let yaml = "st2: {base_url: 'http://127.0.0.1:9', api_key: k, stream: {silence_timeout: 10ms, backoff: {initial: 0ms, max: 1s}}}\n";
    let err = Config::from_yaml(yaml, "test", std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("st2.stream.silence_timeout: 10ms is below 1s"),
        "{err}"
    );
    assert!(err.contains("st2.stream.backoff.initial"), "{err}");
    let typo = "st2: {base_url: 'http://127.0.0.1:9', api_key: k, stream: {silence_ms: 5000}}\n";
    let err = Config::from_yaml(typo, "test", std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("st2.stream") && err.contains("silence_ms"),
        "{err}"
    );
    let env = [(
        "PORTARIUM_ST2_ST2__STREAM__ENABLED".to_string(),
        "false".to_string(),
    )];
    let ok = Config::from_yaml(
        "st2: {base_url: 'http://127.0.0.1:9', api_key: k}\n",
        "test",
        env,
    )
    .unwrap();
    assert!(!ok.st2.stream.enabled);
    assert_eq!(ok.st2.stream.silence_timeout, Duration::from_secs(60));
}
