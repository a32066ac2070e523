//! Portarium's own clients against the adapter: each test sends exactly what Portarium's code
//! sends (docs/dispatch.md) and checks the status, headers and body that make that code end
//! with the right errorKind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server_dispatch::{activepieces_to, body, invocation, openclaw};
use crate::support::stack::Stack;

/// Tenant-a (`token-a`) and tenant-b (`token-b`) on the emulator; `yaml` adds config sections.
async fn stack(yaml: &str) -> Stack {
    Stack::builder()
        .tenant("tenant-a", "token-a")
        .tenant("tenant-b", "token-b")
        .yaml(yaml)
        .start()
        .await
}

#[tokio::test]
async fn openclaw_waits_up_to_max_wait_and_its_retry_attaches_to_the_same_execution() {
    let s = stack("dispatch: {default_wait_ms: 100, max_wait_ms: 1500}").await;
    let long = json!({"cmd": "sleep 30"});
    let started = Instant::now();
    let (status, body) = bridge(&s, "core.local", long.clone(), "long-1").await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "answered after {:?}, before dispatch.max_wait_ms: the invoker's own abort must decide",
        started.elapsed()
    );
    assert_eq!((status, body["errorKind"].as_str()), (504, Some("Timeout")));
    let (status, _) = bridge(&s, "core.local", long, "long-1").await;
    assert_eq!(status, 504);
    assert_eq!(
        s.creates(),
        1,
        "the retry re-attaches to the running execution"
    );
}

