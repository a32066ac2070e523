//! Issue 18's smaller defects, each against the emulator over real HTTP: audit outcomes of
//! starts, re-runs carrying the Portarium context, JSON error answers on every route, quiet
//! exits on a closed pipe, failed dispatches logged, token errors, and waits while the stream
//! is down.

use serde_json::{Value, json};

use super::support::stack::Stack;

/// A stack with tenant `t1` (token `tok-1`) and an audit log in `dir`.
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
        .request(reqwest::Method::POST, "/v1/invoke", "tok-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let records = audit_records(&dir);
    assert_eq!(records.len(), 1, "{records:?}");
    let dispatch = &records[0]["dispatch"];
    assert_eq!(dispatch["outcome"], "started", "{dispatch}");
    assert!(dispatch["st2ExecutionId"].is_string(), "{dispatch}");
    assert!(
        !records[0]["summary"]
            .as_str()
            .unwrap()
            .contains("succeeded"),
        "{}",
        records[0]
    );
}

#[tokio::test]
async fn a_token_request_that_cannot_reach_st2auth_says_so_not_that_it_could_act_twice() {
    let emu = st2_emulator::Emulator::start(st2_emulator::EmulatorOptions::default())
        .await
        .unwrap();
    // A port that refuses: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
