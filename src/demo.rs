//! `portarium-st2 demo`: the emulator and the adapter in one process, a few representative
//! dispatches through the adapter's real HTTP API, and what each one did in st2.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::config::Config;
use crate::server::{self, DispatchState, Readiness};
use crate::st2::{Execution, St2Client};

/// The tenant the emulator-backed modes accept; a demo value, documented in the README.
pub const DEMO_TENANT: &str = "demo";
/// That tenant's bearer token.
pub const DEMO_TOKEN: &str = "demo-token";

/// Starts the in-process emulator with a fresh API key and a config pointing at it, with the
/// demo tenant; `listen` and `log` still come from PORTARIUM_ST2_* variables in `env`.
pub async fn emulated(
    env: impl IntoIterator<Item = (String, String)>,
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
    let yaml = format!("tenants:\n  - {{id: {DEMO_TENANT}, api_token: {DEMO_TOKEN}}}\n");
    let config = Config::from_yaml(&yaml, "<emulator>", env).map_err(|e| e.to_string())?;
    Ok((config, emulator))
}

/// What a scenario should end in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// `{ok: true}`.
    Ok,
    /// `{ok: false, errorKind}` with this kind.
    Kind(&'static str),
}

/// One representative dispatch.
struct Scenario {
    title: &'static str,
    flow_ref: &'static str,
    payload: Value,
    wait_ms: u64,
    expect: Expect,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            title: "success: an action that prints a greeting",
            flow_ref: "core.echo",
            payload: json!({"message": "hello from Portarium"}),
            wait_ms: 8_000,
            expect: Expect::Ok,
        },
        Scenario {
            title: "failure: an action that exits non-zero",
            flow_ref: "examples.fail",
            payload: json!({}),
            wait_ms: 8_000,
            expect: Expect::Kind("RemoteError"),
        },
        Scenario {
            title: "timeout: st2 stops an action that outlives its own timeout",
            flow_ref: "core.local",
            payload: json!({"cmd": "sleep 5", "timeout": 1}),
            wait_ms: 8_000,
            expect: Expect::Kind("Timeout"),
        },
        Scenario {
            title: "deadline: the adapter answers before Portarium gives up; st2 keeps running it",
            flow_ref: "core.local",
            payload: json!({"cmd": "sleep 2"}),
            wait_ms: 300,
            expect: Expect::Kind("Timeout"),
        },
        Scenario {
            title: "workflow: an orquesta workflow with three tasks",
            flow_ref: "examples.orquesta-sequential",
            payload: json!({"name": "Portarium"}),
            wait_ms: 8_000,
            expect: Expect::Ok,
        },
        Scenario {
            title: "refused before st2: a payload that does not fit the action's schema",
            flow_ref: "core.echo",
            payload: json!({"message": 42, "colour": "blue"}),
            wait_ms: 8_000,
            expect: Expect::Kind("RemoteError"),
        },
        Scenario {
            title: "refused before st2: a flowRef that is not an action ref",
            flow_ref: "https://evil.example/run",
            payload: json!({}),
            wait_ms: 8_000,
            expect: Expect::Kind("FlowNotFound"),
        },
    ]
}

/// Runs every scenario against an in-process emulator and adapter, writing the story to
/// `out`. Returns how many scenarios ended other than expected.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<usize, String> {
    let (config, emulator) = emulated(std::iter::empty()).await?;
    let client = St2Client::from_config(&config.st2).map_err(|e| e.to_string())?;
    let dispatch = DispatchState::from_config(&config, &client).map_err(|e| e.to_string())?;
    let readiness = Readiness::of_st2(&client, Duration::from_secs(2), Duration::from_secs(2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let router = server::router(readiness, dispatch, config.dispatch.max_body_bytes);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, router, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let tty = std::io::stderr().is_terminal();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "portarium-st2 demo\n  st2 (emulator): {}\n  adapter:        {base}  (tenant {DEMO_TENANT}, token {DEMO_TOKEN})\n",
        emulator.base_url()
    );
    emit(out, &mut text);
    let all = scenarios();
    let mut misses = 0;
    for (i, s) in all.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(text, "[{n}/{}] {}", all.len(), s.title);
        emit(out, &mut text);
        if tty {
            eprint!("      … waiting for st2\r");
        }
        let story = play(&http, &base, &client, s, n).await;
        if tty {
            eprint!("                      \r");
        }
        misses += usize::from(!story.as_expected);
        text.push_str(&story.text);
        emit(out, &mut text);
    }
    let _ = writeln!(
        text,
        "\n{} scenarios, {} as expected, {} not",
        all.len(),
        all.len() - misses,
        misses
    );
    emit(out, &mut text);
    let _ = stop.send(());
    let _ = serving.await;
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

async fn play(
    http: &reqwest::Client,
    base: &str,
    st2: &St2Client,
    s: &Scenario,
    n: usize,
) -> Story {
    let action_id = format!("demo-step-{n}");
    let body = json!({
        "actionId": action_id, "tenantId": DEMO_TENANT, "runId": "demo-run",
        "correlationId": "demo-correlation", "flowRef": s.flow_ref, "payload": s.payload,
        "idempotencyKey": format!("demo-{n}-{}", fastrand::u64(..)),
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  → POST /v1/dispatch?waitMs={}  flowRef={} payload={}",
        s.wait_ms, s.flow_ref, s.payload
    );
    let started = Instant::now();
    let answer = http
        .post(format!("{base}/v1/dispatch?waitMs={}", s.wait_ms))
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
        Some(e) => {
            let _ = writeln!(
                text,
                "  st2 execution {}  {}  {}",
                e.id,
                e.action
                    .as_ref()
                    .and_then(|a| a.r#ref.as_deref())
                    .unwrap_or("?"),
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
                    child
                        .action
                        .as_ref()
                        .and_then(|a| a.r#ref.as_deref())
                        .unwrap_or("?"),
                    child
                        .status
                        .as_ref()
                        .map_or("?".into(), ToString::to_string),
                );
            }
        }
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
    let got = match (&result["ok"], result["errorKind"].as_str()) {
        (Value::Bool(true), _) => Some(Expect::Ok),
        (_, Some(kind)) => [
            "Unauthorized",
            "RateLimited",
            "FlowNotFound",
            "Timeout",
            "RemoteError",
        ]
        .into_iter()
        .find(|k| *k == kind)
        .map(Expect::Kind),
        _ => None,
    };
    let as_expected = got == Some(s.expect);
    let want = match s.expect {
        Expect::Ok => "ok".to_string(),
        Expect::Kind(k) => k.to_string(),
    };
    let mark = if as_expected { "✔" } else { "✘" };
    let _ = writeln!(
        text,
        "  {mark} Portarium result: {} (expected {want})\n",
        match got {
            Some(Expect::Ok) => "ok".to_string(),
            Some(Expect::Kind(k)) => k.to_string(),
            None => "unreadable".to_string(),
        }
    );
    Story { text, as_expected }
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
