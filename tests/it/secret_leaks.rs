//! No secret leaves the adapter: actions with secret parameters are dispatched on every route,
//! succeeding, failing and re-attached with other values, re-run with overrides, and every
//! answer, lifecycle event, trace-level log line, audit record and the metrics page is searched
//! for the values — with st2 showing the adapter its secrets (an admin) and hiding them (RBAC).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::security::serve;

const KEY: &str = "leak-key";
const TOKEN: &str = "leak-token";

/// Actions whose output and failure quote their secrets: `pin` is secret in the schema,
/// `api_token` only by its credential-looking name.
const ACTIONS: &str = "actions:
  - {pack: examples, name: vault_ok, runner_type: local-shell-cmd,
     parameters: {user: {type: string, required: true}, pin: {type: string, required: true, secret: true},
                  api_token: {type: string}},
     behaviour: {kind: shell, stdout: 'user {{user}} unlocked with {{pin}} and {{api_token}}'}}
  - {pack: examples, name: vault_fail, runner_type: local-shell-cmd,
     parameters: {user: {type: string, required: true}, pin: {type: string, required: true, secret: true}},
     behaviour: {kind: shell, stderr: 'pin {{pin}} refused for {{user}}', return_code: 1}}";

/// Every secret value a request below carries; none may appear anywhere.
const SECRETS: [&str; 10] = [
    "pin-ok-4f1a",
    "tok-ok-77d0",
    "pin-fail-9c2e",
    "pin-ap-51b3",
    "pin-oc-c0de",
    "pin-inv-e4f1",
    "pin-new-0a9b",
    "tok-new-3c3c",
    "pin-new-fail-11",
    "pin-rerun-5e5e",
];

