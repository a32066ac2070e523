//! The adapter's HTTP API on 127.0.0.1 in front of the st2 emulator: `/v1/dispatch`,
//! `/healthz` and `/readyz`, with tenant tokens, body checks and Idempotency-Key.

use std::time::Duration;

use crate::support::stack::{KEY, Stack};
use portarium_st2::config::Config;
use serde_json::{Value, json};
use st2_client::St2Client;

/// An emulator and the adapter in front of it: tenant-a may dispatch, tenant-b's own st2 key
/// is wrong; `tenant_c` adds a third tenant that may dispatch.
async fn stack(tenant_c: bool) -> Stack {
    let mut builder = Stack::builder().tenant("tenant-a", "token-a").tenant_with(
        "tenant-b",
        "token-b",
        "st2: {api_key: not-a-key}",
    );
    if tenant_c {
        builder = builder.tenant("tenant-c", "token-c");
    }
    builder
        .yaml("dispatch: {max_body_bytes: 4096}")
        .start()
        .await
}

pub(crate) fn body(tenant: &str, flow_ref: &str, payload: Value) -> Value {
    json!({
        "actionId": "act-1", "tenantId": tenant, "runId": "run-1",
        "correlationId": "corr-1", "flowRef": flow_ref, "payload": payload
    })
}

#[tokio::test]
async fn a_tenant_dispatches_and_gets_portariums_result() {
    let s = stack(false).await;
    let (status, result) = s.dispatch_a("core.echo", json!({"message": "hello"})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["ok"], true);
    assert_eq!(result["output"]["result"]["stdout"], "hello");

    let (status, result) = s.dispatch_a("core.nope", json!({})).await;
    assert_eq!(
        (status, result["errorKind"].as_str()),
        (404, Some("FlowNotFound"))
    );
    let (status, result) = s.dispatch_a("examples.fail", json!({})).await;
    assert_eq!(
        (status, result["errorKind"].as_str()),
        (502, Some("RemoteError"))
    );
}

#[tokio::test]
async fn tokens_must_match_the_tenant_and_nothing_reaches_st2_otherwise() {
    let s = stack(false).await;
    let b = body("tenant-a", "core.noop", json!({}));
    for token in [None, Some("wrong"), Some("token-b")] {
        let (status, result) = s.dispatch(token, &b).await;
        assert_eq!(status, 401, "{token:?}: {result}");
        assert_eq!(result["errorKind"], "Unauthorized");
    }
    assert_eq!(s.st2_requests(), 0, "refused callers cause no st2 traffic");
}

