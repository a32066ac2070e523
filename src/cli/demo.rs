//! `portarium-st2 demo`: the emulator and the adapter in one process, a few representative
//! dispatches through the adapter's real HTTP API, and what each one did in st2.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions};

use std::sync::{Arc, Mutex};

use crate::app::App;
use crate::config::Config;
use crate::core::portarium::ErrorKind;
use st2_client::{Execution, St2Client};

/// The tenant the emulator-backed modes accept; a demo value, documented in the README.
pub const DEMO_TENANT: &str = "demo";
/// That tenant's bearer token.
pub const DEMO_TOKEN: &str = "demo-token";

/// The reviewed-packs policy of the emulator-backed modes: st2's own `core` and `examples`.
const DEMO_POLICY: &str = "packs:\n  - {ref: core, versions: '>=1.0, <2', license: Apache-2.0, reviewer: demo, reviewedAt: 2026-11-25}\n  - {ref: examples, versions: '>=3.8', license: Apache-2.0, reviewer: demo, reviewedAt: 2026-11-25}\n";
/// The Portarium event class the emulator-backed modes accept, and the st2 trigger it fires
/// (the emulator's rule `examples.portarium_event_echo` runs `core.echo` on it).
const DEMO_EVENT_CLASS: &str = "com.portarium.run.RunStarted";

