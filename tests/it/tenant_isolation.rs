//! Tenants kept apart: dispatch keys that no two different (tenant, key) or (tenant, run,
//! action) tuples share, an attach that never lands on another tenant's execution, ids limited
//! before st2 is called, and invocations found by their own key, per tenant.

use serde_json::{Value, json};

use crate::server_dispatch::invocation;
use crate::support::SendJson;
use crate::support::stack::{KEY, Stack};
use portarium_st2::core::dispatch::dispatch_key;
use portarium_st2::core::portarium::DispatchRequest;

/// Tenants `acme` (`token-a`) and `acme:prod` (`token-p`): the pair the old `:`-joined key
/// let collide.
async fn stack() -> Stack {
    Stack::builder()
        .tenant("acme", "token-a")
        .tenant("'acme:prod'", "token-p")
        .start()
        .await
}

fn dispatch_body(tenant: &str, run: &str, action: &str, key: Option<&str>, message: &str) -> Value {
    let mut body = json!({
        "actionId": action, "tenantId": tenant, "runId": run, "correlationId": "c-1",
        "flowRef": "core.echo", "payload": {"message": message}
    });
    if let Some(k) = key {
        body["idempotencyKey"] = json!(k);
    }
    body
}

/// The execution id and stdout of a successful dispatch answer.
fn ran(status: u16, answer: &Value) -> (String, String) {
    assert_eq!(status, 200, "{answer}");
    let output = &answer["output"];
    (
        output["executionId"].as_str().unwrap().to_string(),
        output["result"]["stdout"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_tenant_whose_id_and_key_join_to_anothers_gets_its_own_execution() {
    let s = stack().await;
    let (status, answer) = s
        .dispatch(
            Some("token-p"),
            &dispatch_body("acme:prod", "r1", "a1", Some("k1"), "prod's stdout"),
        )
        .await;
    let (prod, _) = ran(status, &answer);
    // `acme` + `prod:k1` joined with ':' was `acme:prod:k1`, the same as `acme:prod` + `k1`.
    let (status, answer) = s
        .dispatch(
            Some("token-a"),
            &dispatch_body("acme", "r1", "a1", Some("prod:k1"), "acme's own"),
        )
        .await;
    let (acme, stdout) = ran(status, &answer);
    assert_ne!(acme, prod, "acme attached to acme:prod's execution");
    assert_eq!(stdout, "acme's own");
    assert_eq!(s.creates(), 2);
}

#[tokio::test]
async fn run_and_action_ids_that_join_alike_are_different_dispatches() {
    let s = stack().await;
    let first = s
        .dispatch(
            Some("token-a"),
            &dispatch_body("acme", "r1:x", "a1", None, "first"),
        )
        .await;
    let second = s
        .dispatch(
            Some("token-a"),
            &dispatch_body("acme", "r1", "x:a1", None, "second"),
        )
        .await;
    let (one, _) = ran(first.0, &first.1);
    let (two, stdout) = ran(second.0, &second.1);
    assert_ne!(one, two);
    assert_eq!(stdout, "second");
    // The same tuple again is a retry: it attaches.
    let again = s
        .dispatch(
            Some("token-a"),
            &dispatch_body("acme", "r1", "x:a1", None, "second"),
        )
        .await;
    assert_eq!(ran(again.0, &again.1).0, two);
    assert_eq!(s.creates(), 2);
}

#[test]
fn keys_are_fixed_length_hex_whatever_the_ids() {
    let req = |tenant: &str, run: &str, action: &str, key: Option<&str>| DispatchRequest {
        action_id: action.into(),
        idempotency_key: key.map(String::from),
        tenant_id: tenant.into(),
        run_id: run.into(),
        correlation_id: "c".into(),
        flow_ref: "core.noop".into(),
        payload: Default::default(),
        trace: None,
        invocation_id: None,
    };
    let long = "k".repeat(20_000);
    let keys = [
        dispatch_key(&req("acme", "r", "a", Some("prod:k1"))),
        dispatch_key(&req("acme:prod", "r", "a", Some("k1"))),
        dispatch_key(&req("acme", "r1:x", "a1", None)),
        dispatch_key(&req("acme", "r1", "x:a1", None)),
        dispatch_key(&req("acme", "r", "a", Some(&long))),
    ];
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k.len(), 71, "{k}");
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert!(!keys[..i].contains(k), "{k} repeats");
    }
}

#[tokio::test]
async fn an_execution_of_another_tenant_under_a_tenants_key_is_never_attached_to() {
    let s = stack().await;
    let body = dispatch_body("acme", "r1", "a1", Some("planted"), "acme's own");
    let req: DispatchRequest = serde_json::from_value(body.clone()).unwrap();
    // Someone with st2 access starts an execution carrying acme's trace tag but another
    // tenant's context, hoping acme's retry attaches to it and answers its result.
    let planted: Value = s
        .http
        .post(format!("{}/api/v1/executions", s.emu.base_url()))
        .header("St2-Api-Key", KEY)
        .json(&json!({
            "action": "core.echo", "parameters": {"message": "planted stdout"},
            "context": {
                "trace_context": {"trace_tag": dispatch_key(&req)},
                "portarium": {"tenant_id": "acme:prod", "dispatch_key": dispatch_key(&req)}
            }
        }))
        .send_json()
        .await;
    let planted = planted["id"].as_str().unwrap().to_string();
    let (status, answer) = s.dispatch(Some("token-a"), &body).await;
    let (id, stdout) = ran(status, &answer);
    assert_ne!(id, planted);
    assert_eq!(stdout, "acme's own");
}

#[tokio::test]
async fn malformed_ids_are_422_before_st2_is_called() {
    let s = stack().await;
    for (field, value) in [
        ("runId", json!("r\n1")),
        ("actionId", json!("a 1")),
        ("correlationId", json!("c\u{0}")),
        ("runId", json!("r".repeat(257))),
        ("actionId", json!("")),
    ] {
        let mut body = dispatch_body("acme", "r1", "a1", None, "x");
        body[field] = value;
        let (status, answer) = s.dispatch(Some("token-a"), &body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let mut bad = invocation("inv 1", "acme", "core.noop", json!({}));
    let resp = s
        .send_as(reqwest::Method::POST, "/v1/invoke", "token-a", &bad)
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    bad["invocationId"] = json!("inv-1");
    bad["machineId"] = json!("m\u{7f}");
    let resp = s
        .send_as(reqwest::Method::POST, "/v1/invoke", "token-a", &bad)
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(s.st2_requests(), 0, "{:?}", s.emu.request_log());
}

#[test]
fn tenant_ids_outside_the_alphabet_are_refused_at_config_load() {
    let yaml = "st2: {base_url: 'http://127.0.0.1:1', api_key: k}\ntenants:\n  \
                - {id: 'acme prod', api_token: t1}\n  - {id: '', api_token: t2}\n  \
                - {id: 'acme:prod', api_token: t3}\n";
    let Err(err) = portarium_st2::config::Config::from_yaml(yaml, "test", std::iter::empty())
    else {
        panic!("tenant ids outside the alphabet were accepted");
    };
    let err = err.to_string();
    assert!(err.contains("tenants[0].id"), "{err}");
    assert!(err.contains("tenants[1].id"), "{err}");
    assert!(!err.contains("tenants[2]"), "{err}");
}

/// `/v1/invoke/{id}/status` as `token`: its status and answer.
async fn status_of(s: &Stack, id: &str, token: &str) -> (u16, Value) {
    let resp = s
        .request(
            reqwest::Method::GET,
            &format!("/v1/invoke/{id}/status"),
            token,
        )
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn another_tenants_dispatches_with_the_invocation_id_do_not_hide_it() {
    let s = stack().await;
    // acme:prod pre-creates 20 dispatches whose actionId is the victim's invocation id: the
    // old lookup read only the 20 oldest executions with that action id, across tenants.
    for i in 0..20 {
        let body = dispatch_body("acme:prod", &format!("r{i}"), "inv-7", None, "decoy");
        assert_eq!(s.dispatch(Some("token-p"), &body).await.0, 200);
    }
    let (status, started) = s
        .post(
            Some("token-a"),
            "/v1/invoke",
            &invocation("inv-7", "acme", "core.echo", json!({"message": "victim"})),
        )
        .await;
    assert!(status == 200 || status == 202, "{started}");
    let (status, answer) = status_of(&s, "inv-7", "token-a").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["executionId"], started["executionId"]);
    let resp = s
        .request(reqwest::Method::GET, "/v1/invoke/inv-7/stream", "token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("completed"), "{text}");
    // And acme:prod, which started no invocation inv-7, finds none.
    assert_eq!(status_of(&s, "inv-7", "token-p").await.0, 404);
}

#[tokio::test]
async fn a_dispatch_whose_action_id_is_a_later_invocation_id_is_not_that_invocation() {
    let s = stack().await;
    let body = dispatch_body("acme", "r1", "inv-9", None, "the dispatch");
    let (dispatched, _) = {
        let (status, answer) = s.dispatch(Some("token-a"), &body).await;
        ran(status, &answer)
    };
    assert_eq!(status_of(&s, "inv-9", "token-a").await.0, 404);
    let (_, started) = s
        .post(
            Some("token-a"),
            "/v1/invoke",
            &invocation(
                "inv-9",
                "acme",
                "core.echo",
                json!({"message": "the invocation"}),
            ),
        )
        .await;
    let invoked = started["executionId"].as_str().unwrap().to_string();
    assert_ne!(
        invoked, dispatched,
        "the invocation attached to the dispatch"
    );
    let (status, answer) = status_of(&s, "inv-9", "token-a").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["executionId"], json!(invoked));
}