/// Collects the raw bodies the HTTP event sink posts.
async fn event_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/events",
            post(
                |State(got): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                    got.lock().unwrap().push(body);
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn dispatch_body(flow: &str, key: &str, payload: Value) -> Value {
    json!({
        "actionId": key, "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
        "flowRef": flow, "payload": payload, "idempotencyKey": key
    })
}

/// Everything the adapter answered, as text.
#[derive(Default)]
struct Answers(String);

impl Answers {
    async fn keep(&mut self, resp: reqwest::Response) -> Value {
        let text = resp.text().await.unwrap();
        self.0.push_str(&text);
        self.0.push('\n');
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

async fn no_secret_leaves(secrets_hidden: bool) {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        catalogue: crate::support::catalogue_with(ACTIONS),
        secrets_hidden,
        ..Default::default()
    })
    .await
    .unwrap();
    let (sink_url, events) = event_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nlog: {{format: json}}\nst2: {{base_url: '{}', api_key: {KEY}}}\n\
             tenants:\n  - {{id: t1, api_token: {TOKEN}}}\n\
             governance: {{audit: {{path: '{}'}}}}\n\
             events: {{http: {{url: '{sink_url}'}}}}\n",
            emu.base_url(),
            audit.display()
        ),
    )
    .unwrap();
    let served = serve(&config).await;
    let base = served.base.clone();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth(TOKEN);
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(TOKEN);
    let mut answers = Answers::default();

    // /v1/dispatch: a success quoting both secrets, a failure quoting its pin.
    let ok = json!({"user": "ann", "pin": "pin-ok-4f1a", "api_token": "tok-ok-77d0"});
    let body = dispatch_body("examples.vault_ok", "leak-1", ok);
    let first = answers
        .keep(post("/v1/dispatch").json(&body).send().await.unwrap())
        .await;
    let execution = first["output"]["executionId"].as_str().unwrap().to_string();
    assert!(
        first["output"]["result"]["stdout"]
            .as_str()
            .is_some_and(|s| s.starts_with("user ann unlocked with [REDACTED]")),
        "{first}"
    );
    let fail = dispatch_body(
        "examples.vault_fail",
        "leak-2",
        json!({"user": "ann", "pin": "pin-fail-9c2e"}),
    );
    let failed = answers
        .keep(post("/v1/dispatch").json(&fail).send().await.unwrap())
        .await;
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("pin [REDACTED] refused")),
        "{failed}"
    );
    // Re-attached with other values: the answer is about the first request's execution, and
    // must not show that request's secrets.
    let other = json!({"user": "ann", "pin": "pin-new-0a9b", "api_token": "tok-new-3c3c"});
    let again = answers
        .keep(
            post("/v1/dispatch")
                .json(&dispatch_body("examples.vault_ok", "leak-1", other))
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(again["output"]["executionId"], json!(execution), "{again}");
    let refail = dispatch_body(
        "examples.vault_fail",
        "leak-2",
        json!({"user": "ann", "pin": "pin-new-fail-11"}),
    );
    answers
        .keep(post("/v1/dispatch").json(&refail).send().await.unwrap())
        .await;

    // Activepieces and OpenClaw.
    let ap = dispatch_body(
        "examples.vault_fail",
        "leak-3",
        json!({"user": "ann", "pin": "pin-ap-51b3"}),
    );
    answers
        .keep(
            post("/api/v1/flows/examples.vault_fail/run")
                .header("tenantId", "t1")
                .header("runId", "run-1")
                .header("correlationId", "corr-1")
                .json(&ap)
                .send()
                .await
                .unwrap(),
        )
        .await;
    let oc = json!({
        "toolName": "st2/examples.vault_ok",
        "parameters": {"user": "ann", "pin": "pin-oc-c0de"},
        "metadata": {"tenantId": "t1", "runId": "run-1", "actionId": "leak-4",
                     "correlationId": "corr-1", "idempotencyKey": "leak-4"}
    });
    let oc_answer = answers
        .keep(post("/tools/invoke").json(&oc).send().await.unwrap())
        .await;
    assert!(oc_answer["result"].is_object(), "{oc_answer}");

    // The machine interface: start, status, stream, and a re-attach with another pin.
    let invocation = |pin: &str| {
        json!({
            "schemaVersion": 1, "invocationId": "leak-inv", "machineId": "st2",
            "workspaceId": "t1", "action": "examples.vault_fail",
            "input": {"user": "ann", "pin": pin}
        })
    };
    answers
        .keep(
            post("/v1/invoke")
                .json(&invocation("pin-inv-e4f1"))
                .send()
                .await
                .unwrap(),
        )
        .await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = answers
            .keep(get("/v1/invoke/leak-inv/status").send().await.unwrap())
            .await;
        if status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("pin [REDACTED] refused")),
        "{status}"
    );
    answers
        .keep(
            post("/v1/invoke")
                .json(&invocation("pin-new-0a9b"))
                .send()
                .await
                .unwrap(),
        )
        .await;
    let stream = get("/v1/invoke/leak-inv/stream").send().await.unwrap();
    answers.0.push_str(&stream.text().await.unwrap());

    // The execution routes, and a re-run overriding the secret.
    answers
        .keep(
            get(&format!("/v1/executions/{execution}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
    let output = get(&format!("/v1/executions/{execution}/output"))
        .send()
        .await
        .unwrap();
    answers.0.push_str(&output.text().await.unwrap());
    let rerun = answers
        .keep(
            post(&format!("/v1/executions/{execution}/rerun"))
                .json(&json!({"parameters": {"pin": "pin-rerun-5e5e"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
    let rerun_id = rerun["executionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{rerun}"));
    for _ in 0..100 {
        let seen = answers
            .keep(
                get(&format!("/v1/executions/{rerun_id}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
        if seen["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Lifecycle events of every execution that ended: the dispatches' five, the invocation
    // and the re-run.
    let mut delivered = String::new();
    for _ in 0..200 {
        delivered = events.lock().unwrap().join("\n");
        let ended = delivered
            .matches("com.portarium.run.ActionCompleted")
            .count()
            + delivered.matches("com.portarium.run.ActionFailed").count();
        if ended >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        delivered.contains("[REDACTED]"),
        "events carry results: {delivered}"
    );
    let logs = served.log().join("\n");
    assert!(
        logs.contains("TRACE") || logs.contains("\"level\":\"trace\""),
        "trace logs captured"
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(audit_text.contains("re-run of"), "{audit_text}");
    for secret in SECRETS {
        assert!(
            !answers.0.contains(secret),
            "{secret} in answers: {}",
            answers.0
        );
        assert!(
            !delivered.contains(secret),
            "{secret} in events: {delivered}"
        );
        assert!(!logs.contains(secret), "{secret} in logs");
        assert!(
            !audit_text.contains(secret),
            "{secret} in the audit log: {audit_text}"
        );
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_when_st2_shows_the_adapter_its_secrets() {
    no_secret_leaves(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_when_st2_hides_secrets_from_the_adapter() {
    no_secret_leaves(true).await;
}
