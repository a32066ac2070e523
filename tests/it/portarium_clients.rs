//! Portarium's own clients against the adapter: each test sends exactly what Portarium's code
//! sends (docs/dispatch.md) and checks the status, headers and body that make that code end
//! with the right errorKind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server_dispatch::{invocation, openclaw};
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
    let resp = openclaw(&s, "core.local", long.clone(), false, "long-1")
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "answered after {:?}, before dispatch.max_wait_ms: the invoker's own abort must decide",
        started.elapsed()
    );
    assert_eq!(resp.status().as_u16(), 504);
    let retry = openclaw(&s, "core.local", long, false, "long-1")
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status().as_u16(), 504);
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
    let resp = s
        .request(reqwest::Method::GET, "/v1/invoke/inv-r/status", "wrong")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_machine_refusal(status, 401, &body, "Unauthorized");

    let (status, body) = answer(post("token-b", good).await.unwrap()).await;
    assert_machine_refusal(status, 401, &body, "Unauthorized");

    let resp = s
        .request(
            reqwest::Method::GET,
            "/v1/invoke/inv-none/status",
            "token-a",
        )
        .send()
        .await
        .unwrap();
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
    let resp = openclaw(&s, "core.local", json!({"cmd": cmd}), false, "rc-1")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_eq!(
        (status, body["errorKind"].as_str()),
        (422, Some("RemoteError"))
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.ends_with("failed: exit code 3; stdout ends: two\nthree\nfour\nfive\nsix"),
        "{message}"
    );

    let resp = openclaw(
        &s,
        "core.local",
        json!({"cmd": "echo out; echo why >&2; exit 4"}),
        false,
        "rc-2",
    )
    .send()
    .await
    .unwrap();
    let message = answer(resp).await.1["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.ends_with("failed: exit code 4; why"), "{message}");
}
