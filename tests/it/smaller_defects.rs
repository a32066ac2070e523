//! Issue 18's smaller defects, each against the emulator over real HTTP: audit outcomes of
//! starts, re-runs carrying the Portarium context, JSON error answers on every route, quiet
//! exits on a closed pipe, failed dispatches logged, token errors, and waits while the stream
//! is down.

use serde_json::{Value, json};

use super::support::stack::{Stack, audited};

/// The audit records written so far.
fn audit_records(dir: &tempfile::TempDir) -> Vec<Value> {
    std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn an_async_invocation_is_audited_as_started_not_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let body = json!({
        "schemaVersion": 1, "invocationId": "inv-fail", "machineId": "st2",
        "workspaceId": "t1", "runId": "run-1", "action": "examples.fail", "input": {}
    });
    let resp = s
        .send_as(reqwest::Method::POST, "/v1/invoke", "tok-1", &body)
        .await;
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    // `accepted` before st2 was asked, then what the start came to.
    let records = audit_records(&dir);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["dispatch"]["phase"], "accepted");
    let dispatch = &records[1]["dispatch"];
    assert_eq!(dispatch["outcome"], "started", "{dispatch}");
    assert!(dispatch["st2ExecutionId"].is_string(), "{dispatch}");
    assert!(
        !records[1]["summary"]
            .as_str()
            .unwrap()
            .contains("succeeded"),
        "{}",
        records[1]
    );
}