#[tokio::test]
async fn each_tenant_uses_its_own_st2_credentials() {
    let s = stack(false).await;
    // tenant-b's own st2 key is wrong: its dispatch fails where tenant-a's succeeds.
    let (status, result) = s
        .dispatch(Some("token-b"), &body("tenant-b", "core.noop", json!({})))
        .await;
    assert_eq!(
        (status, result["errorKind"].as_str()),
        (401, Some("Unauthorized")),
        "{result}"
    );
    let (status, _) = s.dispatch_a("core.noop", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_bodies_get_a_clear_4xx_and_no_st2_call() {
    let s = stack(false).await;
    let url = format!("{}/v1/dispatch", s.base);
    let send = |body: String| {
        s.http
            .post(&url)
            .bearer_auth("token-a")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        ("{not json".to_string(), 400),
        (json!({"actionId": 5}).to_string(), 422),
        (
            body("tenant-a", "core.noop", json!("a string")).to_string(),
            422,
        ),
        (
            body(
                "tenant-a",
                "core.echo",
                json!({"message": "x".repeat(8192)}),
            )
            .to_string(),
            413,
        ),
    ];
    for (text, want) in cases {
        let resp = send(text).await.unwrap();
        assert_eq!(resp.status().as_u16(), want);
        let result: Value = resp.json().await.unwrap();
        assert_eq!(result["ok"], false);
        assert!(
            result["message"]
                .as_str()
                .unwrap()
                .starts_with("request body refused"),
            "{result}"
        );
    }
    assert_eq!(s.st2_requests(), 0);
}

#[tokio::test]
async fn idempotency_key_header_and_wait_limit_are_honoured() {
    let s = stack(false).await;
    let b = body("tenant-a", "core.local", json!({"cmd": "sleep 1"}));
    let send = |path: &str| {
        s.request(reqwest::Method::POST, path, "token-a")
            .header("Idempotency-Key", "retry-me")
            .json(&b)
            .send()
    };
    let first = send("/v1/dispatch?waitMs=100").await.unwrap();
    assert_eq!(first.status().as_u16(), 504);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["errorKind"], "Timeout");
    let second = send("/v1/dispatch").await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(s.creates(), 1, "the retry attached to the first execution");
}

#[tokio::test]
async fn readiness_reports_st2_health_without_following_it() {
    let s = stack(false).await;
    let get = |path: &str| s.http.get(format!("{}{path}", s.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    s.emu.faults().fail_ratio(503, 1.0);
    let resp = get("/readyz").await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["st2"]["reachable"], false, "{body}");
    assert!(
        body["st2"]["error"].as_str().unwrap().contains("503"),
        "{body}"
    );
    assert_eq!(
        get("/healthz").await.unwrap().status().as_u16(),
        200,
        "liveness ignores st2"
    );
    s.emu.faults().clear();
    let body: Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(
        body["st2"]["reachable"], true,
        "recovers without restart: {body}"
    );
}

/// What Portarium's Activepieces executor sends: the body, and the ids again as headers.
fn activepieces(s: &Stack, flow_ref: &str, payload: Value, token: &str) -> reqwest::RequestBuilder {
    activepieces_to(s, flow_ref, flow_ref, payload, token)
}

/// The same, with the path naming `path_flow` and the body `body_flow`.
pub(crate) fn activepieces_to(
    s: &Stack,
    path_flow: &str,
    body_flow: &str,
    payload: Value,
    token: &str,
) -> reqwest::RequestBuilder {
    s.request(
        reqwest::Method::POST,
        &format!("/api/v1/flows/{path_flow}/run"),
        token,
    )
    .header("tenantId", "tenant-a")
    .header("correlationId", "corr-1")
    .header("runId", "run-1")
    .json(&body("tenant-a", body_flow, payload))
}

#[tokio::test]
async fn the_activepieces_route_answers_as_that_executor_reads_it() {
    let s = stack(false).await;
    let resp = activepieces(
        &s,
        "core.echo",
        json!({"message": "via activepieces"}),
        "token-a",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let output: Value = resp.json().await.unwrap();
    // The executor takes the whole 2xx body as `output`.
    assert_eq!(output["result"]["stdout"], "via activepieces", "{output}");
    assert_eq!(output["status"], "succeeded");
    assert!(output["executionId"].is_string());

    for (flow, token, want) in [
        ("core.nope", "token-a", 404),
        ("core.noop", "token-b", 401),
        ("examples.fail", "token-a", 502),
    ] {
        let resp = activepieces(&s, flow, json!({}), token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{flow} with {token}");
    }
    s.emu
        .faults()
        .fail_next_on("POST", "/api/v1/executions", 429, 1);
    let resp = activepieces(&s, "core.noop", json!({}), "token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
}

#[tokio::test]
async fn the_activepieces_route_refuses_ids_that_disagree_with_the_body() {
    let s = stack(false).await;
    let before = s.st2_requests();
    let resp = activepieces(&s, "core.noop", json!({}), "token-a")
        .header("runId", "another-run")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let result: Value = resp.json().await.unwrap();
    assert!(
        result["message"].as_str().unwrap().contains("runId"),
        "{result}"
    );
    let resp = activepieces_to(&s, "core.echo", "core.noop", json!({}), "token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        400,
        "path and body flowRef must agree"
    );
    assert_eq!(s.st2_requests(), before, "nothing reached st2");
}

impl Stack {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// `POST /v1/dispatch` of `flow_ref` as tenant-a.
    async fn dispatch_a(&self, flow_ref: &str, payload: Value) -> (u16, Value) {
        self.dispatch(Some("token-a"), &body("tenant-a", flow_ref, payload))
            .await
    }

    /// `GET /v1/executions/{id}` as `token`.
    async fn execution(&self, id: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/v1/executions/{id}"), token)
            .await
    }

    /// `POST /v1/executions/{id}/{verb}` as `token`, without a body.
    async fn control(&self, id: &str, verb: &str, token: &str) -> (u16, Value) {
        let path = format!("/v1/executions/{id}/{verb}");
        self.call(reqwest::Method::POST, &path, token).await
    }

    /// Dispatches `b` as tenant-a waiting only 100 ms, so it times out while st2 runs it; the id
    /// the 504 names.
    async fn started(&self, b: &Value) -> String {
        let (status, timeout) = self
            .post(Some("token-a"), "/v1/dispatch?waitMs=100", b)
            .await;
        assert_eq!(status, 504, "{timeout}");
        let message = timeout["message"].as_str().unwrap();
        message.split_whitespace().nth(2).unwrap().to_string()
    }

    /// Polls execution `id` as its owner until its status is `want`; the execution then.
    async fn wait_for_status(&self, id: &str, want: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, e) = self.execution(id, "token-a").await;
            assert_eq!(status, 200, "the owner sees its execution: {e}");
            if e["status"] == want {
                return e;
            }
            assert!(std::time::Instant::now() < deadline, "never {want}: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn executions_are_visible_and_controllable_only_by_their_tenant() {
    // tenant-c shares st2 credentials with tenant-a, so only the adapter's scoping separates them.
    let s = stack(true).await;
    let b = body("tenant-a", "core.local", json!({"cmd": "sleep 30"}));
    let id = s.started(&b).await;

    let (status, e) = s.execution(&id, "token-a").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["executionId"], id.as_str());
    assert_eq!(e["actionRef"], "core.local");

    let (status, foreign) = s.execution(&id, "token-c").await;
    assert_eq!(status, 404, "another tenant sees nothing: {foreign}");
    let (status, foreign) = s.control(&id, "cancel", "token-c").await;
    assert_eq!(status, 404, "another tenant controls nothing: {foreign}");
    let (status, missing) = s.execution("000000000000000000000000", "token-c").await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["errorKind"], "FlowNotFound",
        "foreign and missing look alike"
    );

    let (status, _) = s.control(&id, "pause", "token-a").await;
    assert_eq!(status, 400, "st2 pauses only workflows");
    let (status, e) = s.control(&id, "cancel", "token-a").await;
    assert_eq!(status, 200, "{e}");
    assert!(
        matches!(e["status"].as_str(), Some("canceling" | "canceled")),
        "{e}"
    );
}

#[tokio::test]
async fn workflows_pause_and_resume_through_the_adapter() {
    let s = stack(false).await;
    let workflow = body("tenant-a", "examples.orquesta-sequential", json!({}));
    let id = s.started(&workflow).await;
    let (status, e) = s.control(&id, "pause", "token-a").await;
    assert_eq!(status, 200, "{e}");
    assert!(
        matches!(e["status"].as_str(), Some("pausing" | "paused")),
        "{e}"
    );
    s.wait_for_status(&id, "paused").await;
    let (status, e) = s.control(&id, "resume", "token-a").await;
    assert_eq!(status, 200, "{e}");
    // The retry of the original dispatch now waits for the resumed workflow to finish.
    let (status, done) = s.dispatch(Some("token-a"), &workflow).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["output"]["executionId"], id.as_str());
}

/// What Portarium's OpenClaw gateway bridge sends for one approved action.
pub(crate) fn openclaw(
    s: &Stack,
    tool: &str,
    parameters: Value,
    dry_run: bool,
    key: &str,
) -> reqwest::RequestBuilder {
    s.request(reqwest::Method::POST, "/tools/invoke", "token-a")
        .header("x-openclaw-session-key", "tenant-a:run-1")
        .header("Idempotency-Key", key)
        .json(&json!({
            "toolName": tool,
            "parameters": parameters,
            "dryRun": dry_run,
            "metadata": {
                "tenantId": "tenant-a", "runId": "run-1", "actionId": key,
                "correlationId": "corr-1", "idempotencyKey": key,
                "sessionKey": "tenant-a:run-1", "policyTier": "HumanApprove", "dryRun": dry_run,
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            }
        }))
}

#[tokio::test]
async fn the_openclaw_bridge_can_dispatch_to_st2_unmodified() {
    let s = stack(false).await;
    let resp = openclaw(
        &s,
        "machine-1/core.echo",
        json!({"message": "via openclaw"}),
        false,
        "k-1",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let output: Value = resp.json().await.unwrap();
    assert_eq!(
        output["result"]["stdout"], "via openclaw",
        "the bridge reads the body as output"
    );

    let resp = openclaw(&s, "core.echo", json!({"message": "x"}), false, "k-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a bare action ref works too");

    let resp = openclaw(&s, "examples.fail", json!({}), false, "k-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        422,
        "a definitive failure is a 4xx the bridge does not retry"
    );
    let resp = openclaw(&s, "core.nope", json!({}), false, "k-4")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = s.send_as(reqwest::Method::POST, "/tools/invoke", "token-b", &json!({"toolName": "core.noop", "parameters": {}, "dryRun": false,
            "metadata": {"tenantId": "tenant-a", "runId": "r", "actionId": "a", "correlationId": "c"}})).await;
    assert_eq!(
        resp.status().as_u16(),
        401,
        "tenant-b's token cannot act for tenant-a"
    );
}

#[tokio::test]
async fn openclaw_dry_runs_check_everything_and_start_nothing() {
    let s = stack(false).await;
    let resp = openclaw(&s, "core.local", json!({"cmd": "uptime"}), true, "d-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let output: Value = resp.json().await.unwrap();
    assert_eq!(
        output,
        json!({"dryRun": true, "actionRef": "core.local", "valid": true})
    );
    let resp = openclaw(&s, "core.local", json!({"timeout": "x"}), true, "d-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let result: Value = resp.json().await.unwrap();
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("cmd: is required") && message.contains("timeout:"),
        "{message}"
    );
    let resp = openclaw(&s, "core.nope", json!({}), true, "d-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(s.creates(), 0, "a dry run never creates an execution");
}

#[tokio::test]
async fn a_rerun_belongs_to_the_tenant_of_the_original() {
    let s = stack(true).await;
    let (status, first) = s.dispatch_a("core.echo", json!({"message": "one"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["output"]["executionId"].as_str().unwrap();
    let resp = s
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}/rerun"),
            "token-a",
            &json!({"parameters": {"message": "two"}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let rerun: Value = resp.json().await.unwrap();
    let new_id = rerun["executionId"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    let done = s.wait_for_status(&new_id, "succeeded").await;
    assert_eq!(
        done["result"]["stdout"], "two",
        "st2 merged the new parameters"
    );
    let (status, _) = s.execution(&new_id, "token-c").await;
    assert_eq!(status, 404, "another tenant cannot see it");
    let (status, _) = s.control(id, "rerun", "token-c").await;
    assert_eq!(status, 404, "nor re-run the original");
}

#[tokio::test]
async fn every_route_in_openapi_json_is_served() {
    let s = stack(false).await;
    let resp = s
        .http
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 11, "{:?}", paths.keys());
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "000000000000000000000000")
            .replace("{flowRef}", "core.noop");
        for method in item.as_object().unwrap().keys() {
            let resp = s
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", s.base),
                )
                .bearer_auth("token-a")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            let text = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is routed");
            // A route documented as text (GET /metrics) answers text, the rest JSON.
            let documented_text =
                item[method]["responses"]["200"]["content"]["text/plain"].is_object();
            assert!(
                if documented_text {
                    content_type.starts_with("text/plain")
                } else {
                    serde_json::from_str::<Value>(&text).is_ok()
                },
                "{method} {path} answered by our handler (status {status}, body {text:?})"
            );
        }
    }
}

pub(crate) fn invocation(id: &str, workspace: &str, action: &str, input: Value) -> Value {
    json!({
        "schemaVersion": 1, "invocationId": id, "machineId": "st2-prod",
        "workspaceId": workspace, "runId": "run-9", "action": action, "input": input,
        "callbackUrl": "https://portarium.example/cb"
    })
}

impl Stack {
    async fn invoke(&self, token: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .request(reqwest::Method::POST, "/v1/invoke", token)
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get_json(&self, token: &str, url: &str) -> (u16, Value) {
        let resp = self.http.get(url).bearer_auth(token).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

#[tokio::test]
async fn machine_invocations_answer_at_once_and_complete_behind_their_status_url() {
    let s = stack(true).await;
    let body = invocation(
        "inv-1",
        "tenant-a",
        "st2-prod/core.local",
        json!({"cmd": "sleep 0.3; echo done"}),
    );
    let (status, accepted) = s.invoke("token-a", &body).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["schemaVersion"], 1);
    assert_eq!(accepted["invocationId"], "inv-1");
    assert!(
        ["accepted", "running"].contains(&accepted["status"].as_str().unwrap()),
        "{accepted}"
    );
    let status_url = accepted["statusUrl"].as_str().unwrap().to_string();
    assert_eq!(status_url, format!("{}/v1/invoke/inv-1/status", s.base));

    let mut last = Value::Null;
    for _ in 0..100 {
        let (code, answer) = s.get_json("token-a", &status_url).await;
        assert_eq!(code, 200, "{answer}");
        last = answer;
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["output"]["result"]["stdout"], "done");
    assert_eq!(last["executionId"], accepted["executionId"]);

    // Portarium retrying the same invocation re-attaches: no second execution.
    let (status, again) = s.invoke("token-a", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "completed");
    assert_eq!(again["executionId"], accepted["executionId"]);
    assert_eq!(s.creates(), 1);

    // Another tenant (even on the same st2 credentials) cannot read it, and a failure
    // carries st2's words and its kind.
    let (code, _) = s.get_json("token-c", &status_url).await;
    assert_eq!(code, 404);
    let (_, failing) = s
        .invoke(
            "token-a",
            &invocation("inv-2", "tenant-a", "examples.fail", json!({})),
        )
        .await;
    let url = failing["statusUrl"].as_str().unwrap().to_string();
    let mut answer = Value::Null;
    for _ in 0..100 {
        answer = s.get_json("token-a", &url).await.1;
        if answer["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer["status"], "failed", "{answer}");
    assert_eq!(answer["errorKind"], "RemoteError");
    assert!(
        answer["error"].as_str().unwrap().contains("failed"),
        "{answer}"
    );
}

#[tokio::test]
async fn machine_invocations_refuse_bad_requests_with_their_kind_and_start_nothing() {
    let s = stack(false).await;
    let cases = [
        (
            "token-a",
            invocation("inv-x", "tenant-b", "core.noop", json!({})),
            401,
            "Unauthorized",
        ),
        (
            "token-a",
            invocation("inv-x", "tenant-a", "core.nope", json!({})),
            404,
            "FlowNotFound",
        ),
        (
            "token-a",
            invocation("inv x", "tenant-a", "core.noop", json!({})),
            422,
            "RemoteError",
        ),
        (
            "token-a",
            {
                let mut b = invocation("inv-x", "tenant-a", "core.noop", json!({}));
                b["schemaVersion"] = json!(2);
                b
            },
            400,
            "RemoteError",
        ),
        (
            "token-a",
            invocation("inv-x", "tenant-a", "core.local", json!({"cmd": 7})),
            422,
            "RemoteError",
        ),
    ];
    for (token, body, want_status, want_kind) in cases {
        let (status, answer) = s.invoke(token, &body).await;
        assert_eq!(status, want_status, "{body} → {answer}");
        assert_eq!(answer["status"], "failed", "{answer}");
        assert_eq!(answer["errorKind"], want_kind, "{answer}");
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    // An unknown token is refused before any route runs, in the common refusal shape.
    let (status, answer) = s
        .invoke(
            "wrong",
            &invocation("inv-x", "tenant-a", "core.noop", json!({})),
        )
        .await;
    assert_eq!(
        (status, &answer["errorKind"]),
        (401, &json!("Unauthorized"))
    );
    let (status, _) = s
        .get_json(
            "token-a",
            &format!("{}/v1/invoke/never-made/status", s.base),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        s.creates(),
        0,
        "no refused invocation reached st2 as an execution"
    );
}

#[tokio::test]
async fn machine_invocation_progress_streams_status_and_output_until_it_completes() {
    let s = stack(false).await;
    let body = invocation(
        "inv-s",
        "tenant-a",
        "core.local",
        json!({"cmd": "echo first; sleep 0.3; echo second"}),
    );
    let (status, _) = s.invoke("token-a", &body).await;
    assert_eq!(status, 202);
    let resp = s
        .request(reqwest::Method::GET, "/v1/invoke/inv-s/stream", "token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The stream ends by itself when the execution completes.
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text())
        .await
        .expect("the stream ends when the execution completes")
        .unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|frame| frame.contains("event: progress"))
        .map(|frame| {
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect();
    assert!(events.len() >= 3, "{text}");
    assert!(
        events
            .iter()
            .all(|e| e["schemaVersion"] == 1 && e["invocationId"] == "inv-s")
    );
    let output: String = events
        .iter()
        .filter(|e| e["step"] == "output")
        .map(|e| e["diagnostics"].as_str().unwrap())
        .collect();
    assert_eq!(output, "first\nsecond\n", "{text}");
    let last = events.last().unwrap();
    assert_eq!(last["status"], "completed", "{text}");
    assert_eq!(last["progressRatio"], 1.0);
    assert_eq!(last["step"], "succeeded");
}

/// The `context.portarium` st2 holds for the execution in a success answer.
async fn st2_context(s: &Stack, output: &Value) -> Value {
    let id = output["executionId"].as_str().unwrap();
    let st2 = St2Client::from_config(
        &Config::from_yaml(
            &format!(
                "st2: {{base_url: '{}', api_key: {KEY}}}\n",
                s.emu.base_url()
            ),
            "test",
            std::iter::empty(),
        )
        .unwrap()
        .st2,
    )
    .unwrap();
    let e = st2.executions().get(id).send().await.unwrap();
    Value::Object(e.context)["portarium"].clone()
}

#[tokio::test]
async fn every_route_hands_the_callers_trace_context_to_st2() {
    let s = stack(false).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = s
        .request(reqwest::Method::POST, "/v1/dispatch", "token-a")
        .header("traceparent", tp)
        .header("tracestate", "congo=t61rcWkgMzE")
        .json(&body("tenant-a", "core.noop", json!({})))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    let ctx = st2_context(&s, &answer["output"]).await;
    assert_eq!(ctx["traceparent"], tp);
    assert_eq!(ctx["tracestate"], "congo=t61rcWkgMzE");

    // A malformed traceparent is dropped, not refused.
    let mut b = body("tenant-a", "core.noop", json!({}));
    b["actionId"] = json!("act-2");
    let resp = s
        .request(reqwest::Method::POST, "/v1/dispatch", "token-a")
        .header("traceparent", "garbage")
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        st2_context(&s, &answer["output"])
            .await
            .get("traceparent")
            .is_none()
    );

    // OpenClaw carries it in metadata.
    let resp = openclaw(&s, "core.noop", json!({}), false, "k-trace")
        .send()
        .await
        .unwrap();
    let output: Value = resp.json().await.unwrap();
    assert_eq!(
        st2_context(&s, &output).await["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );

    // The machine interface reads the headers.
    let resp = s
        .request(reqwest::Method::POST, "/v1/invoke", "token-a")
        .header("traceparent", tp)
        .json(&invocation("inv-t", "tenant-a", "core.noop", json!({})))
        .send()
        .await
        .unwrap();
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(st2_context(&s, &accepted).await["traceparent"], tp);
}
