//! An audit log that cannot be skipped or quietly rewritten: every dispatch, re-run and cancel
//! is recorded as accepted before st2 is called and with its outcome after, whether or not the
//! caller stays for the answer, and shutdown waits for the outcomes still to come.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::Stack;
use portarium_st2::app::App;
use portarium_st2::config::Config;

/// The audit records in `path`, in order.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records once there are at least `n` (the outcome is written by a task of its own).
async fn at_least(path: &Path, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got = records(path);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} audit records: {:?}", records(path));
}

fn dispatch_body(flow: &str, key: &str, payload: Value) -> Value {
    json!({
        "actionId": key, "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
        "flowRef": flow, "payload": payload, "idempotencyKey": key
    })
}

async fn audited(dir: &tempfile::TempDir) -> Stack {
    Stack::builder()
        .tenant("t1", "tok-1")
        .yaml(&format!(
            "governance: {{audit: {{path: '{}'}}}}",
            dir.path().join("audit.jsonl").display()
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_caller_that_disconnects_mid_wait_leaves_both_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let path = dir.path().join("audit.jsonl");
    // The caller gives up (and closes its connection) long before the action ends.
    let gave_up = s
        .request(reqwest::Method::POST, "/v1/dispatch?waitMs=10000", "tok-1")
        .json(&dispatch_body(
            "core.local",
            "left-1",
            json!({"cmd": "sleep 0.6; echo done"}),
        ))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller was answered: {gave_up:?}");
    let accepted = records(&path);
    assert_eq!(
        accepted.len(),
        1,
        "accepted before st2 ran it: {accepted:?}"
    );
    assert_eq!(accepted[0]["dispatch"]["phase"], "accepted");
    assert_eq!(accepted[0]["dispatch"]["requestedBy"], "t1");
    let both = at_least(&path, 2).await;
    let outcome = &both[1]["dispatch"];
    assert_eq!(outcome["phase"], "outcome", "{outcome}");
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    assert!(outcome["st2ExecutionId"].is_string(), "{outcome}");
    assert_eq!(both[1]["previousHash"], both[0]["hashSha256"]);
}

#[tokio::test]
async fn cancel_and_rerun_are_recorded_with_who_what_and_redacted_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let path = dir.path().join("audit.jsonl");
    let (status, answer) = s
        .post(
            Some("tok-1"),
            "/v1/dispatch?waitMs=100",
            &dispatch_body("core.local", "long-1", json!({"cmd": "sleep 30"})),
        )
        .await;
    assert_eq!(status, 504, "{answer}");
    let id = s.st2_get("executions?limit=1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s
        .request(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            "tok-1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, original) = s
        .dispatch(
            Some("tok-1"),
            &dispatch_body(
                "examples.secret",
                "sec-1",
                json!({"user": "ann", "password": "pw-1"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{original}");
    let original = original["output"]["executionId"].as_str().unwrap();
    let resp = s
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/executions/{original}/rerun"),
            "tok-1",
            &json!({"parameters": {"password": "pw-rerun-SECRET", "user": "bob"}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let rerun: Value = resp.json().await.unwrap();
    let all = at_least(&path, 8).await;
    let of = |key: &str, on: &str| -> Vec<&Value> {
        all.iter()
            .map(|r| &r["dispatch"])
            .filter(|d| d[key] == json!(on))
            .collect()
    };
    let cancels = of("cancelOf", &id);
    assert_eq!(cancels.len(), 2, "{all:?}");
    assert_eq!(
        (&cancels[0]["phase"], &cancels[1]["phase"]),
        (&json!("accepted"), &json!("outcome"))
    );
    assert_eq!(cancels[1]["outcome"], "canceled");
    assert_eq!(cancels[1]["requestedBy"], "t1");
    let reruns = of("rerunOf", original);
    assert_eq!(reruns.len(), 2, "{all:?}");
    for r in &reruns {
        assert_eq!(
            r["overrides"],
            json!({"password": "[REDACTED]", "user": "bob"}),
            "{r}"
        );
        assert_eq!(r["action"], "examples.secret");
    }
    assert_eq!(reruns[1]["st2ExecutionId"], rerun["executionId"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("pw-rerun-SECRET"));
}

#[tokio::test]
async fn shutdown_waits_for_the_outcome_of_a_dispatch_whose_caller_left() {
    let dir = tempfile::tempdir().unwrap();
    let emu = crate::support::quick_emulator("k").await;
    let path = dir.path().join("audit.jsonl");
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: k}}\ntenants:\n  - {{id: t1, api_token: tok-1}}\n\
         governance: {{audit: {{path: '{}'}}}}\n",
        emu.base_url(),
        path.display()
    );
    let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
    let app = App::build(&config, Duration::ZERO).await.unwrap();
    let base = app
        .serve_in_background("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gave_up = reqwest::Client::new()
        .post(format!("{base}/v1/dispatch?waitMs=10000"))
        .bearer_auth("tok-1")
        .json(&dispatch_body(
            "core.local",
            "late-1",
            json!({"cmd": "sleep 0.8"}),
        ))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err());
    assert_eq!(records(&path).len(), 1);
    app.shutdown(Duration::from_secs(10)).await;
    let after = records(&path);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1]["dispatch"]["outcome"], "succeeded");
}