/// `MachineInvocationResponseV1` as Portarium's parser requires it of a refusal.
fn assert_machine_refusal(status: u16, want: u16, body: &Value, kind: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["schemaVersion"], json!(1), "an integer 1: {body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["errorKind"], kind, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// What the OpenClaw bridge sends for `tool` with `parameters` under `key`, answered.
async fn bridge(s: &Stack, tool: &str, parameters: Value, key: &str) -> (u16, Value) {
    answer(
        openclaw(s, tool, parameters, false, key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `GET path` on the adapter as `token`.
async fn get(s: &Stack, path: &str, token: &str) -> reqwest::Response {
    s.request(reqwest::Method::GET, path, token)
        .send()
        .await
        .unwrap()
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn machine_refusals_answer_in_the_invocation_response_shape() {
    let s = stack("").await;
    let post = |token: &str, body: Value| {
        s.request(reqwest::Method::POST, "/v1/invoke", token)
            .json(&body)
            .send()
    };
    let good = invocation("inv-r", "tenant-a", "core.noop", json!({}));

    let (status, body) = answer(post("wrong", good.clone()).await.unwrap()).await;
    assert_machine_refusal(status, 401, &body, "Unauthorized");
    let resp = get(&s, "/v1/invoke/inv-r/status", "wrong").await;
    let (status, body) = answer(resp).await;
    assert_machine_refusal(status, 401, &body, "Unauthorized");

    let (status, body) = answer(post("token-b", good).await.unwrap()).await;
    assert_machine_refusal(status, 401, &body, "Unauthorized");

    let resp = get(&s, "/v1/invoke/inv-none/status", "token-a").await;
    let (status, body) = answer(resp).await;
    assert_machine_refusal(status, 404, &body, "FlowNotFound");
    assert_eq!(body["invocationId"], "inv-none");

    let mut bad = invocation("inv-r", "tenant-a", "core.noop", json!({}));
    bad["schemaVersion"] = json!(2);
    let (status, body) = answer(post("token-a", bad).await.unwrap()).await;
    assert_machine_refusal(status, 400, &body, "RemoteError");
    assert_eq!(body["invocationId"], "inv-r");

    let (status, body) = answer(post("token-a", json!({"schemaVersion": 1})).await.unwrap()).await;
    assert_machine_refusal(status, 422, &body, "RemoteError");
    let resp = s
        .request(reqwest::Method::POST, "/v1/invoke", "token-a")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_machine_refusal(status, 400, &body, "RemoteError");
    assert_eq!(s.creates(), 0);
}

#[tokio::test]
async fn a_failure_names_the_exit_code_and_the_end_of_stdout_when_stderr_is_empty() {
    let s = stack("").await;
    let cmd = "echo one; echo two; echo three; echo four; echo five; echo six; exit 3";
    let (status, body) = bridge(&s, "core.local", json!({"cmd": cmd}), "rc-1").await;
    assert_eq!(
        (status, body["errorKind"].as_str()),
        (422, Some("RemoteError"))
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.ends_with("failed: exit code 3; stdout ends: two\nthree\nfour\nfive\nsix"),
        "{message}"
    );

    let cmd = json!({"cmd": "echo out; echo why >&2; exit 4"});
    let (_, body) = bridge(&s, "core.local", cmd, "rc-2").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.ends_with("failed: exit code 4; why"), "{message}");
}

/// One request per route, as each of Portarium's clients sends it, for `flow` with `payload`.
fn every_route(s: &Stack, flow: &str, payload: Value, key: &str) -> Vec<reqwest::RequestBuilder> {
    vec![
        s.request(reqwest::Method::POST, "/v1/dispatch", "token-a")
            .header("Idempotency-Key", key)
            .json(&body("tenant-a", flow, payload.clone())),
        activepieces_to(s, flow, flow, payload.clone(), "token-a").header("Idempotency-Key", key),
        openclaw(s, flow, payload.clone(), false, key),
        s.request(reqwest::Method::POST, "/v1/invoke", "token-a")
            .json(&invocation(key, "tenant-a", flow, payload)),
    ]
}

#[tokio::test]
async fn st2s_retry_after_is_passed_on_with_every_429() {
    let s = Stack::builder()
        .st2("retry: {max_retries: 0}")
        .tenant("tenant-a", "token-a")
        .start()
        .await;
    for (i, request) in every_route(&s, "core.noop", json!({}), "busy-1")
        .into_iter()
        .enumerate()
    {
        s.emu
            .faults()
            .fail_next_on("POST", "/api/v1/executions", 429, 1);
        let resp = request.send().await.unwrap();
        let retry_after = resp.headers().get("retry-after").cloned();
        let (status, body) = answer(resp).await;
        assert_eq!(status, 429, "route {i}: {body}");
        assert_eq!(retry_after.unwrap(), "1", "route {i}");
        let kind = body.get("errorKind").unwrap_or(&Value::Null);
        assert_eq!(kind, "RateLimited", "route {i}: {body}");
    }
    // The status route finds the invocation through st2's trace index.
    s.emu.faults().fail_next_on("GET", "/api/v1/traces", 429, 1);
    let resp = get(&s, "/v1/invoke/busy-1/status", "token-a").await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
}

#[tokio::test]
async fn a_payload_that_does_not_fit_is_422_on_every_route_and_starts_nothing() {
    let s = stack("").await;
    for (i, request) in every_route(&s, "core.local", json!({"cmd": 5}), "unfit-1")
        .into_iter()
        .enumerate()
    {
        let (status, body) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 422, "route {i}: {body}");
        assert_eq!(body["errorKind"], "RemoteError", "route {i}: {body}");
        let text = body.get("message").or(body.get("error")).unwrap();
        assert!(
            text.as_str().unwrap().contains("does not fit core.local"),
            "route {i}: {body}"
        );
    }
    assert_eq!(s.creates(), 0, "st2 was asked to run nothing");

    let (status, body) = s
        .dispatch(
            Some("token-a"),
            &body("tenant-a", "examples.fail", json!({})),
        )
        .await;
    assert_eq!(status, 502, "a failure on st2's side stays 502: {body}");
}

#[tokio::test]
async fn the_activepieces_route_takes_a_machine_prefixed_flow_ref() {
    let s = stack("").await;
    let flow = "machine-1/core.echo";
    for (i, path) in [flow, "machine-1%2Fcore.echo"].into_iter().enumerate() {
        let message = format!("via machine {i}");
        let resp = activepieces_to(&s, path, flow, json!({"message": message}), "token-a")
            .header("Idempotency-Key", format!("m-{i}"))
            .send()
            .await
            .unwrap();
        let (status, output) = answer(resp).await;
        assert_eq!(status, 200, "{path}: {output}");
        assert_eq!(output["result"]["stdout"], message.as_str());
    }
    let mismatched = activepieces_to(&s, flow, "core.echo", json!({}), "token-a");
    let (status, body) = answer(mismatched.send().await.unwrap()).await;
    assert_eq!(status, 400, "the path must name the body's flowRef: {body}");
}
