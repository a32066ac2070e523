//! `ExecutionWatcher::follow` against the st2 emulator over real HTTP: events in execution
//! order, output read incrementally (also behind `/v1/invoke/{id}/stream`), one poll loop for
//! every follow while the stream is down, and `Gone`.

use std::time::Duration;

use futures_util::StreamExt;
use portarium_st2::app::App;
use portarium_st2::config::Config;
use serde_json::{Value, json};
use st2_client::secret::Secret;
use st2_client::stream::{ExecutionEvent, ExecutionWatcher, StreamConfig, WaitError};
use st2_client::{Execution, ExecutionRequest, St2Client, St2Config};
use st2_emulator::{Emulator, RequestRecord};
use tokio::time::Instant;

const KEY: &str = "follow-key";

/// The emulator (keep-alives well inside the watchers' 1 s silence bound), and a client.
async fn emulator() -> (Emulator, St2Client) {
    let emu = crate::support::quick_emulator(KEY).await;
    let cfg = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    let st2 = St2Client::from_config(&cfg).unwrap();
    (emu, st2)
}

fn stream_config(enabled: bool, fallback_poll: Duration) -> StreamConfig {
    StreamConfig {
        enabled,
        silence_timeout: Duration::from_millis(1_000),
        backoff: st2_client::BackoffConfig::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ),
        fallback_poll,
        ..StreamConfig::default()
    }
}

async fn start_output_action(st2: &St2Client, lines: u64, interval_ms: u64) -> Execution {
    let mut req = ExecutionRequest::new("examples.output");
    req.parameters.insert("lines".into(), json!(lines));
    req.parameters
        .insert("interval_ms".into(), json!(interval_ms));
    st2.executions().create(&req).await.unwrap()
}

/// Every event of a follow, until it ends by itself (bounded by `within`).
async fn all_events(w: &ExecutionWatcher, id: &str, within: Duration) -> Vec<ExecutionEvent> {
    tokio::time::timeout(within, w.follow(id).collect::<Vec<_>>())
        .await
        .expect("a follow ends by itself once the execution ends")
}

/// `status:<name>` or `output:<data>` per event, for readable assertions.
fn names(events: &[ExecutionEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ExecutionEvent::Status(e) => format!("status:{}", e.status.as_ref().unwrap()),
            ExecutionEvent::Output(chunk) => format!("output:{}", chunk.data),
            ExecutionEvent::Gone => "gone".into(),
            ExecutionEvent::Failed(e) => format!("failed:{e}"),
        })
        .collect()
}

/// Running before any output, the `lines` lines in order, statuses once, succeeded last.
fn assert_execution_order(events: &[String], lines: usize) {
    let first_output = events
        .iter()
        .position(|e| e.starts_with("output:"))
        .unwrap();
    let running = events.iter().position(|e| e == "status:running").unwrap();
    assert!(running < first_output, "{events:?}");
    let outputs: Vec<&str> = events
        .iter()
        .filter_map(|e| e.strip_prefix("output:"))
        .collect();
    let want: Vec<String> = (1..=lines).map(|n| format!("line {n}\n")).collect();
    assert_eq!(outputs, want);
    assert_eq!(events.last().unwrap(), "status:succeeded", "{events:?}");
    let statuses: Vec<&String> = events.iter().filter(|e| e.starts_with("status:")).collect();
    let distinct: std::collections::HashSet<&&String> = statuses.iter().collect();
    assert_eq!(
        distinct.len(),
        statuses.len(),
        "a status repeated: {events:?}"
    );
}

#[tokio::test]
async fn statuses_and_output_come_in_execution_order_through_the_stream() {
    let (_emu, st2) = emulator().await;
    let w = ExecutionWatcher::start(st2.clone(), stream_config(true, Duration::from_secs(60)));
    assert!(w.connected(Instant::now() + Duration::from_secs(5)).await);
    let e = start_output_action(&st2.clone(), 4, 120).await;
    let events = names(&all_events(&w, &e.id, Duration::from_secs(10)).await);
    assert_execution_order(&events, 4);
}

#[tokio::test]
async fn statuses_and_output_come_in_execution_order_through_the_poll_loop() {
    let (emu, st2) = emulator().await;
    let w = ExecutionWatcher::start(
        st2.clone(),
        stream_config(false, Duration::from_millis(100)),
    );
    let e = start_output_action(&st2.clone(), 4, 250).await;
    let events = names(&all_events(&w, &e.id, Duration::from_secs(10)).await);
    assert_execution_order(&events, 4);
    assert_eq!(
        stream_opens(&emu),
        0,
        "a disabled stream opened a connection"
    );
}