#[tokio::test]
async fn a_token_request_that_cannot_reach_st2auth_says_so_not_that_it_could_act_twice() {
    let emu = st2_emulator::Emulator::start(st2_emulator::EmulatorOptions::default())
        .await
        .unwrap();
    // A port that refuses: bound, then released.
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let config: st2_client::St2Config = serde_norway::from_str(&format!(
        "{{base_url: '{}', auth_url: 'http://{closed}', username: ann, password: pw, \
         retry: {{max_retries: 2, backoff: {{initial: 10ms, max: 20ms}}}}}}",
        emu.base_url()
    ))
    .unwrap();
    let client = st2_client::St2Client::from_config(&config).unwrap();
    let err = client.executions().get("x").send().await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("POST /v1/tokens"), "{text}");
    assert!(text.contains("cannot reach st2"), "{text}");
    assert!(!text.contains("could act twice"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
}

/// A dispatch body for tenant `t1`.
fn dispatch_body(flow_ref: &str, payload: Value) -> Value {
    json!({
        "actionId": "act-1", "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
        "flowRef": flow_ref, "payload": payload
    })
}

/// st2's execution `id`, once it has completed.
async fn completed(s: &Stack, id: &str) -> st2_client::Execution {
    for _ in 0..500 {
        let e: st2_client::Execution =
            serde_json::from_value(s.st2_get(&format!("executions/{id}")).await).unwrap();
        if e.status.as_ref().is_some_and(|s| s.is_terminal()) {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("execution {id} did not complete");
}

#[tokio::test]
async fn a_rerun_carries_the_portarium_context_gets_lifecycle_events_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let original = dispatched(&s, "core.echo", json!({"message": "first"})).await;
    let resp = s
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/executions/{original}/rerun"),
            "tok-1",
            &json!({"parameters": {"message": "again"}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let rerun: Value = resp.json().await.unwrap();
    let id = rerun["executionId"].as_str().unwrap();
    assert_ne!(id, original);

    let e = completed(&s, id).await;
    assert_eq!(e.parameters["message"], "again");
    let ctx = &e.context["portarium"];
    assert_eq!(ctx["tenant_id"], "t1");
    assert_eq!(ctx["run_id"], "run-1");
    assert_eq!(ctx["action_id"], "act-1");
    assert_eq!(ctx["correlation_id"], "corr-1");
    assert_eq!(ctx["rerun_of"], json!(original));
    // A new execution, not the original dispatch's retry target.
    assert!(ctx.get("dispatch_key").is_none(), "{ctx}");
    assert_eq!(e.context["re-run"]["ref"], json!(original));

    let events =
        portarium_st2::events::lifecycle::LifecycleTracker::new(Default::default()).observe(&e);
    let types: Vec<&str> = events.iter().map(|ev| ev.event_type.as_str()).collect();
    assert!(
        types.contains(&"com.portarium.run.ActionCompleted"),
        "{types:?}"
    );
    assert!(events.iter().all(|ev| ev.tenantid == "t1"));

    // The original dispatch retried still finds the original.
    let (_, again) = s
        .dispatch(
            Some("tok-1"),
            &dispatch_body("core.echo", json!({"message": "first"})),
        )
        .await;
    assert_eq!(again["output"]["executionId"], json!(original));

    let records = audit_records(&dir);
    let record = records
        .iter()
        .find(|r| {
            r["dispatch"]["rerunOf"] == json!(original) && r["dispatch"]["phase"] == "outcome"
        })
        .unwrap_or_else(|| panic!("no re-run record: {records:?}"));
    assert_eq!(record["dispatch"]["outcome"], "started");
    assert_eq!(record["dispatch"]["st2ExecutionId"], json!(id));
    assert_eq!(record["dispatch"]["overrides"], json!({"message": "again"}));
    assert_eq!(record["workspaceId"], "t1");
    assert_eq!(record["correlationId"], "corr-1");
}

#[tokio::test]
async fn a_rerun_keeps_its_secrets_and_redacts_overrides_and_never_sends_a_mask() {
    for hidden in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let builder = Stack::builder().tenant("t1", "tok-1").yaml(&format!(
            "governance: {{audit: {{path: '{}'}}}}",
            dir.path().join("audit.jsonl").display()
        ));
        let s = if hidden {
            builder.secrets_hidden()
        } else {
            builder
        }
        .start()
        .await;
        let secret = json!({"user": "ann", "password": "pw-SECRET-1"});
        let original = dispatched(&s, "examples.secret", secret).await;
        let rerun = |body: Value| {
            s.request(
                reqwest::Method::POST,
                &format!("/v1/executions/{original}/rerun"),
                "tok-1",
            )
            .json(&body)
            .send()
        };
        let resp = rerun(json!({})).await.unwrap();
        if hidden {
            // st2 shows the password masked; the mask must never be run as the password.
            assert_eq!(resp.status(), 400);
            let refused: Value = resp.json().await.unwrap();
            assert_eq!(refused["errorKind"], "RemoteError");
            assert!(
                refused["message"].as_str().unwrap().contains("password"),
                "{refused}"
            );
        } else {
            // An admin reads the original's secrets unmasked: the re-run keeps them.
            assert_eq!(resp.status(), 201);
            let rerun_id = resp.json::<Value>().await.unwrap()["executionId"]
                .as_str()
                .unwrap()
                .to_string();
            let started = s
                .st2_get(&format!("executions/{rerun_id}?show_secrets=true"))
                .await;
            assert_eq!(started["parameters"]["password"], "pw-SECRET-1");
        }
        let resp = rerun(json!({"parameters": {"password": "pw-SECRET-2"}}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(!text.contains("pw-SECRET"), "{text}");
        let records = audit_records(&dir);
        let last = records.last().unwrap();
        assert_eq!(last["dispatch"]["overrides"]["password"], "[REDACTED]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dispatch_is_logged_at_info_with_its_error_kind_and_execution_id() {
    let emu = st2_emulator::Emulator::start(st2_emulator::EmulatorOptions {
        api_key: super::support::stack::KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = super::conventions::serve_config(dir.path(), &emu.base_url(), "{format: json}");
    let served = super::security::serve(&config).await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/v1/dispatch", served.base))
        .bearer_auth("tok-1")
        .json(&dispatch_body("examples.fail", json!({})))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    let logs = served.log().join("\n");
    let line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["msg"] == "dispatch failed")
        .unwrap_or_else(|| panic!("no failed dispatch logged:\n{logs}"));
    assert_eq!(line["level"], "info", "{line}");
    assert_eq!(line["errorKind"], "RemoteError", "{line}");
    let id = line["st2.execution.id"].as_str().unwrap_or_default();
    assert!(
        !id.is_empty() && answer["message"].as_str().unwrap().contains(id),
        "{line}\n{answer}"
    );
}

/// The status and JSON body of `resp`, which must say it is JSON.
/// Dispatches `flow_ref` with `payload` as tenant t1 and returns the execution that ran it.
async fn dispatched(s: &Stack, flow_ref: &str, payload: Value) -> String {
    let (status, answer) = s
        .dispatch(Some("tok-1"), &dispatch_body(flow_ref, payload))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["output"]["executionId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `method` on `path` as tenant t1, with a JSON `body` when given: the status and JSON answer.
async fn answer_of(
    s: &Stack,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = s.request(method, path, "tok-1");
    if let Some(body) = body {
        req = req.json(body);
    }
    json_answer(req.send().await.unwrap()).await
}

async fn json_answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let content_type = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status} {content_type}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn every_error_answer_is_json_in_the_routes_shape() {
    let s = Stack::builder().tenant("t1", "tok-1").start().await;
    let native = |(status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["ok"], false, "{body}");
        assert!(body["errorKind"].is_string(), "{body}");
        assert!(body["message"].is_string(), "{body}");
    };
    use reqwest::Method;
    let echo = dispatch_body("core.echo", json!({"message": "x"})).to_string();
    for (method, path, body, want, why) in [
        (
            Method::GET,
            "/v1/executions/%FF",
            "",
            400,
            "a path segment that is not UTF-8 (Path rejection)",
        ),
        (
            Method::POST,
            "/v1/dispatch?waitMs=soon",
            echo.as_str(),
            400,
            "a query the route cannot read (Query rejection)",
        ),
        (
            Method::POST,
            "/v1/executions/abc/rerun",
            "{not json",
            400,
            "a malformed re-run body",
        ),
        (Method::GET, "/v1/nothing-here", "", 404, "an unknown route"),
        (
            Method::DELETE,
            "/v1/dispatch",
            "",
            405,
            "a method the route does not take",
        ),
    ] {
        let resp = s
            .request(method, path, "tok-1")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, answer) = json_answer(resp).await;
        assert_eq!(status, want, "{why}: {answer}");
        native((status, answer), want);
    }
    // The machine interface answers in its own shape.
    let (status, body) = answer_of(&s, reqwest::Method::GET, "/v1/invoke/%FF/status", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
}

#[tokio::test]
async fn the_deadline_and_the_stream_cap_answer_in_the_routes_shape() {
    use portarium_st2::server::Limits;
    let s = Stack::builder()
        .tenant("t1", "tok-1")
        .limits(Limits {
            max_body_bytes: 1 << 20,
            request_timeout: Some(std::time::Duration::from_millis(200)),
            max_streams: 0,
            ..Limits::from(1 << 20)
        })
        .start()
        .await;
    let sleeper = dispatch_body("core.local", json!({"cmd": "sleep 1"}));
    let (status, body) = answer_of(
        &s,
        reqwest::Method::POST,
        "/v1/dispatch?waitMs=5000",
        Some(&sleeper),
    )
    .await;
    assert_eq!(
        (status, &body["errorKind"]),
        (504, &json!("Timeout")),
        "{body}"
    );
    assert_eq!(body["ok"], false);
    let (status, body) = answer_of(&s, reqwest::Method::GET, "/v1/invoke/inv-1/stream", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert!(
        body["error"].to_string().contains("server.max_streams"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follow_exits_quietly_when_its_reader_goes_away() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let emu = st2_emulator::Emulator::start(st2_emulator::EmulatorOptions {
        api_key: "cli-key".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::st2_config_file(dir.path(), &emu, "cli-key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .args(["run", "--config", config.to_str().unwrap(), "--follow"])
        .args(["examples.output", "lines=20", "interval_ms=20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -3`: read three lines, then close the pipe.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        lines.next().unwrap().unwrap();
    }
    drop(lines);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// With st2stream down (the connection cut and every reconnect refused), a 1 s wait still
/// answers at its deadline: the poll loop's reads never hold the answer past it.
#[tokio::test]
async fn a_wait_honours_its_deadline_while_the_stream_is_down() {
    let s = Stack::builder().tenant("t1", "tok-1").start().await;
    s.emu
        .faults()
        .fail_next_on("GET", "/stream/v1/stream", 503, 10_000);
    s.emu.faults().cut_streams();
    let body = json!({
        "actionId": "a-wait", "tenantId": "t1", "runId": "r-wait", "correlationId": "c-wait",
        "flowRef": "core.local", "payload": {"cmd": "sleep 3"}
    });
    let started = std::time::Instant::now();
    let resp = s
        .send_as(
            reqwest::Method::POST,
            "/v1/dispatch?waitMs=1000",
            "tok-1",
            &body,
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(resp.status().as_u16(), 504);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errorKind"], "Timeout", "{answer}");
    assert!(
        waited < std::time::Duration::from_millis(1_500),
        "a 1 s wait answered after {waited:?}"
    );
}