/// Starts the in-process emulator with a fresh API key and a config pointing at it, with the
/// demo tenant, a reviewed-packs policy for `core` and `examples`, one inbound event class,
/// and lifecycle events to `lifecycle_sink` when given; `listen` and `log` still come from
/// PORTARIUM_ST2_* variables in `env`.
pub async fn emulated(
    env: impl IntoIterator<Item = (String, String)>,
    lifecycle_sink: Option<&str>,
) -> Result<(Config, Emulator), String> {
    let api_key: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    let emulator = Emulator::start(EmulatorOptions {
        api_key: api_key.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot start the st2 emulator: {e}"))?;
    let dir = std::env::temp_dir().join(format!("portarium-st2-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let policy = dir.join("packs-policy.yaml");
    std::fs::write(&policy, DEMO_POLICY)
        .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    let env = env
        .into_iter()
        .filter(|(k, _)| !k.starts_with("PORTARIUM_ST2_ST2__"))
        .chain([
            (
                "PORTARIUM_ST2_ST2__BASE_URL".to_string(),
                emulator.base_url(),
            ),
            ("PORTARIUM_ST2_ST2__API_KEY".to_string(), api_key),
        ]);
    let yaml = format!(
        "tenants:\n  - {{id: {DEMO_TENANT}, api_token: {DEMO_TOKEN}}}\n\
         governance: {{packs_policy: '{}'}}\n\
         events:\n  inbound:\n    classes:\n      - {{type: {DEMO_EVENT_CLASS}, trigger: portarium.event}}\n{}",
        policy.display(),
        lifecycle_sink
            .map(|url| format!(
                "  http: {{url: '{url}', delivery: {{backoff: {{initial: 20ms, max: 200ms}}}}}}\n"
            ))
            .unwrap_or_default()
    );
    let config = Config::from_yaml(&yaml, "<emulator>", env).map_err(|e| e.to_string())?;
    Ok((config, emulator))
}

/// What a scenario should end in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// `{ok: true}`.
    Ok,
    /// `{ok: false, errorKind}` with this kind.
    Kind(ErrorKind),
}

/// One representative request to the adapter.
enum Scenario {
    /// `POST /v1/dispatch`.
    Dispatch {
        title: &'static str,
        flow_ref: &'static str,
        payload: Value,
        wait_ms: u64,
        expect: Expect,
    },
    /// `POST /v1/events`: a Portarium event of a declared class fires an st2 rule.
    Event { title: &'static str },
}

fn scenarios() -> Vec<Scenario> {
    let dispatch = |title, flow_ref, payload, wait_ms, expect| Scenario::Dispatch {
        title,
        flow_ref,
        payload,
        wait_ms,
        expect,
    };
    vec![
        dispatch(
            "success: an action that prints a greeting",
            "core.echo",
            json!({"message": "hello from Portarium"}),
            8_000,
            Expect::Ok,
        ),
        dispatch(
            "failure: an action that exits non-zero",
            "examples.fail",
            json!({}),
            8_000,
            Expect::Kind(ErrorKind::RemoteError),
        ),
        dispatch(
            "timeout: st2 stops an action that outlives its own timeout",
            "core.local",
            json!({"cmd": "sleep 5", "timeout": 1}),
            8_000,
            Expect::Kind(ErrorKind::Timeout),
        ),
        dispatch(
            "deadline: the adapter answers before Portarium gives up; st2 keeps running it",
            "core.local",
            json!({"cmd": "sleep 2"}),
            300,
            Expect::Kind(ErrorKind::Timeout),
        ),
        dispatch(
            "workflow: an orquesta workflow with three tasks",
            "examples.orquesta-sequential",
            json!({"name": "Portarium"}),
            8_000,
            Expect::Ok,
        ),
        dispatch(
            "refused before st2: an action from a pack nobody reviewed",
            "chatops.post_message",
            json!({"message": "hi"}),
            8_000,
            Expect::Kind(ErrorKind::FlowNotFound),
        ),
        dispatch(
            "refused before st2: a payload that does not fit the action's schema",
            "core.echo",
            json!({"message": 42, "colour": "blue"}),
            8_000,
            Expect::Kind(ErrorKind::RemoteError),
        ),
        dispatch(
            "refused before st2: a flowRef that is not an action ref",
            "https://evil.example/run",
            json!({}),
            8_000,
            Expect::Kind(ErrorKind::FlowNotFound),
        ),
        Scenario::Event {
            title: "event: a Portarium event fires an st2 rule that runs an action",
        },
    ]
}

/// Lifecycle CloudEvents as the demo's own HTTP sink received them.
type Received = Arc<Mutex<Vec<Value>>>;

/// A loopback CloudEvents receiver standing in for Portarium's event intake.
async fn lifecycle_receiver() -> Result<(String, Received), String> {
    let received: Received = Arc::default();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post({
            let received = received.clone();
            move |axum::Json(event): axum::Json<Value>| async move {
                received.lock().expect("receiver lock").push(event);
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let url = format!(
        "http://{}/events",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// Runs every scenario against an in-process emulator and adapter, writing the story to
/// `out`. Returns how many scenarios ended other than expected.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<usize, String> {
    let (sink_url, received) = lifecycle_receiver().await?;
    let (config, emulator) = emulated(std::iter::empty(), Some(&sink_url)).await?;
    let app = App::build(&config, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    let base = app
        .serve_in_background(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let http = reqwest::Client::new();
    let tty = std::io::stderr().is_terminal();
    let st2 = app.client.clone();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "portarium-st2 demo\n  st2 (emulator): {}\n  adapter:        {base}  (tenant {DEMO_TENANT}, token {DEMO_TOKEN})\n  lifecycle sink: {sink_url}\n",
        emulator.base_url()
    );
    emit(out, &mut text);
    let all = scenarios();
    let mut misses = 0;
    for (i, s) in all.iter().enumerate() {
        let n = i + 1;
        let title = match s {
            Scenario::Dispatch { title, .. } | Scenario::Event { title } => title,
        };
        let _ = writeln!(text, "[{n}/{}] {title}", all.len());
        emit(out, &mut text);
        if tty {
            eprint!("      … waiting for st2\r");
        }
        let story = match s {
            Scenario::Dispatch { .. } => play(&http, &base, &st2, s, n).await,
            Scenario::Event { .. } => fire_event(&http, &base, &st2, n).await,
        };
        if tty {
            eprint!("                      \r");
        }
        misses += usize::from(!story.as_expected);
        text.push_str(&story.text);
        emit(out, &mut text);
    }
    // Lifecycle events travel asynchronously; give the sink a moment to receive the last.
    tokio::time::sleep(Duration::from_millis(500)).await;
    telemetry_report(&http, &base, &received, &mut text).await;
    let _ = writeln!(
        text,
        "\n{} scenarios, {} as expected, {} not",
        all.len(),
        all.len() - misses,
        misses
    );
    emit(out, &mut text);
    app.shutdown(Duration::from_secs(2)).await;
    emulator.shutdown().await;
    Ok(misses)
}

fn emit(out: &mut (dyn Write + Send), text: &mut String) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    text.clear();
}

/// What one scenario printed and whether it ended as expected.
struct Story {
    text: String,
    as_expected: bool,
}

/// Reads Portarium's result kind from an answer body.
fn kind_of(result: &Value) -> Option<Expect> {
    if result["ok"] == Value::Bool(true) {
        return Some(Expect::Ok);
    }
    serde_json::from_value(result["errorKind"].clone())
        .ok()
        .map(Expect::Kind)
}

fn describe(e: Option<Expect>) -> String {
    match e {
        Some(Expect::Ok) => "ok".into(),
        Some(Expect::Kind(k)) => k.to_string(),
        None => "unreadable".into(),
    }
}

async fn play(
    http: &reqwest::Client,
    base: &str,
    st2: &St2Client,
    scenario: &Scenario,
    n: usize,
) -> Story {
    let Scenario::Dispatch {
        flow_ref,
        payload,
        wait_ms,
        expect,
        ..
    } = scenario
    else {
        unreachable!("play runs dispatch scenarios")
    };
    let action_id = format!("demo-step-{n}");
    let body = json!({
        "actionId": action_id, "tenantId": DEMO_TENANT, "runId": "demo-run",
        "correlationId": "demo-correlation", "flowRef": flow_ref, "payload": payload,
        "idempotencyKey": format!("demo-{n}-{}", fastrand::u64(..)),
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  → POST /v1/dispatch?waitMs={wait_ms}  flowRef={flow_ref} payload={payload}"
    );
    let started = Instant::now();
    let answer = http
        .post(format!("{base}/v1/dispatch?waitMs={wait_ms}"))
        .bearer_auth(DEMO_TOKEN)
        .json(&body)
        .send()
        .await;
    let (status, result) = match answer {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(e) => {
            let _ = writeln!(text, "  ✘ the adapter did not answer: {e}");
            return Story {
                text,
                as_expected: false,
            };
        }
    };
    let elapsed = started.elapsed().as_millis();
    match execution_of(st2, &action_id).await {
        Some(e) => show_execution(st2, &e, &mut text).await,
        None => {
            let _ = writeln!(
                text,
                "  st2 execution: none (refused before st2 was called)"
            );
        }
    }
    let _ = writeln!(
        text,
        "  ← {status} in {elapsed} ms  {}",
        shorten(&result.to_string(), 160)
    );
    let got = kind_of(&result);
    let as_expected = got == Some(*expect);
    let mark = if as_expected { "✔" } else { "✘" };
    let _ = writeln!(
        text,
        "  {mark} Portarium result: {} (expected {})\n",
        describe(got),
        describe(Some(*expect))
    );
    Story { text, as_expected }
}

/// Sends a Portarium CloudEvent of the declared class and shows the st2 execution its rule
/// started, found by the trace tag the adapter gives the trigger instance.
async fn fire_event(http: &reqwest::Client, base: &str, st2: &St2Client, n: usize) -> Story {
    let id = format!("demo-event-{n}-{}", fastrand::u64(..));
    let event = json!({
        "specversion": "1.0", "id": id, "source": "portarium.control-plane.demo",
        "type": DEMO_EVENT_CLASS, "subject": "runs/demo-run",
        "datacontenttype": "application/json",
        "tenantid": DEMO_TENANT, "correlationid": "demo-correlation", "runid": "demo-run",
        "data": {"message": "run demo-run started"},
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  → POST /v1/events  type={DEMO_EVENT_CLASS} id={id} (sent twice: Portarium delivers at least once)"
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(DEMO_TOKEN)
            .json(&event)
            .send()
            .await;
        match answer {
            Ok(resp) => answers.push((
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )),
            Err(e) => {
                let _ = writeln!(text, "  ✘ the adapter did not answer: {e}");
                return Story {
                    text,
                    as_expected: false,
                };
            }
        }
    }
    for (status, body) in &answers {
        let _ = writeln!(text, "  ← {status}  {body}");
    }
    // The rule's execution belongs to the trigger instance's trace.
    let mut fired = Vec::new();
    for _ in 0..50 {
        if let Ok(page) = st2
            .traces()
            .list()
            .trace_tag(&format!("portarium-event-{id}"))
            .send()
            .await
        {
            fired = page
                .items
                .iter()
                .flat_map(|t| t.action_executions.iter().map(|c| c.object_id.clone()))
                .collect();
        }
        if !fired.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for execution_id in &fired {
        if let Ok(e) = st2.executions().get(execution_id).send().await {
            show_execution(st2, &e, &mut text).await;
        }
    }
    let as_expected = answers.first().map(|a| a.0) == Some(202)
        && answers.get(1).map(|a| a.0) == Some(200)
        && fired.len() == 1;
    let mark = if as_expected { "✔" } else { "✘" };
    let _ = writeln!(
        text,
        "  {mark} st2 rule fired: {} execution(s) for 2 deliveries (expected 1)\n",
        fired.len()
    );
    Story { text, as_expected }
}

async fn show_execution(st2: &St2Client, e: &Execution, text: &mut String) {
    let _ = writeln!(
        text,
        "  st2 execution {}  {}  {}",
        e.id,
        e.action_ref().unwrap_or("?"),
        e.status.as_ref().map_or("?".into(), ToString::to_string),
    );
    // A workflow's tasks are executions of their own.
    for child in st2
        .executions()
        .children(&e.id, 1)
        .await
        .unwrap_or_default()
    {
        let _ = writeln!(
            text,
            "    └ task execution {}  {}  {}",
            child.id,
            child.action_ref().unwrap_or("?"),
            child
                .status
                .as_ref()
                .map_or("?".into(), ToString::to_string),
        );
    }
}

/// The lifecycle events the sink received and the adapter's own metrics.
async fn telemetry_report(
    http: &reqwest::Client,
    base: &str,
    received: &Received,
    text: &mut String,
) {
    let events = received.lock().expect("receiver lock").clone();
    let mut by_type: Vec<(String, usize)> = Vec::new();
    for e in &events {
        let t = e["type"].as_str().unwrap_or("?").to_string();
        match by_type.iter_mut().find(|(k, _)| *k == t) {
            Some((_, n)) => *n += 1,
            None => by_type.push((t, 1)),
        }
    }
    let _ = writeln!(
        text,
        "Lifecycle CloudEvents delivered to Portarium's sink: {}",
        events.len()
    );
    for (t, n) in &by_type {
        let _ = writeln!(text, "  {n:>3} × {t}");
    }
    let metrics = match http.get(format!("{base}/metrics")).send().await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(e) => format!("(GET /metrics failed: {e})"),
    };
    let _ = writeln!(
        text,
        "\nTelemetry (GET /metrics, Portarium's action metrics):"
    );
    for line in metrics.lines().filter(|l| {
        l.starts_with("portarium_action_succeeded") || l.starts_with("portarium_action_failed")
    }) {
        let _ = writeln!(text, "  {line}");
    }
}

/// The st2 execution a scenario's dispatch created, found by the action id in its context.
async fn execution_of(st2: &St2Client, action_id: &str) -> Option<Execution> {
    let page = st2
        .executions()
        .list()
        .filter("context.portarium.action_id", action_id)
        .exclude(&["result"])
        .limit(1)
        .send()
        .await
        .ok()?;
    page.items.into_iter().next()
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}