#[tokio::test]
async fn a_follow_of_a_finished_execution_replays_its_output_then_its_end() {
    let (_emu, st2) = emulator().await;
    let w = ExecutionWatcher::start(st2.clone(), stream_config(true, Duration::from_secs(60)));
    let e = start_output_action(&st2, 4, 10).await;
    w.wait_for(&e, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let events = names(&all_events(&w, &e.id, Duration::from_secs(10)).await);
    assert_eq!(
        events,
        [
            "output:line 1\n",
            "output:line 2\n",
            "output:line 3\n",
            "output:line 4\n",
            "status:succeeded"
        ]
    );
}

#[tokio::test]
async fn an_unknown_execution_is_gone_and_its_wait_says_so() {
    let (_emu, st2) = emulator().await;
    for enabled in [true, false] {
        let w = ExecutionWatcher::start(
            st2.clone(),
            stream_config(enabled, Duration::from_millis(100)),
        );
        let id = "000000000000000000000000";
        let events = all_events(&w, id, Duration::from_secs(5)).await;
        assert_eq!(names(&events), ["gone"]);
        let waited = w
            .wait_terminal(id, Instant::now() + Duration::from_secs(5))
            .await;
        assert!(matches!(waited, Err(WaitError::Gone { .. })), "{waited:?}");
    }
}

fn log_for(emu: &Emulator, keep: impl Fn(&RequestRecord) -> bool) -> usize {
    emu.request_log().iter().filter(|r| keep(r)).count()
}

fn stream_opens(emu: &Emulator) -> usize {
    log_for(emu, |r| r.path == "/stream/v1/stream")
}

/// `GET /api/v1/executions/{id}` reads of the whole execution.
fn reads_of(emu: &Emulator, id: &str) -> usize {
    let path = format!("/api/v1/executions/{id}");
    log_for(emu, |r| {
        r.method == "GET"
            && r.path == path
            && r.query.as_deref().is_none_or(|q| !q.contains("include"))
    })
}

#[tokio::test]
async fn with_the_stream_down_one_poll_loop_reads_each_followed_execution_once_per_interval() {
    let (emu, st2) = emulator().await;
    emu.faults()
        .fail_next_on("GET", "/stream/v1/stream", 503, 10_000);
    let interval = Duration::from_millis(200);
    let w = ExecutionWatcher::start(st2.clone(), stream_config(true, interval));
    let e = start_output_action(&st2, 8, 250).await;
    let began = Instant::now();
    // Eight followers of one execution: five follows with output, three waits.
    let follows = (0..5).map(|_| {
        let (w, id) = (w.clone(), e.id.clone());
        tokio::spawn(async move { all_events(&w, &id, Duration::from_secs(15)).await })
    });
    let waits = (0..3).map(|_| {
        let (w, id) = (w.clone(), e.id.clone());
        tokio::spawn(async move {
            w.wait_terminal(&id, Instant::now() + Duration::from_secs(15))
                .await
                .map(|_| Vec::new())
                .unwrap()
        })
    });
    let ended = futures_util::future::join_all(follows.chain(waits)).await;
    let took = began.elapsed();
    for events in ended.iter().take(5) {
        assert_execution_order(&names(events.as_ref().unwrap()), 8);
    }
    let reads = reads_of(&emu, &e.id);
    // One read to close the gap, then one per interval while it runs — not one per
    // follower per interval (that would be 8 times as many).
    let rounds = (took.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        reads <= rounds,
        "{reads} reads in {took:?} ({rounds} rounds)"
    );
    assert!(reads >= 2, "{reads}");
    assert_eq!(w.stats().wait_reads as usize, reads);
    assert_eq!(w.stats().connects, 0);
}

/// The adapter (its whole app) on a loopback port, with the `st2.stream` section `stream`.
async fn adapter(emu: &Emulator, stream: &str) -> String {
    let yaml = format!(
        "listen: 127.0.0.1:0\nst2: {{base_url: '{}', api_key: {KEY}, stream: {stream}}}\n\
         tenants:\n  - {{id: tenant-a, api_token: token-a}}\n",
        emu.base_url()
    );
    let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
    let app = App::build(&config, Duration::ZERO).await.unwrap();
    app.serve_in_background(config.listen).await.unwrap()
}

#[tokio::test]
async fn the_invoke_stream_reads_output_incrementally_and_never_rereads_the_execution() {
    let (emu, _) = emulator().await;
    let base = adapter(&emu, "{enabled: true, silence_timeout: 1s}").await;
    let http = reqwest::Client::new();
    let body = json!({
        "schemaVersion": 1, "invocationId": "inv-f", "machineId": "st2",
        "workspaceId": "tenant-a", "action": "examples.output",
        "input": {"lines": 6, "interval_ms": 400}
    });
    let started = http
        .post(format!("{base}/v1/invoke"))
        .bearer_auth("token-a")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    let id = started["executionId"].as_str().unwrap().to_string();
    let text = tokio::time::timeout(
        Duration::from_secs(15),
        http.get(format!("{base}/v1/invoke/inv-f/stream"))
            .bearer_auth("token-a")
            .send()
            .await
            .unwrap()
            .text(),
    )
    .await
    .expect("the stream ends when the execution completes")
    .unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let steps: Vec<&str> = events.iter().map(|e| e["step"].as_str().unwrap()).collect();
    let first_output = steps.iter().position(|s| *s == "output").unwrap();
    assert!(steps[..first_output].contains(&"running"), "{steps:?}");
    assert_eq!(
        steps.iter().filter(|s| **s == "output").count(),
        6,
        "{steps:?}"
    );
    assert_eq!(*steps.last().unwrap(), "succeeded", "{steps:?}");
    // The execution ran ~2.4 s, which the old route re-read (with its whole output) every
    // second at most: now at most the one read that closes the gap, no REST output read,
    // and one output stream.
    assert!(reads_of(&emu, &id) <= 1, "{}", reads_of(&emu, &id));
    let output_path = format!("/api/v1/executions/{id}/output");
    assert_eq!(log_for(&emu, |r| r.path == output_path), 0);
    let stream_path = format!("/stream/v1/executions/{id}/output");
    assert_eq!(log_for(&emu, |r| r.path == stream_path), 1);
    assert_eq!(events.last().unwrap()["status"], "completed");
}
